//! The receive system: decode each message from the server, then hand it to the one
//! handler for its [`AtomicServerMessage`] variant, which updates the state and status, answers
//! the server where the protocol asks for it and reports to the game.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::RenetClient;

use super::messages::{
    AtomicClientError, AtomicConnected, AtomicLobbyLeft, AtomicMatchCancelled, AtomicMatchChecking,
    AtomicMatchFound, AtomicMatchProposed, AtomicQueueJoined, AtomicQueueLeft, AtomicServerClosing,
};
use super::send::send_to_server;
use super::state::{AtomicClientFaults, AtomicClientState, AtomicClientStatus, ClientSession};
use crate::atomic::AtomicChannel;
use crate::atomic::core::commit::AtomicMatchStatus;
use crate::atomic::core::protocol::{
    AtomicClientMessage, AtomicErrorKind, AtomicMatchCancelReason, AtomicMatchedPlayer,
    AtomicServerMessage,
};
use crate::shared::codec::{self, CodecError};
use crate::shared::player::PlayerId;

/// The writers of every message the plugin reports to the game from the server's messages.
#[derive(SystemParam)]
struct ReportWriters<'w> {
    connected: MessageWriter<'w, AtomicConnected>,
    joined: MessageWriter<'w, AtomicQueueJoined>,
    left: MessageWriter<'w, AtomicQueueLeft>,
    checking: MessageWriter<'w, AtomicMatchChecking>,
    proposed: MessageWriter<'w, AtomicMatchProposed>,
    found: MessageWriter<'w, AtomicMatchFound>,
    cancelled: MessageWriter<'w, AtomicMatchCancelled>,
    lobby_left: MessageWriter<'w, AtomicLobbyLeft>,
    errors: MessageWriter<'w, AtomicClientError>,
    closing: MessageWriter<'w, AtomicServerClosing>,
}

/// Everything the handlers of the server's messages read and change, except the renet
/// client the messages come from.
#[derive(SystemParam)]
pub(super) struct ServerMessageHandlers<'w> {
    channel: Res<'w, AtomicChannel>,
    faults: Option<Res<'w, AtomicClientFaults>>,
    time: Res<'w, Time<Real>>,
    session: ResMut<'w, ClientSession>,
    status: ResMut<'w, AtomicClientStatus>,
    next: ResMut<'w, NextState<AtomicClientState>>,
    reports: ReportWriters<'w>,
}

/// Reads every message the server sent on the matchmaking channel this frame and handles
/// it; an undecodable one is reported as a [`AtomicErrorKind::Malformed`] error.
pub(super) fn receive_messages(
    client: Option<ResMut<RenetClient>>,
    mut handlers: ServerMessageHandlers,
) {
    let Some(mut client) = client else {
        return;
    };
    while let Some(bytes) = client.receive_message(handlers.channel.id) {
        match codec::decode::<AtomicServerMessage>(&bytes) {
            Ok(message) => handlers.handle(&mut client, message),
            Err(err) => handlers.on_undecodable(&err),
        }
    }
}

