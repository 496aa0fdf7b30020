//! Connections opening and closing, lobbies going away, refused connections closing.

use bevy::prelude::*;
use bevy_renet::renet::ServerEvent;
use bevy_renet::{RenetServer, RenetServerEvent};

use crate::shared::player::PlayerId;

use super::components::{MatchmakingLobby, MatchmakingMatch};
use super::settings::MatchmakingServerStats;
use super::state::{MatchmakingPlayerLocation, MatchmakingServerState};

/// Registers new connections and takes departed players out of wherever they were.
pub(super) fn on_server_event(
    event: On<RenetServerEvent>,
    mut state: ResMut<MatchmakingServerState>,
    mut stats: ResMut<MatchmakingServerStats>,
    mut matches: Query<&mut MatchmakingMatch>,
    mut lobbies: Query<&mut MatchmakingLobby>,
    mut commands: Commands,
) {
    let (client_id, reason) = match event.event().0 {
        ServerEvent::ClientConnected { client_id } => return state.connect(client_id),
        ServerEvent::ClientDisconnected { client_id, reason } => (client_id, reason),
    };
    debug!("matchmaking: player {client_id} disconnected ({reason})");
    let Some(location) = state.disconnect(client_id) else {
        return;
    };
    match location {
        MatchmakingPlayerLocation::Idle => {}
        MatchmakingPlayerLocation::Queued => {
            if let Some(ticket) = state.queue.remove(&client_id) {
                stats.sync_queued(&state.queue, &ticket.category);
            }
        }
        MatchmakingPlayerLocation::Matching(entity) => {
            // the match rolls back at its next advance
            if let Ok(mut m) = matches.get_mut(entity) {
                let _ = m.machine.disconnected(client_id);
            }
        }
        MatchmakingPlayerLocation::InLobby(entity) => {
            leave_lobby(&mut lobbies, &mut commands, entity, client_id);
        }
    }
}

/// Takes a member out of a lobby; the last one out closes it.
pub(super) fn leave_lobby(
    lobbies: &mut Query<&mut MatchmakingLobby>,
    commands: &mut Commands,
    entity: Entity,
    player: PlayerId,
) {
    if let Ok(mut lobby) = lobbies.get_mut(entity)
        && lobby.remove_member(player)
    {
        commands.entity(entity).despawn();
    }
}

/// Keeps the lobby index, the open codes and the members' locations right however a
/// lobby entity goes away (rollback, last member leaving, or the game despawning it).
pub(super) fn on_lobby_removed(
    event: On<Remove, MatchmakingLobby>,
    lobbies: Query<&MatchmakingLobby>,
    mut state: ResMut<MatchmakingServerState>,
    mut stats: ResMut<MatchmakingServerStats>,
) {
    let entity = event.event().entity;
    let Ok(lobby) = lobbies.get(entity) else {
        return;
    };
    state.close_lobby(lobby.lobby_id, &lobby.code);
    stats.lobbies_open = stats.lobbies_open.saturating_sub(1);
    for member in &lobby.members {
        let _ = state.move_player(
            *member,
            MatchmakingPlayerLocation::InLobby(entity),
            MatchmakingPlayerLocation::Idle,
        );
    }
}

/// Closes the connections refused for a version mismatch or abuse once their grace
/// period is over.
pub(super) fn close_refused_connections(
    mut server: ResMut<RenetServer>,
    mut state: ResMut<MatchmakingServerState>,
    time: Res<Time<Real>>,
) {
    for client in state.gate.take_due(time.elapsed()) {
        server.disconnect(client);
    }
}
