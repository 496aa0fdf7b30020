//! Negotiated matchmaking: clients pair themselves through Request, Bid and Accept facts,
//! with a relay that only stores and forwards facts and tells the time.
//!
//! There is no matchmaking service. A client looking for a game reads the current and the
//! prior frame of a rolling queue (frame = floor(relay time / frame duration)); if it sees
//! an open request it bids on one, otherwise it posts its own request and accepts the
//! first bid. Requests expire one to two frames after they were posted. See
//! [`machine`](core::machine) for the whole algorithm, including the tie-break that pairs two clients who
//! posted at the same moment.
//!
//! - [`core`], plain Rust with no Bevy: the facts and their content ids, the store of
//!   facts by frame, frame math, relay-clock estimation, the client algorithm
//!   ([`machine`](core::machine)), the relay's storage and routing
//!   ([`relay_core`](core::relay_core)) and the wire messages.
//! - Bevy: [`NegotiatedRelayPlugin`](relay::NegotiatedRelayPlugin) on the relay,
//!   [`NegotiatedClientPlugin`](client::NegotiatedClientPlugin) in the game, both over
//!   bevy_renet on the [`NegotiatedChannel`].
//! - `redis::NegotiatedRedisStore` (feature `redis`): the fact store relays on several
//!   machines share, every verdict decided in one Lua script.
#![cfg_attr(
    feature = "testing",
    doc = "- [`testing`](crate::testing::negotiated): an in-process harness with manual time."
)]
#![cfg_attr(
    not(feature = "testing"),
    doc = "- `testing::negotiated` (feature `testing`): an in-process harness with manual time."
)]
//!
//! The promise: every match is mutual and nobody is matched twice in one search. The
//! relay stores at most one of an accept and a withdrawal of a bid (the first; an accept
//! past the bid's deadline or of a bidder who left is refused) and tells every poster its
//! verdict on the same ordered stream as the facts; a requester counts a match once its
//! accept is stored, a bidder gives a bid up only once the relay's stream shows no accept
//! came first. A relay with a journal
//! ([`NegotiatedRelaySettings::journal`](relay::NegotiatedRelaySettings::journal)) records
//! each fact before its verdict and reads them back when it starts again, so a restart
//! changes no verdict. What the relay lost it cannot tell: a restart of a relay *without*
//! a journal, or a player away until the request's frame is dropped, between storing an
//! accept and telling that player, can leave that player unaware of its match. Relay memory is capped
//! ([`NegotiatedRelayLimits`](core::relay_core::NegotiatedRelayLimits)).
//!
//! Trust: the relay stamps every fact with the connection that sent it; clients ignore
//! facts whose author is not entitled to them (only the requester accepts, rejects or
//! cancels its request; only the bidder withdraws its bid; nobody bids on their own
//! request). Every byte from the network is decoded with the crate's size-limited codec.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use bevy::prelude::*;
//! use bevy_atomic_matchmaking::prelude::*;
//! use bevy_atomic_matchmaking::transport::{
//!     MatchmakingPrivateKey, MatchmakingTokenIssuer, insert_secure_netcode_client,
//!     insert_secure_netcode_server,
//! };
//!
//! let channel = NegotiatedChannel::default(); // channel id 4
//! let key = MatchmakingPrivateKey::generate(); // the backend's: it mints connect tokens
//!
//! // The relay: stores and forwards facts, tells the time. No matchmaking logic.
//! let mut relay = App::new();
//! relay.add_plugins(MinimalPlugins).add_plugins(NegotiatedRelayPlugin {
//!     channel,
//!     settings: NegotiatedRelaySettings {
//!         frame_duration: Duration::from_secs(60), // requests live 1 to 2 minutes
//!         ..default()
//!     },
//! });
//! let addr = insert_secure_netcode_server(&mut relay, "127.0.0.1:0".parse()?, 64, channel.connection_config(), &key)?;
//! let backend = MatchmakingTokenIssuer::new(&key);
//!
//! // Two games: search, then react to the match.
//! let mut games: Vec<App> = (1..=2)
//!     .map(|id| {
//!         let mut game = App::new();
//!         game.add_plugins(MinimalPlugins)
//!             .add_plugins(NegotiatedClientPlugin { channel, ..default() })
//!             .add_systems(Startup, |mut search: MessageWriter<NegotiatedSearch>| {
//!                 search.write(NegotiatedSearch { category: "duel".into() });
//!             })
//!             .add_systems(Update, |mut found: MessageReader<NegotiatedMatchFound>| {
//!                 for f in found.read() {
//!                     info!("play against {} (we {:?})", f.other, f.role);
//!                 }
//!             });
//!         let token = backend.issue(id, Duration::from_secs(60), &[addr], &[])?;
//!         insert_secure_netcode_client(&mut game, token, channel.connection_config())?;
//!         Ok(game)
//!     })
//!     .collect::<Result<_, Box<dyn std::error::Error>>>()?;
//!
//! // Run until both are matched (a real game just calls `app.run()`, which also finishes
//! // the plugins' set-up).
//! for app in std::iter::once(&mut relay).chain(&mut games) {
//!     app.finish();
//!     app.cleanup();
//! }
//! let matched = |g: &App| *g.world().resource::<State<NegotiatedClientState>>().get() == NegotiatedClientState::Matched;
//! let started = std::time::Instant::now();
//! while !games.iter().all(matched) {
//!     assert!(started.elapsed().as_secs() < 10, "not matched");
//!     relay.update();
//!     games.iter_mut().for_each(|g| g.update());
//!     std::thread::sleep(Duration::from_millis(2));
//! }
//! let found = games[0].world().resource::<NegotiatedClientStatus>().found.clone().unwrap();
//! assert_eq!(found.other, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod channel;
pub mod client;
pub mod core;
#[cfg(feature = "redis")]
pub mod redis;
mod reflect;
pub mod relay;

pub use channel::{DEFAULT_NEGOTIATED_CHANNEL_ID, NegotiatedChannel};
