//! Following the renet connection: hello when it opens, a clean slate when it closes.

use bevy::prelude::*;
use bevy_renet::RenetClient;

use super::messages::MatchmakingClientError;
use super::send::send_to_server;
use super::state::{
    ClientSession, MatchmakingClientSettings, MatchmakingClientState, MatchmakingClientStatus,
};
use crate::atomic::MatchmakingChannel;
use crate::atomic::core::protocol::{ClientMessage, MatchmakingErrorKind, PROTOCOL_VERSION};
use crate::shared::connect::{ConnectWatch, ConnectionView, lost_connection};

/// Reports a connection that never opens: one [`MatchmakingErrorKind::ConnectFailed`]
/// error per attempt, also kept in [`MatchmakingClientStatus::last_error`].
pub(super) fn watch_connect(
    mut view: ConnectionView,
    settings: Res<MatchmakingClientSettings>,
    mut watch: Local<ConnectWatch>,
    mut status: ResMut<MatchmakingClientStatus>,
    mut errors: MessageWriter<MatchmakingClientError>,
) {
    if let Some(message) = watch.check(&mut view, settings.connect_timeout) {
        let error = MatchmakingClientError {
            kind: MatchmakingErrorKind::ConnectFailed,
            message,
        };
        warn!("matchmaking: {}", error.message);
        status.last_error = Some(error.clone());
        errors.write(error);
    }
}

/// Says hello when the connection opens; when it closes, forgets the session (but keeps a
/// join the game asked for), resets the status, goes to
/// [`MatchmakingClientState::Disconnected`] and reports the loss.
pub(super) fn track_connection(
    client: Option<ResMut<RenetClient>>,
    channel: Res<MatchmakingChannel>,
    mut session: ResMut<ClientSession>,
    mut status: ResMut<MatchmakingClientStatus>,
    state: Res<State<MatchmakingClientState>>,
    mut next: ResMut<NextState<MatchmakingClientState>>,
    mut errors: MessageWriter<MatchmakingClientError>,
) {
    let connected = client.as_ref().is_some_and(|c| c.is_connected());
    if connected && !session.connected {
        let mut client = client.expect("connected");
        let hello = ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
        };
        send_to_server(&mut client, &channel, &hello);
    } else if !connected && session.connected {
        let pending_join = session.pending_join.take();
        *session = ClientSession {
            pending_join,
            ..default()
        };
        *status = MatchmakingClientStatus::default();
        if *state.get() != MatchmakingClientState::Disconnected {
            next.set(MatchmakingClientState::Disconnected);
        }
        errors.write(MatchmakingClientError {
            kind: MatchmakingErrorKind::Connection,
            message: lost_connection("matchmaking server", client.as_deref()),
        });
    }
    session.connected = connected;
}
