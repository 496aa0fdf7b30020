//! Receiving: every message passes the connection gate, then goes to the handler of its
//! [`AtomicClientMessage`] variant.
//!
//! A request the handlers refuse (`NotQueued`, `NotAMember`, `AlreadyQueued`, ...) is
//! answered with its error and costs the connection a strike at the gate, like a message
//! that does not decode; only `QueueFull` (the server's state, not the client's fault) is
//! free. Late answers that crossed a rollback or a new ping on the wire (an acknowledgement
//! of one of the player's recent proposals, a pong with one of its recent nonces) are
//! ignored without a reply. A connection the gate refuses loses its ticket, or withdraws
//! from its forming match, at once.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use crate::atomic::core::protocol::{
    ATOMIC_PROTOCOL_VERSION, AtomicClientMessage, AtomicErrorKind, AtomicQueueLeftReason,
    AtomicServerMessage,
};
use crate::atomic::core::queue::{AtomicQueueError, AtomicQueueTicket};
use crate::shared::connection_config::MatchmakingConnectionConfig;
use crate::shared::gate::{
    ConnectionGate, GateProtocol, GateReply, GatedService, MatchmakingGatePolicy, gate_protocol,
};
use crate::shared::guard::StrikeVerdict;
use crate::shared::player::{PlayerId, validate_category};

use super::components::AtomicMatch;
use super::connections::leave_lobby;
use super::matches::MatchEffects;
use super::settings::ActiveSettings;
use super::state::AtomicPlayerLocation;
use super::{AtomicServerLink, TransportClock};

gate_protocol!(
    AtomicClientMessage,
    AtomicErrorKind,
    GateProtocol {
        name: "matchmaking",
        speaker: "server",
        version: ATOMIC_PROTOCOL_VERSION,
    }
);

/// Everything the handlers read and write.
#[derive(SystemParam)]
pub(super) struct Receiver<'w, 's> {
    /// The link, the state, the stats, the lobbies and the commands: what forming and
    /// finishing matches write to as well.
    effects: MatchEffects<'w, 's>,
    settings: Res<'w, ActiveSettings>,
    matches: Query<'w, 's, &'static mut AtomicMatch>,
    clock: TransportClock<'w>,
}

/// Reads every connection's matchmaking channel through the gate.
pub(super) fn receive_messages(
    config: Option<Res<MatchmakingConnectionConfig>>,
    mut receiver: Receiver,
) {
    receiver
        .effects
        .state
        .gate
        .expect_config(config.map(|c| c.fingerprint));
    let now = receiver.clock.time.elapsed();
    receiver.receive_all(now);
}

impl<'w> GatedService for Receiver<'w, '_> {
    type Message = AtomicClientMessage;

    type Transport = AtomicServerLink<'w>;

    fn gate(&mut self) -> (&mut ConnectionGate, MatchmakingGatePolicy) {
        (&mut self.effects.state.gate, self.settings.0.gate)
    }

    fn transport(&mut self) -> &mut AtomicServerLink<'w> {
        &mut self.effects.link
    }

    fn welcome(&mut self, client: PlayerId) {
        let welcome = AtomicServerMessage::Welcome {
            protocol_version: ATOMIC_PROTOCOL_VERSION,
            player: client,
        };
        self.effects.link.send(client, &welcome);
    }

    fn reply(&mut self, client: PlayerId, reply: GateReply) {
        if let Some(warning) = reply.warning() {
            warn!("matchmaking: player {client}: {warning}");
        }
        self.act_on(client, reply);
    }

    fn deliver(&mut self, client: PlayerId, message: AtomicClientMessage, now: Duration) {
        let Some((location, session)) = self.effects.state.seat(client) else {
            return;
        };
        let seat = Seat {
            client,
            session,
            location,
        };
        match message {
            // the gate answers every hello
            AtomicClientMessage::Hello { .. } => {}
            AtomicClientMessage::JoinQueue { category } => self.on_join_queue(seat, category, now),
            AtomicClientMessage::LeaveQueue => self.on_leave_queue(seat, now),
            AtomicClientMessage::Pong { nonce } => self.on_pong(seat, nonce, now),
            AtomicClientMessage::Acknowledge { match_id, lobby_id } => {
                self.on_acknowledge(seat, match_id, lobby_id, now);
            }
            AtomicClientMessage::LeaveLobby { lobby_id } => {
                self.on_leave_lobby(seat, lobby_id, now)
            }
        }
    }
}

/// Who sent a message: the player, its connection's session and where it stands.
#[derive(Debug, Clone, Copy)]
struct Seat {
    client: PlayerId,
    session: u64,
    location: AtomicPlayerLocation,
}

