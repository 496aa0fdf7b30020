//! The client side of atomic matchmaking: [`AtomicClientPlugin`].
//!
//! The game writes [`AtomicJoinQueue`], [`AtomicLeaveQueue`] and
//! [`AtomicLeaveLobby`] messages; the plugin says hello, answers health pings,
//! acknowledges proposals, keeps [`AtomicClientState`] and [`AtomicClientStatus`]
//! current and reports what happens as Bevy messages.
//!
//! Inside: `messages` (the Bevy messages), `state` (state, status, faults and the
//! per-connection session), `connection` (hello on connect, reset on loss), `receive`
//! (one handler per server message) and `send` (the game's requests and the pongs).

mod connection;
mod messages;
mod receive;
mod send;
mod state;

use bevy::prelude::*;
use bevy_renet::{RenetReceive, RenetSend};

pub use self::messages::{
    AtomicClientError, AtomicConnected, AtomicJoinQueue, AtomicLeaveLobby, AtomicLeaveQueue,
    AtomicLobbyLeft, AtomicMatchCancelled, AtomicMatchChecking, AtomicMatchFound,
    AtomicMatchProposed, AtomicQueueJoined, AtomicQueueLeft, AtomicServerClosing,
};
#[cfg(feature = "testing")]
pub use self::state::AtomicClientFaults;
pub use self::state::{AtomicClientSettings, AtomicClientState, AtomicClientStatus};

use crate::atomic::AtomicChannel;
use crate::atomic::core::commit::AtomicMatchStatus;
use crate::atomic::core::protocol::{
    AtomicErrorKind, AtomicMatchCancelReason, AtomicMatchedPlayer,
};
use crate::shared::conditions::client_exists;
use crate::shared::connect::MatchmakingConnectTarget;
use crate::shared::connection_config::{MatchmakingConnectionConfig, channel_carried};
use crate::shared::messages::{AddMessages, MatchmakingMessageVisitor};
use crate::shared::plugins::Dependencies;

/// System sets of the client plugin, in frame order. Every system of the plugin is in one
/// of them.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomicClientSystems {
    /// `PreUpdate`, after [`RenetReceive`]: watches the connection attempt, says hello on
    /// connect, decodes server messages, answers pings and proposals, updates state and
    /// writes the reports. Game systems in `Update` read the frame's reports.
    Receive,
    /// `PostUpdate`, before [`RenetSend`], while a [`RenetClient`](bevy_renet::RenetClient) exists
    /// ([`client_exists`]): sends the requests the game wrote this frame (in any
    /// schedule before it) and the due pongs, so they leave in this frame's packets, and
    /// updates the waited time.
    Send,
}

/// The client side of atomic matchmaking.
///
/// Needs a [`RenetClient`](bevy_renet::RenetClient) resource (with a transport, or a local client in tests) whose
/// connection config includes the [`AtomicChannel`]. Adds bevy_renet's
/// [`RenetClientPlugin`](bevy_renet::RenetClientPlugin) and Bevy's `StatesPlugin` if the app has not.
///
/// ```
/// use bevy::prelude::*;
/// use bevy_atomic_matchmaking::prelude::*;
///
/// let mut game = App::new();
/// game.add_plugins(MinimalPlugins)
///     .add_plugins(AtomicClientPlugin::default())
///     // join when the player clicks "Find match" (here: at once)
///     .add_systems(Startup, |mut join: MessageWriter<AtomicJoinQueue>| {
///         join.write(AtomicJoinQueue { category: "duel".into() });
///     })
///     .add_systems(Update, |mut found: MessageReader<AtomicMatchFound>| {
///         for f in found.read() {
///             println!("play in lobby {}", f.lobby_code);
///         }
///     });
/// // then connect, for example with `transport::insert_secure_netcode_client`;
/// // App::run() finishes the plugins, a test driving App::update() does it itself
/// game.finish();
/// game.cleanup();
/// game.update();
/// let state = game.world().resource::<State<AtomicClientState>>();
/// assert_eq!(*state.get(), AtomicClientState::Disconnected);
/// ```
#[derive(Debug, Clone, Default)]
pub struct AtomicClientPlugin {
    /// The channel carrying matchmaking messages.
    pub channel: AtomicChannel,
}

