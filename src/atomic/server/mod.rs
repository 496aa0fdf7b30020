//! Server-authoritative atomic matchmaking: [`AtomicServerPlugin`].
//!
//! The plugin reads the matchmaking channel of every connection, keeps the per-category
//! queues, forms a match entity ([`AtomicMatch`]) whenever a category holds enough
//! players and advances each match's two-phase commit every frame. Committed matches leave
//! a lobby entity ([`AtomicLobby`]) that lives until its last member leaves or the game
//! despawns it.
//!
//! By concern:
//! - `settings`: [`AtomicServerSettings`] and [`AtomicServerStats`];
//! - `state`: [`AtomicServerState`], where each player is; every location change goes
//!   through its one `move_player`;
//! - `components`: the match and lobby entities and the messages the server app reads;
//! - `connections`: connects (each connection is a new session), disconnects, lobbies and
//!   matches going away, refused connections closing;
//! - `receive`: the connection gate, then one handler per client message;
//! - `matches`: forming matches, carrying out their commit machines, commit and rollback,
//!   and stamping health pings with the moment they really left (`PostUpdate`, after the
//!   transport sent them).

mod components;
mod connections;
mod drain;
mod matches;
mod receive;
mod settings;
mod state;

use std::time::Duration;

use crate::shared::plugins::Dependencies;
use bevy::ecs::system::SystemParam;
use bevy::platform::time::Instant;
use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use bevy_renet::{RenetReceive, RenetSend};

use crate::atomic::AtomicChannel;
use crate::atomic::core::commit::{AtomicCommitTimings, AtomicHealthCheck, AtomicMatchStatus};
use crate::atomic::core::protocol::{AtomicErrorKind, AtomicMatchedPlayer, AtomicServerMessage};
use crate::atomic::core::stats::DurationWindow;
use crate::shared::conditions::server_exists;
use crate::shared::connection_config::{
    MatchmakingConnectionConfig, channel_carried, report_server_config,
};
use crate::shared::gate::{MatchmakingGatePolicy, MatchmakingRateLimit};
use crate::shared::inbox::MatchmakingInbox;
use crate::shared::player::PlayerId;
use crate::shared::server_link::ServerLink;

pub use components::{
    AtomicLobby, AtomicMatch, AtomicMatchCommitted, AtomicMatchOutcome, AtomicPlayerHealth,
    cancel_reason,
};
pub use drain::{AtomicDrain, AtomicDrainFinished};
pub use settings::{AtomicServerSettings, AtomicServerStats, AtomicSettingsError};
pub use state::{AtomicPlayerLocation, AtomicServerState};

/// System sets of the server plugin, in frame order. Every system of the plugin is in one
/// of them; each runs only while a [`RenetServer`](bevy_renet::RenetServer) exists
/// ([`server_exists`]).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomicServerSystems {
    /// `PreUpdate`, after [`RenetReceive`]: validates changed settings, then decodes and
    /// applies client messages.
    Receive,
    /// `Update`: validates settings changed since, starts a drain ([`AtomicDrain`]), forms
    /// matches from ready categories, advances every match's state machine and carries out
    /// its actions, advances the drain, closes refused connections. Read the frame's [`AtomicMatchOutcome`]s after it.
    Advance,
    /// `PostUpdate`, after [`RenetSend`]: stamps the health pings of the frame with the
    /// moment the transport really sent them (round trips are measured from there).
    StampPings,
}

/// The server side of atomic matchmaking.
///
/// Needs a [`RenetServer`](bevy_renet::RenetServer) resource (with a transport, or local clients in tests) whose
/// connection config includes the [`AtomicChannel`]. Adds bevy_renet's
/// [`RenetServerPlugin`](bevy_renet::RenetServerPlugin) if the app has not ([`MatchmakingPlugins`](crate::MatchmakingPlugins)
/// adds it too).
///
/// ```
/// use bevy::prelude::*;
/// use bevy_atomic_matchmaking::prelude::*;
///
/// let mut app = App::new();
/// app.add_plugins(MinimalPlugins).add_plugins(AtomicServerPlugin {
///     channel: AtomicChannel::new(7),
///     settings: AtomicServerSettings {
///         players_per_match: 2,
///         ..Default::default()
///     },
/// });
/// // then insert a RenetServer and its transport, for example with
/// // `transport::insert_secure_netcode_server`, and run the app
/// app.finish(); // App::run() does this; a test driving App::update() does it itself
/// app.cleanup();
/// app.update();
/// assert_eq!(app.world().resource::<AtomicServerStats>().matches_formed, 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct AtomicServerPlugin {
    /// Where matchmaking messages travel.
    pub channel: AtomicChannel,
    /// The settings to start with; an app that inserted its own resource first keeps it.
    pub settings: AtomicServerSettings,
}

