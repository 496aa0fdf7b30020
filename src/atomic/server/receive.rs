//! Receiving: every message passes the connection gate, then goes to the handler of its
//! [`ClientMessage`] variant.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use crate::atomic::core::commit::CommitEventError;
use crate::atomic::core::protocol::{
    ClientMessage, MatchmakingErrorKind, PROTOCOL_VERSION, QueueLeftReason, ServerMessage,
};
use crate::atomic::core::queue::{QueueError, QueueTicket};
use crate::shared::gate::{
    ConnectionGate, GatePolicy, GateProtocol, GateReply, GatedService, gate_protocol,
};
use crate::shared::player::{PlayerId, validate_category};

use super::ServerLink;
use super::components::{MatchmakingLobby, MatchmakingMatch};
use super::connections::leave_lobby;
use super::settings::{MatchmakingServerSettings, MatchmakingServerStats};
use super::state::{MatchmakingPlayerLocation, MatchmakingServerState};

gate_protocol!(
    ClientMessage,
    MatchmakingErrorKind,
    GateProtocol {
        name: "matchmaking",
        speaker: "server",
        version: PROTOCOL_VERSION,
    }
);

/// Everything the handlers read and write.
#[derive(SystemParam)]
pub(super) struct Receiver<'w, 's> {
    link: ServerLink<'w>,
    settings: Res<'w, MatchmakingServerSettings>,
    state: ResMut<'w, MatchmakingServerState>,
    stats: ResMut<'w, MatchmakingServerStats>,
    matches: Query<'w, 's, &'static mut MatchmakingMatch>,
    lobbies: Query<'w, 's, &'static mut MatchmakingLobby>,
    commands: Commands<'w, 's>,
}

/// Reads every connection's matchmaking channel through the gate.
pub(super) fn receive_messages(time: Res<Time<Real>>, mut receiver: Receiver) {
    receiver.receive_all(time.elapsed());
}

impl GatedService for Receiver<'_, '_> {
    type Message = ClientMessage;

    fn gate(&mut self) -> (&mut ConnectionGate, GatePolicy) {
        (&mut self.state.gate, self.settings.gate_policy())
    }

    fn clients(&self) -> Vec<PlayerId> {
        self.link.server.clients_id()
    }

    fn next_message(&mut self, client: PlayerId) -> Option<Vec<u8>> {
        let channel = self.link.channel.id;
        self.link
            .server
            .receive_message(client, channel)
            .map(Vec::from)
    }

    fn welcome(&mut self, client: PlayerId) {
        let welcome = ServerMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            player: client,
        };
        self.link.send(client, &welcome);
    }

    fn reply(&mut self, client: PlayerId, reply: GateReply) {
        if let Some(warning) = reply.warning() {
            warn!("matchmaking: player {client}: {warning}");
        }
        if reply.refused {
            self.stats.connections_refused += 1;
        }
        for error in reply.errors {
            self.link
                .send_error(client, error.kind.into(), error.message);
        }
    }

    fn deliver(&mut self, client: PlayerId, message: ClientMessage, now: Duration) {
        let Some(location) = self.state.location(client) else {
            return;
        };
        match message {
            // the gate answers every hello
            ClientMessage::Hello { .. } => {}
            ClientMessage::JoinQueue { category } => {
                self.join_queue(client, location, category, now);
            }
            ClientMessage::LeaveQueue => self.leave_queue(client, location),
            ClientMessage::Pong { nonce } => self.pong(client, location, nonce, now),
            ClientMessage::Acknowledge { match_id, lobby_id } => {
                self.acknowledge(client, location, match_id, lobby_id);
            }
            ClientMessage::LeaveLobby { lobby_id } => self.leave_lobby(client, location, lobby_id),
        }
    }
}

impl Receiver<'_, '_> {
    /// [`ClientMessage::JoinQueue`]: takes a ticket for an idle player.
    fn join_queue(
        &mut self,
        client: PlayerId,
        location: MatchmakingPlayerLocation,
        category: String,
        now: Duration,
    ) {
        if let Some((kind, message)) = self.join_refusal(client, location) {
            return self.link.send_error(client, kind, message);
        }
        if let Err(why) = validate_category(&category) {
            let kind = MatchmakingErrorKind::InvalidCategory;
            return self.link.send_error(client, kind, why);
        }
        let ticket = QueueTicket {
            player: client,
            category: category.clone(),
            enqueued_at: now,
        };
        let (kind, message) = match self.state.queue.enqueue(ticket) {
            Ok(position) => return self.queued(client, category, position),
            Err(QueueError::Full { capacity }) => (
                MatchmakingErrorKind::QueueFull,
                format!("the {category} queue is full ({capacity} players); try again later"),
            ),
            Err(QueueError::AlreadyQueued) => (
                MatchmakingErrorKind::AlreadyQueued,
                "you already hold a ticket".to_owned(),
            ),
        };
        self.link.send_error(client, kind, message);
    }

