//! Connections coming and going, refused connections closing, and frames expiring.

use bevy::prelude::*;

use crate::shared::connection_config::config_disagreement;
use bevy_renet::renet::ServerEvent;
use bevy_renet::{RenetServer, RenetServerEvent};

use super::NegotiatedRelayLink;
use super::state::NegotiatedRelayState;

/// A connection opened (the gate and the core learn of it) or closed (its departure is
/// forwarded to the clients watching its frames).
pub(super) fn on_server_event(
    event: On<RenetServerEvent>,
    mut state: ResMut<NegotiatedRelayState>,
    link: Option<NegotiatedRelayLink>,
    time: Res<Time<Real>>,
) {
    let now = state.relay_time(time.elapsed());
    match event.event().0 {
        ServerEvent::ClientConnected { client_id } => {
            state.gate.connect(client_id);
            state.core.connect(client_id);
            if let Some(shared) = state.shared.as_mut() {
                shared.connect(client_id, now);
            }
        }
        ServerEvent::ClientDisconnected { client_id, reason } => {
            if let Some(why) = config_disagreement(reason) {
                warn!("negotiated relay: client {client_id} refused: {why}");
            } else {
                debug!("negotiated relay: client {client_id} disconnected ({reason})");
            }
            state.gate.disconnect(client_id);
            if let Some(shared) = state.shared.as_mut() {
                // every relay, this one too, hears of the departure from the shared log
                shared.disconnect(client_id, now);
                state.core.unsubscribe(client_id);
                return;
            }
            let out = state.core.disconnect(client_id);
            if let Some(mut link) = link {
                link.send_all(out);
            }
        }
    }
}

/// Drops the frames that are too old to read, when there are any.
pub(super) fn expire_frames(time: Res<Time<Real>>, mut state: ResMut<NegotiatedRelayState>) {
    let now = state.relay_time(time.elapsed());
    let oldest = state.core.frames().oldest_kept(now);
    if state
        .core
        .store()
        .frames()
        .next()
        .is_some_and(|(f, _)| f < oldest)
    {
        let dropped = state.core.expire(now);
        debug!("negotiated relay: dropped {dropped} expired facts");
    }
}

/// Closes the connections the gate refused, once their grace is over.
pub(super) fn close_refused_connections(
    mut server: ResMut<RenetServer>,
    mut state: ResMut<NegotiatedRelayState>,
    time: Res<Time<Real>>,
) {
    for client in state.gate.take_due(time.elapsed()) {
        server.disconnect(client);
    }
}
