//! The receive system: decode each message from the server, then hand it to the one
//! handler for its [`ServerMessage`] variant, which updates the state and status, answers
//! the server where the protocol asks for it and reports to the game.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::RenetClient;

use super::messages::{
    MatchmakingClientError, MatchmakingConnected, MatchmakingLobbyLeft, MatchmakingMatchCancelled,
    MatchmakingMatchChecking, MatchmakingMatchFound, MatchmakingMatchProposed,
    MatchmakingQueueJoined, MatchmakingQueueLeft,
};
use super::send::send_to_server;
use super::state::{
    ClientSession, MatchmakingClientFaults, MatchmakingClientState, MatchmakingClientStatus,
};
use crate::atomic::MatchmakingChannel;
use crate::atomic::core::commit::MatchStatus;
use crate::atomic::core::protocol::{
    ClientMessage, MatchCancelReason, MatchedPlayer, MatchmakingErrorKind, ServerMessage,
};
use crate::shared::codec::{self, CodecError};
use crate::shared::player::PlayerId;

/// The writers of every message the plugin reports to the game from the server's messages.
#[derive(SystemParam)]
struct ReportWriters<'w> {
    connected: MessageWriter<'w, MatchmakingConnected>,
    joined: MessageWriter<'w, MatchmakingQueueJoined>,
    left: MessageWriter<'w, MatchmakingQueueLeft>,
    checking: MessageWriter<'w, MatchmakingMatchChecking>,
    proposed: MessageWriter<'w, MatchmakingMatchProposed>,
    found: MessageWriter<'w, MatchmakingMatchFound>,
    cancelled: MessageWriter<'w, MatchmakingMatchCancelled>,
    lobby_left: MessageWriter<'w, MatchmakingLobbyLeft>,
    errors: MessageWriter<'w, MatchmakingClientError>,
}

/// Everything the handlers of the server's messages read and change, except the renet
/// client the messages come from.
#[derive(SystemParam)]
pub(super) struct ServerMessageHandlers<'w> {
    channel: Res<'w, MatchmakingChannel>,
    faults: Res<'w, MatchmakingClientFaults>,
    time: Res<'w, Time<Real>>,
    session: ResMut<'w, ClientSession>,
    status: ResMut<'w, MatchmakingClientStatus>,
    next: ResMut<'w, NextState<MatchmakingClientState>>,
    reports: ReportWriters<'w>,
}

/// Reads every message the server sent on the matchmaking channel this frame and handles
/// it; an undecodable one is reported as a [`MatchmakingErrorKind::Malformed`] error.
pub(super) fn receive_messages(
    client: Option<ResMut<RenetClient>>,
    mut handlers: ServerMessageHandlers,
) {
    let Some(mut client) = client else {
        return;
    };
    while let Some(bytes) = client.receive_message(handlers.channel.id) {
        match codec::decode::<ServerMessage>(&bytes) {
            Ok(message) => handlers.handle(&mut client, message),
            Err(err) => handlers.on_undecodable(&err),
        }
    }
}

