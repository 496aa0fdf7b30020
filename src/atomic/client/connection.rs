//! Following the renet connection: hello when it opens, a clean slate when it closes.

use bevy::prelude::*;
use bevy_renet::RenetClient;

use super::messages::AtomicClientError;
use super::send::send_to_server;
use super::state::{AtomicClientSettings, AtomicClientState, AtomicClientStatus, ClientSession};
use crate::atomic::AtomicChannel;
use crate::atomic::core::protocol::{
    ATOMIC_PROTOCOL_VERSION, AtomicClientMessage, AtomicErrorKind,
};
use crate::shared::connect::{ConnectWatch, ConnectionView, lost_connection};

/// Reports a connection that never opens: one [`AtomicErrorKind::ConnectFailed`]
/// error per attempt, also kept in [`AtomicClientStatus::last_error`].
pub(super) fn watch_connect(
    mut view: ConnectionView,
    settings: Res<AtomicClientSettings>,
    mut watch: Local<ConnectWatch>,
    mut status: ResMut<AtomicClientStatus>,
    mut errors: MessageWriter<AtomicClientError>,
) {
    if let Some(message) = watch.check(&mut view, settings.connect_timeout) {
        let error = AtomicClientError {
            kind: AtomicErrorKind::ConnectFailed,
            message,
        };
        warn!("matchmaking: {}", error.message);
        status.last_error = Some(error.clone());
        errors.write(error);
    }
}

/// Says hello when the connection opens; when it closes, forgets the session (but keeps a
/// join the game asked for), resets the status, goes to
/// [`AtomicClientState::Disconnected`] and reports the loss.
pub(super) fn track_connection(
    client: Option<ResMut<RenetClient>>,
    channel: Res<AtomicChannel>,
    mut session: ResMut<ClientSession>,
    mut status: ResMut<AtomicClientStatus>,
    state: Res<State<AtomicClientState>>,
    mut next: ResMut<NextState<AtomicClientState>>,
    mut errors: MessageWriter<AtomicClientError>,
) {
    let connected = client.as_ref().is_some_and(|c| c.is_connected());
    if connected && !session.connected {
        let mut client = client.expect("connected");
        let hello = AtomicClientMessage::Hello {
            protocol_version: ATOMIC_PROTOCOL_VERSION,
        };
        send_to_server(&mut client, &channel, &hello);
    } else if !connected && session.connected {
        let pending_join = session.pending_join.take();
        *session = ClientSession {
            pending_join,
            ..default()
        };
        *status = AtomicClientStatus::default();
        if *state.get() != AtomicClientState::Disconnected {
            next.set(AtomicClientState::Disconnected);
        }
        errors.write(AtomicClientError {
            kind: AtomicErrorKind::Connection,
            message: lost_connection("matchmaking server", client.as_deref()),
        });
    }
    session.connected = connected;
}
