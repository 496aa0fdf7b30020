//! The client side of atomic matchmaking: [`MatchmakingClientPlugin`].
//!
//! The game writes [`MatchmakingJoinQueue`], [`MatchmakingLeaveQueue`] and
//! [`MatchmakingLeaveLobby`] messages; the plugin says hello, answers health pings,
//! acknowledges proposals, keeps [`MatchmakingClientState`] and [`MatchmakingClientStatus`]
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
use bevy::state::app::StatesPlugin;
use bevy_renet::{RenetClient, RenetClientPlugin, RenetReceive};

pub use self::messages::{
    MatchmakingClientError, MatchmakingConnected, MatchmakingJoinQueue, MatchmakingLeaveLobby,
    MatchmakingLeaveQueue, MatchmakingLobbyLeft, MatchmakingMatchCancelled,
    MatchmakingMatchChecking, MatchmakingMatchFound, MatchmakingMatchProposed,
    MatchmakingQueueJoined, MatchmakingQueueLeft,
};
pub use self::state::{
    MatchmakingClientFaults, MatchmakingClientSettings, MatchmakingClientState,
    MatchmakingClientStatus,
};

use crate::atomic::MatchmakingChannel;
use crate::shared::messages::{AddMessages, MatchmakingMessageVisitor};

/// System sets of the client plugin.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchmakingClientSystems {
    /// `PreUpdate`, after [`RenetReceive`]: says hello on connect, decodes server
    /// messages, answers pings and proposals, updates state and writes messages.
    Receive,
    /// `Update`: sends the game's requests and delayed pongs, updates the waited time.
    Send,
}

/// The client side of atomic matchmaking.
///
/// Needs a [`RenetClient`] resource (with a transport, or a local client in tests) whose
/// connection config includes the [`MatchmakingChannel`]. Adds bevy_renet's
/// [`RenetClientPlugin`] and Bevy's `StatesPlugin` if the app has not.
#[derive(Debug, Clone, Default)]
pub struct MatchmakingClientPlugin {
    /// The channel carrying matchmaking messages.
    pub channel: MatchmakingChannel,
}

impl Plugin for MatchmakingClientPlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<RenetClientPlugin>() {
            app.add_plugins(RenetClientPlugin);
        }
        if !app.is_plugin_added::<StatesPlugin>() {
            app.add_plugins(StatesPlugin);
        }
        app.insert_resource(self.channel)
            .init_state::<MatchmakingClientState>()
            .init_resource::<MatchmakingClientStatus>()
            .init_resource::<MatchmakingClientFaults>()
            .init_resource::<MatchmakingClientSettings>()
            .init_resource::<state::ClientSession>();
        add_messages(app);
        app.configure_sets(
            PreUpdate,
            MatchmakingClientSystems::Receive.after(RenetReceive),
        )
        .add_systems(
            PreUpdate,
            (
                connection::watch_connect,
                connection::track_connection,
                receive::receive_messages,
            )
                .chain()
                .in_set(MatchmakingClientSystems::Receive),
        )
        .add_systems(
            Update,
            (
                send::send_requests,
                send::send_due_pongs,
                state::update_waited,
            )
                .in_set(MatchmakingClientSystems::Send)
                .run_if(resource_exists::<RenetClient>),
        );
    }
}

/// Registers the game's requests and the plugin's reports.
fn add_messages(app: &mut App) {
    visit_client_messages(&mut AddMessages(app));
}

/// Visits every message type of the client plugin: the game's requests, then the reports.
pub fn visit_client_messages(visitor: &mut impl MatchmakingMessageVisitor) {
    visitor.visit::<MatchmakingJoinQueue>();
    visitor.visit::<MatchmakingLeaveQueue>();
    visitor.visit::<MatchmakingLeaveLobby>();
    visitor.visit::<MatchmakingConnected>();
    visitor.visit::<MatchmakingQueueJoined>();
    visitor.visit::<MatchmakingQueueLeft>();
    visitor.visit::<MatchmakingMatchChecking>();
    visitor.visit::<MatchmakingMatchProposed>();
    visitor.visit::<MatchmakingMatchFound>();
    visitor.visit::<MatchmakingMatchCancelled>();
    visitor.visit::<MatchmakingLobbyLeft>();
    visitor.visit::<MatchmakingClientError>();
}