impl ServerMessageHandlers<'_> {
    /// Passes `message` to the handler for its variant.
    fn handle(&mut self, client: &mut RenetClient, message: AtomicServerMessage) {
        match message {
            AtomicServerMessage::Welcome { player, .. } => self.on_welcome(client, player),
            AtomicServerMessage::QueueJoined {
                category,
                position,
                requeued,
            } => self.on_queue_joined(category, position, requeued),
            AtomicServerMessage::QueueLeft { category, .. } => self.on_queue_left(category),
            AtomicServerMessage::MatchChecking {
                match_id,
                category,
                players,
            } => self.on_match_checking(match_id, category, players),
            AtomicServerMessage::Ping { nonce } => self.on_ping(nonce),
            AtomicServerMessage::MatchProposed {
                match_id,
                lobby_id,
                lobby_code,
                attempt,
            } => self.on_match_proposed(client, match_id, lobby_id, lobby_code, attempt),
            AtomicServerMessage::MatchFound {
                match_id,
                lobby_id,
                lobby_code,
                category,
                players,
            } => self.on_match_found(match_id, lobby_id, lobby_code, category, players),
            AtomicServerMessage::MatchCancelled {
                match_id,
                status,
                reason,
                requeued,
            } => self.on_match_cancelled(match_id, status, reason, requeued),
            AtomicServerMessage::LobbyLeft { lobby_id } => self.on_lobby_left(lobby_id),
            AtomicServerMessage::ServerClosing { retry_elsewhere } => {
                self.on_server_closing(retry_elsewhere)
            }
            AtomicServerMessage::Error { kind, message } => self.on_error(kind, message),
        }
    }

    /// Bytes from the server that do not decode: report them, go on with the next.
    fn on_undecodable(&mut self, err: &CodecError) {
        self.reports.errors.write(AtomicClientError {
            kind: AtomicErrorKind::Malformed,
            message: format!("undecodable message from the server: {err}"),
        });
    }

    /// `Welcome`: we are idle under our player id; a join the game asked for before
    /// goes out now.
    fn on_welcome(&mut self, client: &mut RenetClient, player: PlayerId) {
        self.session.welcomed = true;
        self.status.player = Some(player);
        self.next.set(AtomicClientState::Idle);
        self.reports.connected.write(AtomicConnected { player });
        if let Some(category) = self.session.pending_join.take() {
            send_to_server(
                client,
                &self.channel,
                &AtomicClientMessage::JoinQueue { category },
            );
        }
    }

    /// `QueueJoined`: we hold a ticket (the waiting clock survives a re-queue).
    fn on_queue_joined(&mut self, category: String, position: u32, requeued: bool) {
        let now = self.time.elapsed();
        self.status.hold_ticket(now, &category, position, requeued);
        self.next.set(AtomicClientState::Queued);
        self.reports.joined.write(AtomicQueueJoined {
            category,
            position,
            requeued,
        });
    }

    /// `QueueLeft`: the ticket is gone; we are idle.
    fn on_queue_left(&mut self, category: String) {
        self.status.stop_waiting();
        self.next.set(AtomicClientState::Idle);
        self.reports.left.write(AtomicQueueLeft { category });
    }

    /// `MatchChecking`: the ticket went into a forming match.
    fn on_match_checking(&mut self, match_id: u64, category: String, players: u8) {
        self.status.enter_match(match_id);
        self.next.set(AtomicClientState::Matching);
        self.reports.checking.write(AtomicMatchChecking {
            match_id,
            category,
            players,
        });
    }

    /// `Ping`: queue the pong (after the injected delay), unless pings are ignored.
    fn on_ping(&mut self, nonce: u64) {
        let faults = self.faults.as_deref().cloned().unwrap_or_default();
        if !faults.ignore_pings {
            let due = self.time.elapsed() + faults.pong_delay;
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
        if self.faults.as_ref().is_none_or(|f| f.acknowledge_proposals) {
            let acknowledge = AtomicClientMessage::Acknowledge { match_id, lobby_id };
            send_to_server(client, &self.channel, &acknowledge);
        }
        self.reports.proposed.write(AtomicMatchProposed {
            match_id,
            lobby_id,
            lobby_code,
            attempt,
        });
    }

    /// `MatchFound`: the match committed; we are in its lobby. A match without us in it
    /// is reported as an [`AtomicErrorKind::Unexpected`] error and changes nothing.
    fn on_match_found(
        &mut self,
        match_id: u64,
        lobby_id: u64,
        lobby_code: String,
        category: String,
        players: Vec<AtomicMatchedPlayer>,
    ) {
        let me_id = self.status.player;
        let (mine, others): (Vec<AtomicMatchedPlayer>, Vec<AtomicMatchedPlayer>) =
            players.into_iter().partition(|p| Some(p.player) == me_id);
        let Some(me) = mine.into_iter().next() else {
            self.reports.errors.write(AtomicClientError {
                kind: AtomicErrorKind::Unexpected,
                message: format!("match {match_id} confirmed without us in it"),
            });
            return;
        };
        let found = AtomicMatchFound {
            match_id,
            lobby_id,
            lobby_code,
            category,
            me,
            others,
        };
        self.session.lobby_id = Some(lobby_id);
        self.status.commit_match(&found);
        self.next.set(AtomicClientState::Matched);
        self.reports.found.write(found);
    }

    /// `MatchCancelled`: the match rolled back; we are queued again or idle.
    fn on_match_cancelled(
        &mut self,
        match_id: u64,
        status: AtomicMatchStatus,
        reason: AtomicMatchCancelReason,
        requeued: bool,
    ) {
        let cancelled = AtomicMatchCancelled {
            match_id,
            status,
            reason,
            requeued,
        };
        self.status.cancel_match(&cancelled);
        self.next.set(if requeued {
            AtomicClientState::Queued
        } else {
            AtomicClientState::Idle
        });
        self.reports.cancelled.write(cancelled);
    }

    /// `LobbyLeft`: we left the committed match's lobby; we are idle.
    fn on_lobby_left(&mut self, lobby_id: u64) {
        self.session.lobby_id = None;
        self.status.leave_lobby();
        self.next.set(AtomicClientState::Idle);
        self.reports.lobby_left.write(AtomicLobbyLeft { lobby_id });
    }

    /// `ServerClosing`: the server drains; our ticket is gone (a match we were in was
    /// cancelled or found first).
    fn on_server_closing(&mut self, retry_elsewhere: bool) {
        info!("matchmaking server is closing (retry elsewhere: {retry_elsewhere})");
        self.status.stop_waiting();
        self.next.set(AtomicClientState::ServerClosing);
        self.reports
            .closing
            .write(AtomicServerClosing { retry_elsewhere });
    }

    /// `Error`: the server refused a request; log it, keep it and report it.
    fn on_error(&mut self, kind: AtomicErrorKind, message: String) {
        warn!("matchmaking server refused a request ({kind:?}): {message}");
        let error = AtomicClientError { kind, message };
        self.status.last_error = Some(error.clone());
        self.reports.errors.write(error);
    }
}
