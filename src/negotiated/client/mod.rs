//! The client of negotiated matchmaking: [`NegotiatedClientPlugin`].
//!
//! The game writes [`NegotiatedSearch`] and [`NegotiatedCancelSearch`]; the plugin says
//! hello to the relay, estimates the relay's clock, runs the
//! [`NegotiatedMachine`](crate::negotiated::core::machine::NegotiatedMachine) on corrected
//! time, keeps [`NegotiatedClientState`] and [`NegotiatedClientStatus`] current and
//! reports what happens as Bevy messages.

use std::time::Duration;

use bevy::prelude::*;
use bevy_renet::RenetReceive;

use crate::negotiated::core::fact::NegotiatedFactId;
use crate::negotiated::core::machine::{NegotiatedRestartReason, NegotiatedRole};
use crate::negotiated::core::protocol::NegotiatedErrorKind;
use crate::shared::clock::unix_now;
use crate::shared::connect::MatchmakingConnectTarget;
use crate::shared::connection_config::{MatchmakingConnectionConfig, channel_carried};
use crate::shared::messages::{AddMessages, MatchmakingMessageVisitor};
use crate::shared::plugins::Dependencies;

use super::channel::NegotiatedChannel;

// By concern: `messages` are the Bevy messages in and out; `state` is the state and the
// status the game reads; `session` is the per-connection bookkeeping and the machine;
// `receive` and `drive` are the two systems.
mod drive;
mod messages;
mod receive;
mod session;
mod state;

pub use messages::{
    NegotiatedBidPlaced, NegotiatedCancelSearch, NegotiatedCancelled, NegotiatedClientError,
    NegotiatedConnected, NegotiatedMatchFound, NegotiatedRelayClosing, NegotiatedRequestPosted,
    NegotiatedRestarted, NegotiatedSearch,
};
#[cfg(feature = "testing")]
pub use session::NegotiatedClockSkew;
pub use state::{NegotiatedClientState, NegotiatedClientStatus};

use session::NegotiatedSession;

/// Client settings, read when the relay welcomes the client (a change applies from the
/// next connection), except `time_sync_interval`, read every frame.
///
/// ```
/// use std::time::Duration;
/// use bevy_atomic_matchmaking::prelude::*;
///
/// let settings = NegotiatedClientSettings {
///     bid_timeout: Duration::from_secs(2),
///     connect_timeout: Duration::from_secs(3),
///     ..Default::default()
/// };
/// assert_eq!(settings.time_sync_interval, Duration::from_secs(10));
/// ```
#[derive(Resource, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Resource, Debug, Clone, PartialEq, Default)]
pub struct NegotiatedClientSettings {
    /// How long a bid waits for the requester's answer: its deadline (relay time) is this
    /// long after it is placed; then it is withdrawn, and the search goes on once the
    /// relay confirms no accept came first. Also how long to wait before requesting again
    /// after the relay refused a request. Default 3 s; keep it well above the round trip
    /// to the relay (an accept that reaches the relay after the deadline is refused).
    pub bid_timeout: Duration,
    /// How often to ask the relay for its time again (the estimate keeps the sample
    /// with the shortest round trip among the last few). Default 10 s.
    pub time_sync_interval: Duration,
    /// The local clock = epoch + time since the app started. `None`: the Unix time when the
    /// plugin was built.
    pub epoch: Option<Duration>,
    /// Seed of the random choice among open requests (`None`: random).
    pub seed: Option<u64>,
    /// How long a connection to the relay may take to open before the game gets a
    /// [`NegotiatedErrorKind::ConnectFailed`]
    /// error (sooner when netcode gives up first). Default 5 s, within netcode's own 15 s.
    pub connect_timeout: Duration,
}