impl Receiver<'_, '_> {
    /// Sends the gate's errors and, if it refused the connection, counts it and takes the
    /// player out of the queue or its forming match.
    fn act_on(&mut self, client: PlayerId, reply: GateReply) {
        for error in reply.errors {
            self.effects
                .link
                .send_error(client, error.kind.into(), error.message);
        }
        if reply.refused {
            self.effects.stats.connections_refused += 1;
            self.withdraw_refused(client);
        }
    }

    /// Answers a request the handlers refuse with its error and counts a strike at the
    /// gate (which may refuse the connection).
    fn refuse(
        &mut self,
        client: PlayerId,
        kind: AtomicErrorKind,
        message: impl Into<String>,
        now: Duration,
    ) {
        let message = message.into();
        let policy = self.settings.0.gate;
        let reply = self.effects.state.gate.strike_refused(client, policy, now);
        match reply.strike {
            Some(StrikeVerdict::Refused(n)) => {
                warn!(
                    "matchmaking: player {client}: {n} bad requests, the last {kind:?}: {message}"
                );
            }
            _ => debug!("matchmaking: player {client}: refused ({kind:?}): {message}"),
        }
        self.effects.link.send_error(client, kind, message);
        self.act_on(client, reply);
    }

    /// Takes a queued player's ticket out of its queue and makes the player idle.
    fn take_ticket(
        &mut self,
        client: PlayerId,
        session: u64,
    ) -> Option<AtomicQueueTicket<PlayerId>> {
        let ticket = self.effects.state.queue.remove(&client);
        if let Some(ticket) = &ticket {
            self.effects
                .stats
                .sync_queued(&self.effects.state.queue, &ticket.category);
        }
        let (queued, idle) = (AtomicPlayerLocation::Queued, AtomicPlayerLocation::Idle);
        let _ = self
            .effects
            .state
            .move_player(client, session, queued, idle);
        ticket
    }

    /// The gate refused the connection: it is closed after the grace period, but its
    /// ticket goes now, and it withdraws from a match still forming, so that nobody is
    /// matched with it.
    fn withdraw_refused(&mut self, client: PlayerId) {
        let Some((location, session)) = self.effects.state.seat(client) else {
            return;
        };
        match location {
            AtomicPlayerLocation::Queued => {
                let _ = self.take_ticket(client, session);
            }
            AtomicPlayerLocation::Matching(entity) => {
                if let Ok(mut m) = self.matches.get_mut(entity) {
                    let _ = m.machine.withdrew(client);
                }
            }
            // its lobby loses it when the connection closes
            AtomicPlayerLocation::Idle | AtomicPlayerLocation::InLobby(_) => {}
        }
    }

    /// [`AtomicClientMessage::JoinQueue`]: takes a ticket for an idle player.
    fn on_join_queue(&mut self, seat: Seat, category: String, now: Duration) {
        let client = seat.client;
        if self.effects.state.is_draining() {
            // the server's state, not the client's fault: no strike
            let message = "the server is closing: queue on another server";
            return self
                .effects
                .link
                .send_error(client, AtomicErrorKind::ServerClosing, message);
        }
        if let Some((kind, message)) = self.join_refusal(client, seat.location) {
            return self.refuse(client, kind, message, now);
        }
        if let Err(why) = validate_category(&category) {
            return self.refuse(client, AtomicErrorKind::InvalidCategory, why, now);
        }
        let ticket = AtomicQueueTicket {
            player: client,
            category: category.clone(),
            enqueued_at: now,
        };
        match self.effects.state.queue.enqueue(ticket) {
            Ok(position) => self.queued(seat, category, position),
            // the server's state, not the client's fault: no strike
            Err(AtomicQueueError::Full { capacity }) => self.effects.link.send_error(
                client,
                AtomicErrorKind::QueueFull,
                format!("the {category} queue is full ({capacity} players); try again later"),
            ),
            Err(AtomicQueueError::TooManyCategories { max }) => self.effects.link.send_error(
                client,
                AtomicErrorKind::QueueFull,
                format!("the server has {max} queues open; join one of them or try again later"),
            ),
            Err(AtomicQueueError::AlreadyQueued) => self.refuse(
                client,
                AtomicErrorKind::AlreadyQueued,
                "you already hold a ticket",
                now,
            ),
        }
    }

    /// Why a player at `location` may not join a queue.
    fn join_refusal(
        &self,
        client: PlayerId,
        location: AtomicPlayerLocation,
    ) -> Option<(AtomicErrorKind, String)> {
        match location {
            AtomicPlayerLocation::Idle => None,
            AtomicPlayerLocation::Queued => Some((
                AtomicErrorKind::AlreadyQueued,
                format!(
                    "you already hold a ticket in {}",
                    self.effects
                        .state
                        .queue
                        .category_of(&client)
                        .unwrap_or("a queue")
                ),
            )),
            AtomicPlayerLocation::Matching(_) => Some((
                AtomicErrorKind::AlreadyMatching,
                "your match is being formed".to_owned(),
            )),
            AtomicPlayerLocation::InLobby(_) => Some((
                AtomicErrorKind::AlreadyInLobby,
                "leave your lobby before queueing again".to_owned(),
            )),
        }
    }