impl Plugin for AtomicServerPlugin {
    fn build(&self, app: &mut App) {
        let settings = app
            .world_mut()
            .get_resource_or_insert_with(|| self.settings.clone())
            .clamped();
        // bevy_renet's server plugin now, or in `finish` if the game adds it later
        Dependencies::server("AtomicServerPlugin").then(app, |_| {});
        let changed = resource_changed::<AtomicServerSettings>;
        let carried = channel_carried::<AtomicChannel>;
        app.insert_resource(self.channel)
            .insert_resource(settings::ActiveSettings(settings))
            .init_resource::<AtomicServerState>()
            .init_resource::<AtomicServerStats>()
            .init_resource::<matches::UnstampedPings>()
            .add_message::<AtomicMatchOutcome>()
            .add_message::<AtomicMatchCommitted>()
            .add_message::<AtomicDrain>()
            .add_message::<AtomicDrainFinished>()
            .add_observer(connections::on_server_event)
            .add_observer(connections::on_lobby_removed)
            .add_observer(connections::on_match_removed)
            .configure_sets(
                PreUpdate,
                AtomicServerSystems::Receive
                    .after(RenetReceive)
                    .run_if(server_exists.and_then(carried)),
            )
            .configure_sets(
                Update,
                AtomicServerSystems::Advance.run_if(server_exists.and_then(carried)),
            )
            .configure_sets(
                PostUpdate,
                AtomicServerSystems::StampPings
                    .after(RenetSend)
                    .run_if(server_exists.and_then(carried)),
            )
            .add_systems(
                PreUpdate,
                report_server_config::<AtomicChannel>
                    .run_if(resource_exists_and_changed::<MatchmakingConnectionConfig>)
                    .before(AtomicServerSystems::Receive),
            )
            .add_systems(
                PreUpdate,
                (
                    settings::apply_settings.run_if(changed),
                    receive::receive_messages,
                )
                    .chain()
                    .in_set(AtomicServerSystems::Receive),
            )
            .add_systems(
                Update,
                (
                    settings::apply_settings.run_if(changed),
                    drain::start_drain,
                    matches::form_matches,
                    matches::advance_matches,
                    drain::advance_drain,
                    connections::close_refused_connections,
                )
                    .chain()
                    .in_set(AtomicServerSystems::Advance),
            )
            .add_systems(
                PostUpdate,
                matches::stamp_sent_pings.in_set(AtomicServerSystems::StampPings),
            );
        register_types(app);
    }
}

/// Registers the reflected types of the server (its resources, components and messages,
/// and the core values they hold), so the Bevy inspector can show them.
fn register_types(app: &mut App) {
    app.register_type::<AtomicChannel>()
        .register_type::<AtomicServerSettings>()
        .register_type::<AtomicServerStats>()
        .register_type::<AtomicServerState>()
        .register_type::<AtomicPlayerLocation>()
        .register_type::<AtomicMatch>()
        .register_type::<AtomicLobby>()
        .register_type::<AtomicPlayerHealth>()
        .register_type::<AtomicMatchOutcome>()
        .register_type::<AtomicMatchCommitted>()
        .register_type::<AtomicDrain>()
        .register_type::<AtomicDrainFinished>()
        .register_type::<MatchmakingInbox>()
        .register_type::<AtomicCommitTimings>()
        .register_type::<AtomicHealthCheck>()
        .register_type::<AtomicMatchStatus>()
        .register_type::<AtomicMatchedPlayer>()
        .register_type::<DurationWindow>()
        .register_type::<MatchmakingGatePolicy>()
        .register_type::<MatchmakingRateLimit>();
}

/// The server's clocks: the frame's time, which every deadline is measured in, and the
/// moment itself within the frame, for round trips measured where packets really leave and
/// arrive.
#[derive(SystemParam)]
struct TransportClock<'w> {
    time: Res<'w, Time<Real>>,
    strategy: Option<Res<'w, TimeUpdateStrategy>>,
}

impl TransportClock<'_> {
    /// Now, on the frame clock's timeline. Under automatic time it is the instant itself
    /// (later than the frame's start); under manual time (tests) it is the frame's time, so
    /// that runs stay deterministic.
    fn now(&self) -> Duration {
        let frame = self.time.elapsed();
        let automatic = matches!(
            self.strategy.as_deref(),
            None | Some(TimeUpdateStrategy::Automatic)
        );
        match self.time.first_update() {
            Some(first) if automatic => Instant::now().saturating_duration_since(first).max(frame),
            _ => frame,
        }
    }
}

/// The server and the atomic channel: how every system of the plugin talks to players.
type AtomicServerLink<'w> = ServerLink<'w, AtomicChannel>;

impl AtomicServerLink<'_> {
    /// Sends an error to a player.
    fn send_error(&mut self, to: PlayerId, kind: AtomicErrorKind, message: impl Into<String>) {
        let message = message.into();
        self.send(to, &AtomicServerMessage::Error { kind, message });
    }
}