impl Default for NegotiatedClientSettings {
    fn default() -> Self {
        Self {
            bid_timeout: Duration::from_secs(3),
            time_sync_interval: Duration::from_secs(10),
            epoch: None,
            seed: None,
            connect_timeout: crate::shared::connect::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// System sets of the client plugin, in frame order. Every system of the plugin is in one
/// of them.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiatedClientSystems {
    /// `PreUpdate`, after [`RenetReceive`]: says hello on connect, decodes relay
    /// messages, feeds the clock and the machine.
    Receive,
    /// `PostUpdate`, before [`RenetSend`](bevy_renet::RenetSend): takes the requests the
    /// game wrote this frame (in any schedule before it), asks for the time, advances the
    /// machine, sends its messages so they leave in this frame's packets, writes the
    /// reports and the state (game systems read them next frame); with a
    /// `MatchmakingFailover`, warns once if the relay's frames are too short for a failover.
    Drive,
}

/// The client of negotiated matchmaking.
///
/// Needs a [`RenetClient`](bevy_renet::RenetClient) resource whose connection config
/// includes the [`NegotiatedChannel`]. Adds bevy_renet's [`RenetClientPlugin`](bevy_renet::RenetClientPlugin) and Bevy's
/// `StatesPlugin` if the app has not.
///
/// ```
/// use std::time::Duration;
/// use bevy::prelude::*;
/// use bevy_atomic_matchmaking::prelude::*;
///
/// let mut game = App::new();
/// game.add_plugins(MinimalPlugins)
///     .add_plugins(NegotiatedClientPlugin {
///         settings: NegotiatedClientSettings {
///             bid_timeout: Duration::from_secs(2),
///             ..Default::default()
///         },
///         ..Default::default()
///     })
///     .add_systems(Startup, |mut search: MessageWriter<NegotiatedSearch>| {
///         search.write(NegotiatedSearch { category: "duel".into() });
///     })
///     .add_systems(Update, |mut found: MessageReader<NegotiatedMatchFound>| {
///         for f in found.read() {
///             println!("matched with player {}", f.other);
///         }
///     });
/// // then connect to a relay, for example with `transport::insert_secure_netcode_client`
/// game.finish(); // App::run() does this; a test driving App::update() does it itself
/// game.cleanup();
/// game.update();
/// ```
#[derive(Debug, Clone, Default)]
pub struct NegotiatedClientPlugin {
    /// The channel carrying negotiated messages.
    pub channel: NegotiatedChannel,
    /// Initial settings (kept if the app inserted its own resource first).
    pub settings: NegotiatedClientSettings,
}

impl Plugin for NegotiatedClientPlugin {
    fn build(&self, app: &mut App) {
        if !app.world().contains_resource::<NegotiatedClientSettings>() {
            app.insert_resource(self.settings.clone());
        }
        let epoch = app
            .world()
            .resource::<NegotiatedClientSettings>()
            .epoch
            .unwrap_or_else(unix_now);
        app.insert_resource(self.channel)
            .insert_resource(NegotiatedSession::new(epoch))
            .init_resource::<NegotiatedClientStatus>();
        visit_client_messages(&mut AddMessages(app));
        register_types(app);
        let set_up = resource_exists::<State<NegotiatedClientState>>;
        let carried = channel_carried::<NegotiatedChannel>;
        app.configure_sets(
            PreUpdate,
            NegotiatedClientSystems::Receive
                .after(RenetReceive)
                .run_if(set_up.and_then(carried)),
        )
        .add_systems(
            PreUpdate,
            session::check_config
                .run_if(resource_exists_and_changed::<MatchmakingConnectionConfig>)
                .before(NegotiatedClientSystems::Receive),
        )
        .add_systems(
            PreUpdate,
            (session::watch_connect, receive::receive_messages)
                .chain()
                .in_set(NegotiatedClientSystems::Receive),
        )
        .configure_sets(
            PostUpdate,
            NegotiatedClientSystems::Drive
                .before(bevy_renet::RenetSend)
                .run_if(set_up.and_then(carried)),
        )
        .add_systems(
            PostUpdate,
            drive::drive.in_set(NegotiatedClientSystems::Drive),
        );
        #[cfg(feature = "transport")]
        app.add_systems(
            PostUpdate,
            session::warn_frame_shorter_than_failover
                .after(drive::drive)
                .in_set(NegotiatedClientSystems::Drive),
        );
        #[cfg(feature = "transport")]
        if !app.is_plugin_added::<crate::transport::MatchmakingConnectPlugin>() {
            app.add_plugins(crate::transport::MatchmakingConnectPlugin);
        }
        Dependencies::client("NegotiatedClientPlugin").then(app, |app| {
            app.init_state::<NegotiatedClientState>();
        });
    }
}

/// Registers the reflected types of the client (its state, resources and messages, and the
/// core values they hold), so the Bevy inspector can show them.
fn register_types(app: &mut App) {
    app.register_type::<NegotiatedChannel>()
        .register_type_mutable_state::<NegotiatedClientState>()
        .register_type::<NegotiatedClientStatus>()
        .register_type::<NegotiatedClientSettings>()
        .register_type::<MatchmakingConnectTarget>()
        .register_type::<NegotiatedSearch>()
        .register_type::<NegotiatedCancelSearch>()
        .register_type::<NegotiatedConnected>()
        .register_type::<NegotiatedRelayClosing>()
        .register_type::<NegotiatedRequestPosted>()
        .register_type::<NegotiatedBidPlaced>()
        .register_type::<NegotiatedMatchFound>()
        .register_type::<NegotiatedCancelled>()
        .register_type::<NegotiatedRestarted>()
        .register_type::<NegotiatedClientError>()
        .register_type::<NegotiatedFactId>()
        .register_type::<NegotiatedRole>()
        .register_type::<NegotiatedRestartReason>()
        .register_type::<NegotiatedErrorKind>();
    #[cfg(feature = "testing")]
    app.register_type::<NegotiatedClockSkew>();
}

/// Visits every message type of the negotiated client plugin: the game's requests, then the
/// reports.
pub fn visit_client_messages(visitor: &mut impl MatchmakingMessageVisitor) {
    visitor.visit::<NegotiatedSearch>();
    visitor.visit::<NegotiatedCancelSearch>();
    visitor.visit::<NegotiatedConnected>();
    visitor.visit::<NegotiatedRelayClosing>();
    visitor.visit::<NegotiatedRequestPosted>();
    visitor.visit::<NegotiatedBidPlaced>();
    visitor.visit::<NegotiatedMatchFound>();
    visitor.visit::<NegotiatedCancelled>();
    visitor.visit::<NegotiatedRestarted>();
    visitor.visit::<NegotiatedClientError>();
}