    /// The player's ticket is in the queue at `position`.
    fn queued(&mut self, seat: Seat, category: String, position: usize) {
        self.effects
            .stats
            .sync_queued(&self.effects.state.queue, &category);
        let _ = self.effects.state.join(seat.client, seat.session);
        let joined = AtomicServerMessage::QueueJoined {
            category,
            position: position as u32,
            requeued: false,
        };
        self.effects.link.send(seat.client, &joined);
    }

    /// [`AtomicClientMessage::LeaveQueue`]: gives the ticket up, or withdraws from a match that
    /// is still forming (it rolls back at the next advance).
    fn on_leave_queue(&mut self, seat: Seat, now: Duration) {
        let client = seat.client;
        match seat.location {
            AtomicPlayerLocation::Queued => {
                let Some(ticket) = self.take_ticket(client, seat.session) else {
                    return;
                };
                let left = AtomicServerMessage::QueueLeft {
                    category: ticket.category,
                    reason: AtomicQueueLeftReason::Requested,
                };
                self.effects.link.send(client, &left);
            }
            AtomicPlayerLocation::Matching(entity) => {
                if let Ok(mut m) = self.matches.get_mut(entity) {
                    let _ = m.machine.withdrew(client);
                }
            }
            AtomicPlayerLocation::Idle | AtomicPlayerLocation::InLobby(_) => {
                let kind = AtomicErrorKind::NotQueued;
                self.refuse(client, kind, "you hold no ticket", now);
            }
        }
    }

    /// [`AtomicClientMessage::Pong`]: the health check's answer, timed where it arrived. A pong
    /// with one of the player's recent nonces that its match no longer waits for (it
    /// crossed a new ping or a rollback) is ignored; any other nonce is refused.
    fn on_pong(&mut self, seat: Seat, nonce: u64, now: Duration) {
        let arrived = self.clock.now();
        if let AtomicPlayerLocation::Matching(entity) = seat.location
            && let Ok(mut m) = self.matches.get_mut(entity)
            && m.machine.pong(seat.client, nonce, arrived).is_ok()
        {
            return;
        }
        if !self.effects.state.was_pinged(seat.client, nonce) {
            let kind = AtomicErrorKind::NotAMember;
            self.refuse(seat.client, kind, "that ping was not sent to you", now);
        }
    }

    /// [`AtomicClientMessage::Acknowledge`]: the answer to a proposal. A duplicate (of a
    /// resent proposal) is fine, and so is a late one for one of the player's recent
    /// proposals that crossed a rollback on the wire, even when the player is in a new
    /// match by now. Any other is refused.
    fn on_acknowledge(&mut self, seat: Seat, match_id: u64, lobby_id: u64, now: Duration) {
        let client = seat.client;
        if let AtomicPlayerLocation::Matching(entity) = seat.location
            && let Ok(mut m) = self.matches.get_mut(entity)
            && m.match_id == match_id
            && m.lobby.as_ref().is_some_and(|l| l.lobby_id == lobby_id)
        {
            let _ = m.machine.acknowledge(client);
            return;
        }
        if self.effects.state.was_proposed(client, match_id, lobby_id) {
            return;
        }
        let kind = AtomicErrorKind::NotAMember;
        let message = format!("match {match_id} / lobby {lobby_id} is not proposed to you");
        self.refuse(client, kind, message, now);
    }

    /// [`AtomicClientMessage::LeaveLobby`]: leaves a committed lobby.
    fn on_leave_lobby(&mut self, seat: Seat, lobby_id: u64, now: Duration) {
        let client = seat.client;
        if let AtomicPlayerLocation::InLobby(entity) = seat.location
            && self
                .effects
                .lobbies
                .get(entity)
                .is_ok_and(|l| l.lobby_id == lobby_id)
        {
            leave_lobby(
                &mut self.effects.lobbies,
                &mut self.effects.commands,
                entity,
                client,
            );
            let idle = AtomicPlayerLocation::Idle;
            let _ = self
                .effects
                .state
                .move_player(client, seat.session, seat.location, idle);
            self.effects
                .link
                .send(client, &AtomicServerMessage::LobbyLeft { lobby_id });
            return;
        }
        let kind = AtomicErrorKind::NotAMember;
        let message = format!("you are not in lobby {lobby_id}");
        self.refuse(client, kind, message, now);
    }
}
