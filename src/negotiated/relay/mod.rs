//! The relay of negotiated matchmaking: [`NegotiatedRelayPlugin`].
//!
//! It stores facts by frame, forwards them along the facts' pivots (see
//! [`relay_core`](super::core::relay_core)), drops frames older than two frame durations and answers
//! time requests. It does no matchmaking: whether a fact's author was entitled to it is
//! for clients to judge. It stamps every fact with the connection that sent it.
//!
//! By concern, as the atomic server is split:
//! - `settings`: [`NegotiatedRelaySettings`], and applying them when they change;
//! - `state`: [`NegotiatedRelayState`], the facts, subscriptions and connections;
//! - `connections`: connects and disconnects (a departure is forwarded), refused
//!   connections closing, frames expiring;
//! - `receive`: the connection gate, then one handler per client message;
//! - `shared`: a store shared with other relays ([`NegotiatedSharedFacts`]).

mod connections;
mod drain;
mod lag;
mod receive;
mod settings;
mod shared;
mod state;

use crate::shared::plugins::Dependencies;
use bevy::prelude::*;
use bevy_renet::RenetReceive;

use crate::negotiated::channel::NegotiatedChannel;
use crate::negotiated::core::protocol::NegotiatedRelayMessage;
use crate::negotiated::core::relay_core::{NegotiatedOutbox, NegotiatedRelayLimits};
use crate::shared::conditions::server_exists;
use crate::shared::connection_config::{
    MatchmakingConnectionConfig, channel_carried, report_server_config,
};
use crate::shared::gate::{MatchmakingGatePolicy, MatchmakingRateLimit};
use crate::shared::inbox::MatchmakingInbox;
use crate::shared::server_link::ServerLink;

pub use drain::{NegotiatedRelayDrain, NegotiatedRelayDrainFinished};
pub use lag::NegotiatedLagHistogram;
pub use settings::NegotiatedRelaySettings;
pub use shared::{
    NegotiatedSharedBackend, NegotiatedSharedFacts, NegotiatedSharedOpen, NegotiatedSharedStatus,
};
pub use state::NegotiatedRelayState;

/// System sets of the relay plugin, in frame order. Every system of the plugin is in one
/// of them; each runs only while a [`RenetServer`](bevy_renet::RenetServer) exists
/// ([`server_exists`]).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiatedRelaySystems {
    /// `PreUpdate`, after [`RenetReceive`]: applies changed settings, decodes client
    /// messages, answers time requests, stores and forwards facts (with a shared store:
    /// sends the posts to it, and routes what its log says and its verdicts).
    Receive,
    /// `Update`: drops expired frames, closes refused connections.
    Maintain,
}

/// The relay of negotiated matchmaking.
///
/// Needs a [`RenetServer`](bevy_renet::RenetServer) resource whose connection config
/// includes the [`NegotiatedChannel`]. Adds bevy_renet's [`RenetServerPlugin`](bevy_renet::RenetServerPlugin) if the app
/// has not.
///
/// ```
/// use std::time::Duration;
/// use bevy::prelude::*;
/// use bevy_atomic_matchmaking::prelude::*;
///
/// let mut app = App::new();
/// app.add_plugins(MinimalPlugins).add_plugins(NegotiatedRelayPlugin {
///     settings: NegotiatedRelaySettings {
///         frame_duration: Duration::from_secs(30),
///         ..Default::default()
///     },
///     ..Default::default()
/// });
/// // then insert a RenetServer and its transport, for example with
/// // `transport::insert_secure_netcode_server`, and run the app
/// app.finish(); // App::run() does this; a test driving App::update() does it itself
/// app.cleanup();
/// app.update();
/// let state = app.world().resource::<NegotiatedRelayState>();
/// assert_eq!(state.frames().duration(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Default)]
pub struct NegotiatedRelayPlugin {
    /// The channel carrying negotiated messages.
    pub channel: NegotiatedChannel,
    /// Initial settings (kept if the app inserted its own resource first).
    pub settings: NegotiatedRelaySettings,
}

impl Plugin for NegotiatedRelayPlugin {
    fn build(&self, app: &mut App) {
        let settings = app
            .world_mut()
            .get_resource_or_insert_with(|| self.settings.clone());
        let state = NegotiatedRelayState::new(&settings);
        // bevy_renet's server plugin now, or in `finish` if the game adds it later
        Dependencies::server("NegotiatedRelayPlugin").then(app, |_| {});
        let changed = resource_changed::<NegotiatedRelaySettings>;
        let carried = channel_carried::<NegotiatedChannel>;
        app.insert_resource(self.channel)
            .insert_resource(state)
            .add_message::<NegotiatedRelayDrain>()
            .add_message::<NegotiatedRelayDrainFinished>()
            .add_observer(connections::on_server_event)
            .configure_sets(
                PreUpdate,
                NegotiatedRelaySystems::Receive
                    .after(RenetReceive)
                    .run_if(server_exists.and_then(carried)),
            )
            .configure_sets(
                Update,
                NegotiatedRelaySystems::Maintain.run_if(server_exists.and_then(carried)),
            )
            .add_systems(
                PreUpdate,
                report_server_config::<NegotiatedChannel>
                    .run_if(resource_exists_and_changed::<MatchmakingConnectionConfig>)
                    .before(NegotiatedRelaySystems::Receive),
            )
            .add_systems(
                PreUpdate,
                (
                    settings::apply_settings.run_if(changed),
                    receive::receive_messages,
                    shared::exchange_shared,
                )
                    .chain()
                    .in_set(NegotiatedRelaySystems::Receive),
            )
            .add_systems(
                Update,
                (
                    drain::start_drain,
                    connections::expire_frames,
                    drain::advance_drain,
                    connections::close_refused_connections,
                )
                    .chain()
                    .in_set(NegotiatedRelaySystems::Maintain),
            );
        register_types(app);
    }
}

/// Registers the reflected types of the relay (its resources and the core values they
/// hold), so the Bevy inspector can show them.
fn register_types(app: &mut App) {
    app.register_type::<NegotiatedChannel>()
        .register_type::<NegotiatedRelaySettings>()
        .register_type::<NegotiatedRelayState>()
        .register_type::<NegotiatedRelayDrain>()
        .register_type::<NegotiatedRelayDrainFinished>()
        .register_type::<MatchmakingInbox>()
        .register_type::<NegotiatedRelayLimits>()
        .register_type::<MatchmakingGatePolicy>()
        .register_type::<MatchmakingRateLimit>();
}

/// The server and the negotiated channel: how the relay's systems talk to clients.
type NegotiatedRelayLink<'w> = ServerLink<'w, NegotiatedChannel>;

impl NegotiatedRelayLink<'_> {
    /// Sends what the core asks to send.
    fn send_all(&mut self, out: NegotiatedOutbox) {
        for (to, message) in out {
            self.send::<NegotiatedRelayMessage>(to, &message);
        }
    }
}