impl ServerMessageHandlers<'_> {
    /// Passes `message` to the handler for its variant.
    fn handle(&mut self, client: &mut RenetClient, message: ServerMessage) {
        match message {
            ServerMessage::Welcome { player, .. } => self.on_welcome(client, player),
            ServerMessage::QueueJoined {
                category,
                position,
                requeued,
            } => self.on_queue_joined(category, position, requeued),
            ServerMessage::QueueLeft { category, .. } => self.on_queue_left(category),
            ServerMessage::MatchChecking {
                match_id,
                category,
                players,
            } => self.on_match_checking(match_id, category, players),
            ServerMessage::Ping { nonce } => self.on_ping(nonce),
            ServerMessage::MatchProposed {
                match_id,
                lobby_id,
                lobby_code,
                attempt,
            } => self.on_match_proposed(client, match_id, lobby_id, lobby_code, attempt),
            ServerMessage::MatchFound {
                match_id,
                lobby_id,
                lobby_code,
                category,
                players,
            } => self.on_match_found(match_id, lobby_id, lobby_code, category, players),
            ServerMessage::MatchCancelled {
                match_id,
                status,
                reason,
                requeued,
            } => self.on_match_cancelled(match_id, status, reason, requeued),
            ServerMessage::LobbyLeft { lobby_id } => self.on_lobby_left(lobby_id),
            ServerMessage::Error { kind, message } => self.on_error(kind, message),
        }
    }

    /// Bytes from the server that do not decode: report them, go on with the next.
    fn on_undecodable(&mut self, err: &CodecError) {
        self.reports.errors.write(MatchmakingClientError {
            kind: MatchmakingErrorKind::Malformed,
            message: format!("undecodable message from the server: {err}"),
        });
    }

    /// `Welcome`: we are idle under our player id; a join the game asked for before
    /// goes out now.
    fn on_welcome(&mut self, client: &mut RenetClient, player: PlayerId) {
        self.session.welcomed = true;
        self.status.player = Some(player);
        self.next.set(MatchmakingClientState::Idle);
        self.reports
            .connected
            .write(MatchmakingConnected { player });
        if let Some(category) = self.session.pending_join.take() {
            send_to_server(
                client,
                &self.channel,
                &ClientMessage::JoinQueue { category },
            );
        }
    }

    /// `QueueJoined`: we hold a ticket (the waiting clock survives a re-queue).
    fn on_queue_joined(&mut self, category: String, position: u32, requeued: bool) {
        let now = self.time.elapsed();
        self.status.hold_ticket(now, &category, position, requeued);
        self.next.set(MatchmakingClientState::Queued);
        self.reports.joined.write(MatchmakingQueueJoined {
            category,
            position,
            requeued,
        });
    }

    /// `QueueLeft`: the ticket is gone; we are idle.
    fn on_queue_left(&mut self, category: String) {
        self.status.stop_waiting();
        self.next.set(MatchmakingClientState::Idle);
        self.reports.left.write(MatchmakingQueueLeft { category });
    }

    /// `MatchChecking`: the ticket went into a forming match.
    fn on_match_checking(&mut self, match_id: u64, category: String, players: u8) {
        self.status.enter_match(match_id);
        self.next.set(MatchmakingClientState::Matching);
        self.reports.checking.write(MatchmakingMatchChecking {
            match_id,
            category,
            players,
        });
    }

    /// `Ping`: queue the pong (after the injected delay), unless pings are ignored.
    fn on_ping(&mut self, nonce: u64) {
        if !self.faults.ignore_pings {
            let due = self.time.elapsed() + self.faults.pong_delay;
            self.session.pending_pongs.push((due, nonce));
        }
    }

    /// `MatchProposed`: acknowledge at once (unless faults say not to) and report it.
    fn on_match_proposed(
        &mut self,
        client: &mut RenetClient,
        match_id: u64,
        lobby_id: u64,
        lobby_code: String,
        attempt: u32,
    ) {
        if self.faults.acknowledge_proposals {
            let acknowledge = ClientMessage::Acknowledge { match_id, lobby_id };
            send_to_server(client, &self.channel, &acknowledge);
        }
        self.reports.proposed.write(MatchmakingMatchProposed {
            match_id,
            lobby_id,
            lobby_code,
            attempt,
        });
    }

    /// `MatchFound`: the match committed; we are in its lobby. A match without us in it
    /// is reported as an [`MatchmakingErrorKind::Unexpected`] error and changes nothing.
    fn on_match_found(
        &mut self,
        match_id: u64,
        lobby_id: u64,
        lobby_code: String,
        category: String,
        players: Vec<MatchedPlayer>,
    ) {
        let me_id = self.status.player;
        let (mine, others): (Vec<MatchedPlayer>, Vec<MatchedPlayer>) =
            players.into_iter().partition(|p| Some(p.player) == me_id);
        let Some(me) = mine.into_iter().next() else {
            self.reports.errors.write(MatchmakingClientError {
                kind: MatchmakingErrorKind::Unexpected,
                message: format!("match {match_id} confirmed without us in it"),
            });
            return;
        };
        let found = MatchmakingMatchFound {
            match_id,
            lobby_id,
            lobby_code,
            category,
            me,
            others,
        };
        self.session.lobby_id = Some(lobby_id);
        self.status.commit_match(&found);
        self.next.set(MatchmakingClientState::Matched);
        self.reports.found.write(found);
    }

    /// `MatchCancelled`: the match rolled back; we are queued again or idle.
    fn on_match_cancelled(
        &mut self,
        match_id: u64,
        status: MatchStatus,
        reason: MatchCancelReason,
        requeued: bool,
    ) {
        let cancelled = MatchmakingMatchCancelled {
            match_id,
            status,
            reason,
            requeued,
        };
        self.status.cancel_match(&cancelled);
        self.next.set(if requeued {
            MatchmakingClientState::Queued
        } else {
            MatchmakingClientState::Idle
        });
        self.reports.cancelled.write(cancelled);
    }

    /// `LobbyLeft`: we left the committed match's lobby; we are idle.
    fn on_lobby_left(&mut self, lobby_id: u64) {
        self.session.lobby_id = None;
        self.status.leave_lobby();
        self.next.set(MatchmakingClientState::Idle);
        self.reports
            .lobby_left
            .write(MatchmakingLobbyLeft { lobby_id });
    }

    /// `Error`: the server refused a request; log it, keep it and report it.
    fn on_error(&mut self, kind: MatchmakingErrorKind, message: String) {
        warn!("matchmaking server refused a request ({kind:?}): {message}");
        let error = MatchmakingClientError { kind, message };
        self.status.last_error = Some(error.clone());
        self.reports.errors.write(error);
    }
}
