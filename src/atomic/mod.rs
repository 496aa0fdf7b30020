//! Atomic matchmaking: a server-authoritative queue and a two-phase commit.
//!
//! - [`core`]: the queue, the commit state machine, the wire protocol, lobby codes and
//!   statistics windows. Plain Rust, no Bevy.
//! - [`server`]: [`MatchmakingServerPlugin`](server::MatchmakingServerPlugin) for the
//!   dedicated server (feature `server`).
//! - [`client`]: [`MatchmakingClientPlugin`](client::MatchmakingClientPlugin) for the game
//!   (feature `client`).
//! - [`testing`]: a server and clients in one process with manual time (features `server`
//!   and `client`).

pub mod channel;
#[cfg(feature = "client")]
pub mod client;
pub mod core;
#[cfg(feature = "server")]
pub mod server;
#[cfg(all(feature = "server", feature = "client"))]
pub mod testing;

pub use channel::{DEFAULT_MATCHMAKING_CHANNEL_ID, MatchmakingChannel};
