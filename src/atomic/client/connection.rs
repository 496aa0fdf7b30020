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
use crate::shared::connect::{
    ClosedByGame, ConnectWatch, ConnectionView, describe_own_config, lost_connection,
};
use crate::shared::connection_config::{
    MatchmakingConnectionConfig, config_problem, hello_fingerprint,
};

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
    config: Option<Res<MatchmakingConnectionConfig>>,
    closed_by_game: Option<Res<ClosedByGame>>,
) {
    let connected = client.as_ref().is_some_and(|c| c.is_connected());
    if connected && !session.connected {
        let mut client = client.expect("connected");
        let hello = AtomicClientMessage::Hello {
            protocol_version: ATOMIC_PROTOCOL_VERSION,
            config_fingerprint: hello_fingerprint(config.as_deref()),
        };
        send_to_server(&mut client, &channel, &hello);
    } else if !connected && session.connected {
        let refused = status.last_error.as_ref().is_some_and(|e| {
            matches!(
                e.kind,
                AtomicErrorKind::VersionMismatch | AtomicErrorKind::ConfigMismatch
            )
        });
        let unwelcomed = (status.player.is_none() && !refused)
            .then(|| describe_own_config(channel.id, config.as_deref()));
        let pending_join = session.pending_join.take();
        *session = ClientSession {
            pending_join,
            ..default()
        };
        *status = AtomicClientStatus::default();
        if *state.get() != AtomicClientState::Disconnected {
            next.set(AtomicClientState::Disconnected);
        }
        // the game closed it (MatchmakingDisconnect): no error
        if closed_by_game.is_none() {
            errors.write(AtomicClientError {
                kind: AtomicErrorKind::Connection,
                message: lost_connection("matchmaking server", client.as_deref(), unwelcomed),
            });
        }
    }
    session.connected = connected;
}

/// Checks the recorded connection config when it is inserted or changed: one
/// [`AtomicErrorKind::ConfigMismatch`] error if it lacks the plugin's channel (the plugin
/// then leaves renet alone until the config is fixed).
pub(super) fn check_config(
    channel: Res<AtomicChannel>,
    config: Option<Res<MatchmakingConnectionConfig>>,
    mut status: ResMut<AtomicClientStatus>,
    mut errors: MessageWriter<AtomicClientError>,
) {
    if let Some(problem) = config_problem(&*channel, config.as_deref(), "AtomicClientPlugin") {
        let error = AtomicClientError {
            kind: AtomicErrorKind::ConfigMismatch,
            message: problem.message,
        };
        error!("matchmaking: {}", error.message);
        status.last_error = Some(error.clone());
        errors.write(error);
    }
}