    /// Why a player at `location` may not join a queue.
    fn join_refusal(
        &self,
        client: PlayerId,
        location: MatchmakingPlayerLocation,
    ) -> Option<(MatchmakingErrorKind, String)> {
        match location {
            MatchmakingPlayerLocation::Idle => None,
            MatchmakingPlayerLocation::Queued => Some((
                MatchmakingErrorKind::AlreadyQueued,
                format!(
                    "you already hold a ticket in {}",
                    self.state.queue.category_of(&client).unwrap_or("a queue")
                ),
            )),
            MatchmakingPlayerLocation::Matching(_) => Some((
                MatchmakingErrorKind::AlreadyMatching,
                "your match is being formed".to_owned(),
            )),
            MatchmakingPlayerLocation::InLobby(_) => Some((
                MatchmakingErrorKind::AlreadyInLobby,
                "leave your lobby before queueing again".to_owned(),
            )),
        }
    }

    /// The player's ticket is in the queue at `position`.
    fn queued(&mut self, client: PlayerId, category: String, position: usize) {
        self.stats.sync_queued(&self.state.queue, &category);
        let _ = self.state.move_player(
            client,
            MatchmakingPlayerLocation::Idle,
            MatchmakingPlayerLocation::Queued,
        );
        let joined = ServerMessage::QueueJoined {
            category,
            position: position as u32,
            requeued: false,
        };
        self.link.send(client, &joined);
    }

    /// [`ClientMessage::LeaveQueue`]: gives the ticket up, or withdraws from a match that
    /// is still forming (it rolls back at the next advance).
    fn leave_queue(&mut self, client: PlayerId, location: MatchmakingPlayerLocation) {
        match location {
            MatchmakingPlayerLocation::Queued => {
                let Some(ticket) = self.state.queue.remove(&client) else {
                    return;
                };
                self.stats.sync_queued(&self.state.queue, &ticket.category);
                let _ = self
                    .state
                    .move_player(client, location, MatchmakingPlayerLocation::Idle);
                let left = ServerMessage::QueueLeft {
                    category: ticket.category,
                    reason: QueueLeftReason::Requested,
                };
                self.link.send(client, &left);
            }
            MatchmakingPlayerLocation::Matching(entity) => {
                if let Ok(mut m) = self.matches.get_mut(entity) {
                    let _ = m.machine.withdrew(client);
                }
            }
            MatchmakingPlayerLocation::Idle | MatchmakingPlayerLocation::InLobby(_) => {
                let kind = MatchmakingErrorKind::NotQueued;
                self.link.send_error(client, kind, "you hold no ticket");
            }
        }
    }

    /// [`ClientMessage::Pong`]: the health check's answer. A pong outside a match is a
    /// late answer to a finished check and is ignored.
    fn pong(
        &mut self,
        client: PlayerId,
        location: MatchmakingPlayerLocation,
        nonce: u64,
        now: Duration,
    ) {
        if let MatchmakingPlayerLocation::Matching(entity) = location
            && let Ok(mut m) = self.matches.get_mut(entity)
            && m.machine.pong(client, nonce, now) == Err(CommitEventError::WrongNonce)
        {
            let kind = MatchmakingErrorKind::NotAMember;
            self.link
                .send_error(client, kind, "that ping was not sent to you");
        }
    }

    /// [`ClientMessage::Acknowledge`]: the answer to a proposal. A duplicate (of a
    /// resent proposal) is fine, and so is a late one for the player's last match that
    /// crossed its rollback on the wire.
    fn acknowledge(
        &mut self,
        client: PlayerId,
        location: MatchmakingPlayerLocation,
        match_id: u64,
        lobby_id: u64,
    ) {
        let own = match location {
            MatchmakingPlayerLocation::Matching(entity) => {
                self.matches.get_mut(entity).is_ok_and(|mut m| {
                    let proposed = m.match_id == match_id
                        && m.lobby.as_ref().is_some_and(|l| l.lobby_id == lobby_id);
                    if proposed {
                        let _ = m.machine.acknowledge(client);
                    }
                    proposed
                })
            }
            MatchmakingPlayerLocation::InLobby(entity) => self
                .lobbies
                .get(entity)
                .is_ok_and(|l| l.match_id == match_id && l.lobby_id == lobby_id),
            _ => false,
        };
        let stale = self.state.last_match(client) == Some(match_id)
            && matches!(
                location,
                MatchmakingPlayerLocation::Idle | MatchmakingPlayerLocation::Queued
            );
        if !own && !stale {
            let kind = MatchmakingErrorKind::NotAMember;
            let message = format!("match {match_id} / lobby {lobby_id} is not proposed to you");
            self.link.send_error(client, kind, message);
        }
    }

    /// [`ClientMessage::LeaveLobby`]: leaves a committed lobby.
    fn leave_lobby(
        &mut self,
        client: PlayerId,
        location: MatchmakingPlayerLocation,
        lobby_id: u64,
    ) {
        if let MatchmakingPlayerLocation::InLobby(entity) = location
            && self
                .lobbies
                .get(entity)
                .is_ok_and(|l| l.lobby_id == lobby_id)
        {
            leave_lobby(&mut self.lobbies, &mut self.commands, entity, client);
            let _ = self
                .state
                .move_player(client, location, MatchmakingPlayerLocation::Idle);
            self.link
                .send(client, &ServerMessage::LobbyLeft { lobby_id });
            return;
        }
        let kind = MatchmakingErrorKind::NotAMember;
        let message = format!("you are not in lobby {lobby_id}");
        self.link.send_error(client, kind, message);
    }
}