impl Plugin for AtomicClientPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.channel)
            .init_resource::<AtomicClientStatus>()
            .init_resource::<AtomicClientSettings>()
            .init_resource::<state::ClientSession>();
        add_messages(app);
        #[cfg(feature = "testing")]
        app.init_resource::<AtomicClientFaults>();
        register_types(app);
        let set_up = resource_exists::<State<AtomicClientState>>;
        let carried = channel_carried::<AtomicChannel>;
        app.configure_sets(
            PreUpdate,
            AtomicClientSystems::Receive
                .after(RenetReceive)
                .run_if(set_up.and_then(carried)),
        )
        .configure_sets(
            PostUpdate,
            AtomicClientSystems::Send
                .before(RenetSend)
                .run_if(client_exists.and_then(set_up).and_then(carried)),
        )
        .add_systems(
            PreUpdate,
            connection::check_config
                .run_if(resource_exists_and_changed::<MatchmakingConnectionConfig>)
                .before(AtomicClientSystems::Receive),
        )
        .add_systems(
            PreUpdate,
            (
                connection::watch_connect,
                connection::track_connection,
                receive::receive_messages,
            )
                .chain()
                .in_set(AtomicClientSystems::Receive),
        )
        .add_systems(
            PostUpdate,
            (
                send::send_requests,
                send::send_due_pongs,
                state::update_waited,
            )
                .in_set(AtomicClientSystems::Send),
        );
        #[cfg(feature = "transport")]
        if !app.is_plugin_added::<crate::transport::MatchmakingConnectPlugin>() {
            app.add_plugins(crate::transport::MatchmakingConnectPlugin);
        }
        Dependencies::client("AtomicClientPlugin").then(app, |app| {
            app.init_state::<AtomicClientState>();
        });
    }
}

/// Registers the reflected types of the client (its state, resources and messages, and the
/// core values they hold), so the Bevy inspector can show them.
fn register_types(app: &mut App) {
    app.register_type::<AtomicChannel>()
        .register_type_mutable_state::<AtomicClientState>()
        .register_type::<AtomicClientStatus>()
        .register_type::<AtomicClientSettings>()
        .register_type::<MatchmakingConnectTarget>()
        .register_type::<AtomicJoinQueue>()
        .register_type::<AtomicLeaveQueue>()
        .register_type::<AtomicLeaveLobby>()
        .register_type::<AtomicConnected>()
        .register_type::<AtomicQueueJoined>()
        .register_type::<AtomicQueueLeft>()
        .register_type::<AtomicMatchChecking>()
        .register_type::<AtomicMatchProposed>()
        .register_type::<AtomicMatchFound>()
        .register_type::<AtomicMatchCancelled>()
        .register_type::<AtomicLobbyLeft>()
        .register_type::<AtomicServerClosing>()
        .register_type::<AtomicClientError>()
        .register_type::<AtomicMatchedPlayer>()
        .register_type::<AtomicMatchStatus>()
        .register_type::<AtomicMatchCancelReason>()
        .register_type::<AtomicErrorKind>();
    #[cfg(feature = "testing")]
    app.register_type::<AtomicClientFaults>();
}

/// Registers the game's requests and the plugin's reports.
fn add_messages(app: &mut App) {
    visit_client_messages(&mut AddMessages(app));
}

/// Visits every message type of the client plugin: the game's requests, then the reports.
pub fn visit_client_messages(visitor: &mut impl MatchmakingMessageVisitor) {
    visitor.visit::<AtomicJoinQueue>();
    visitor.visit::<AtomicLeaveQueue>();
    visitor.visit::<AtomicLeaveLobby>();
    visitor.visit::<AtomicConnected>();
    visitor.visit::<AtomicQueueJoined>();
    visitor.visit::<AtomicQueueLeft>();
    visitor.visit::<AtomicMatchChecking>();
    visitor.visit::<AtomicMatchProposed>();
    visitor.visit::<AtomicMatchFound>();
    visitor.visit::<AtomicMatchCancelled>();
    visitor.visit::<AtomicLobbyLeft>();
    visitor.visit::<AtomicServerClosing>();
    visitor.visit::<AtomicClientError>();
}
