//! Connections opening and closing, lobbies and matches going away, refused connections
//! closing.

use bevy::prelude::*;

use crate::shared::connection_config::config_disagreement;
use bevy_renet::renet::ServerEvent;
use bevy_renet::{RenetServer, RenetServerEvent};

use crate::atomic::AtomicChannel;
use crate::atomic::core::protocol::AtomicServerMessage;
use crate::shared::codec;
use crate::shared::player::PlayerId;

use super::components::{AtomicLobby, AtomicMatch};
use super::matches::MatchEffects;
use super::settings::AtomicServerStats;
use super::state::{AtomicPlayerLocation, AtomicServerState};

/// Registers new connections (each a new session) and takes departed players out of
/// wherever they were.
pub(super) fn on_server_event(
    event: On<RenetServerEvent>,
    mut state: ResMut<AtomicServerState>,
    mut stats: ResMut<AtomicServerStats>,
    mut matches: Query<&mut AtomicMatch>,
    mut lobbies: Query<&mut AtomicLobby>,
    mut commands: Commands,
) {
    let (client_id, connected) = match event.event().0 {
        ServerEvent::ClientConnected { client_id } => (client_id, true),
        ServerEvent::ClientDisconnected { client_id, reason } => {
            if let Some(why) = config_disagreement(reason) {
                stats.connections_refused += 1;
                warn!("matchmaking: player {client_id} refused: {why}");
            } else {
                debug!("matchmaking: player {client_id} disconnected ({reason})");
            }
            (client_id, false)
        }
    };
    // a connection under an id whose old one was never seen closing ends the old session
    if let Some(location) = state.disconnect(client_id) {
        match location {
            AtomicPlayerLocation::Idle => {}
            AtomicPlayerLocation::Queued => {
                if let Some(ticket) = state.queue.remove(&client_id) {
                    stats.sync_queued(&state.queue, &ticket.category);
                }
            }
            AtomicPlayerLocation::Matching(entity) => {
                // the match rolls back at its next advance
                if let Ok(mut m) = matches.get_mut(entity) {
                    let _ = m.machine.disconnected(client_id);
                }
            }
            AtomicPlayerLocation::InLobby(entity) => {
                leave_lobby(&mut lobbies, &mut commands, entity, client_id);
            }
        }
    }
    if connected {
        state.connect(client_id);
    }
}

/// Takes a member out of a lobby; the last one out closes it.
pub(super) fn leave_lobby(
    lobbies: &mut Query<&mut AtomicLobby>,
    commands: &mut Commands,
    entity: Entity,
    player: PlayerId,
) {
    if let Ok(mut lobby) = lobbies.get_mut(entity)
        && lobby.remove_member(player)
    {
        commands.entity(entity).try_despawn();
    }
}

/// Keeps the lobby index, the open codes and the members' locations right however a
/// lobby entity goes away (rollback, last member leaving, or the game despawning it).
/// Members still in a committed lobby the game closed are told they left it; a lobby
/// still in phase 2 calls its match off (it rolls back at its next advance).
pub(super) fn on_lobby_removed(
    event: On<Remove, AtomicLobby>,
    lobbies: Query<&AtomicLobby>,
    mut matches: Query<&mut AtomicMatch>,
    mut state: ResMut<AtomicServerState>,
    mut stats: ResMut<AtomicServerStats>,
    mut server: Option<ResMut<RenetServer>>,
    channel: Res<AtomicChannel>,
) {
    let entity = event.event().entity;
    let Ok(lobby) = lobbies.get(entity) else {
        return;
    };
    state.close_lobby(lobby.lobby_id, &lobby.code);
    stats.lobbies_open = stats.lobbies_open.saturating_sub(1);
    if !lobby.committed {
        for mut m in &mut matches {
            if m.lobby() == Some(entity) {
                let _ = m.machine.cancel();
            }
        }
        return;
    }
    let left = codec::encode(&AtomicServerMessage::LobbyLeft {
        lobby_id: lobby.lobby_id,
    });
    for member in &lobby.members {
        let Some(&session) = lobby.sessions.get(member) else {
            continue;
        };
        let (from, to) = (
            AtomicPlayerLocation::InLobby(entity),
            AtomicPlayerLocation::Idle,
        );
        if state.move_player(*member, session, from, to)
            && let Some(server) = server.as_deref_mut()
            && server.is_connected(*member)
        {
            server.send_message(*member, channel.id, left.clone());
        }
    }
}

/// A match entity despawned before its commit machine finished (by the server app): rolls
/// it back at once, like any rollback (players told, healthy ones re-queued at the front,
/// lobby deleted, counted).
pub(super) fn on_match_removed(
    event: On<Remove, AtomicMatch>,
    time: Res<Time<Real>>,
    mut matches: Query<&mut AtomicMatch>,
    mut effects: MatchEffects,
) {
    let entity = event.event().entity;
    let Ok(mut m) = matches.get_mut(entity) else {
        return;
    };
    let Some(outcome) = m.machine.abort() else {
        return; // finished: this is the match's own despawn
    };
    warn!(
        "matchmaking: match {} was despawned before it finished; rolling it back",
        m.match_id
    );
    effects.finish(entity, &m, &outcome, time.elapsed());
    effects.announce_requeues();
}

/// Closes the connections refused for a version mismatch or abuse once their grace
/// period is over.
pub(super) fn close_refused_connections(
    mut server: ResMut<RenetServer>,
    mut state: ResMut<AtomicServerState>,
    time: Res<Time<Real>>,
) {
    for client in state.gate.take_due(time.elapsed()) {
        server.disconnect(client);
    }
}
