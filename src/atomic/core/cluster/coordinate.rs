//! The matches a node coordinates: claimed from the shared queue, their two-phase commit
//! run here, their players reached through their homes, and decided at the store's commit
//! point.

use std::collections::HashMap;
use std::time::Duration;

use crate::atomic::core::commit::{
    AtomicCommitAction, AtomicCommitMachine, AtomicCommitOutcome, AtomicHealthCheck,
    AtomicMatchStatus, cancel_reason,
};
use crate::atomic::core::lobby_code::generate_lobby_code;
use crate::atomic::core::protocol::AtomicServerMessage;
use crate::atomic::core::store::bridge::claim_fifo_into;
use crate::atomic::core::store::{
    AtomicCommit, AtomicStore, AtomicStoreError, AtomicStoreSeat, AtomicStoreTicket,
};
use crate::shared::player::PlayerId;

use super::home::called_off;
use super::node::{AtomicClusterNode, AtomicClusterOutcome, AtomicClusterOutput, AtomicLocalSeat};
use super::{AtomicClusterInbox, AtomicClusterMessage, AtomicClusterSeat};

/// Draws of a lobby id and code before the match is called off.
const LOBBY_DRAWS: usize = 8;

/// A match this node claimed and coordinates.
#[derive(Debug, Clone)]
pub(super) struct Coordinated {
    pub(super) category: String,
    pub(super) machine: AtomicCommitMachine<PlayerId>,
    /// Each player's home node.
    pub(super) homes: HashMap<PlayerId, String>,
    /// The claimed tickets, in match order (their enqueue times).
    pub(super) tickets: Vec<AtomicStoreTicket>,
    /// Its lobby's id and code, once opened.
    pub(super) lobby: Option<(u64, String)>,
    /// The machine's outcome, not yet written to the store (it was unreachable).
    pub(super) pending: Option<AtomicCommitOutcome<PlayerId>>,
    /// A commit point or a rollback was sent and its reply lost: it may have been done.
    pub(super) tried: bool,
}

impl AtomicClusterNode {
    /// Claims FIFO groups from the shared queue; each becomes a match this node runs.
    pub(super) fn claim(
        &mut self,
        _now: Duration,
        store: &mut dyn AtomicStore,
        _inbox: &mut dyn AtomicClusterInbox,
    ) -> Result<(), AtomicStoreError> {
        let Some(lease) = self.lease.clone() else {
            return Ok(());
        };
        let max = self.settings.claims_per_poll;
        let mut claimed = Vec::new();
        // what was claimed before an error is run all the same
        let group = self.settings.group_size;
        let result = claim_fifo_into(store, &lease, group, max, &mut claimed);
        for (match_id, category, tickets) in claimed {
            let players: Vec<PlayerId> = tickets.iter().map(|t| t.player).collect();
            let nonces: Vec<u64> = players.iter().map(|_| self.rng.u64(..)).collect();
            let machine = AtomicCommitMachine::new(&players, &nonces, self.settings.timings);
            let homes = tickets.iter().map(|t| (t.player, t.node.clone())).collect();
            let m = Coordinated {
                category,
                machine,
                homes,
                tickets,
                lobby: None,
                pending: None,
                tried: false,
            };
            self.coordinated.insert(match_id, m);
            self.counters.claimed += 1;
        }
        result
    }

    /// Polls every match this node coordinates and carries out what its machine asks.
    pub(super) fn advance(
        &mut self,
        now: Duration,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
    ) -> Result<(), AtomicStoreError> {
        let ids: Vec<u64> = self.coordinated.keys().copied().collect();
        for match_id in ids {
            self.advance_one(match_id, now, store, inbox)?;
        }
        Ok(())
    }

    fn advance_one(
        &mut self,
        match_id: u64,
        now: Duration,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
    ) -> Result<(), AtomicStoreError> {
        let Some(m) = self.coordinated.get_mut(&match_id) else {
            return Ok(());
        };
        let actions = if m.pending.is_none() {
            m.machine.poll(now)
        } else {
            Vec::new()
        };
        for action in actions {
            match action {
                AtomicCommitAction::Ping { player, nonce } => {
                    let ping = AtomicServerMessage::Ping { nonce };
                    self.send(match_id, player, ping, AtomicClusterSeat::Matching, inbox);
                }
                AtomicCommitAction::CreateLobby => self.open_lobby(match_id, store)?,
                AtomicCommitAction::Propose { player, attempt } => {
                    let Some((lobby_id, lobby_code)) = self.lobby_of(match_id) else {
                        continue;
                    };
                    let proposal = AtomicServerMessage::MatchProposed {
                        match_id,
                        lobby_id,
                        lobby_code,
                        attempt,
                    };
                    self.send(
                        match_id,
                        player,
                        proposal,
                        AtomicClusterSeat::Matching,
                        inbox,
                    );
                }
                AtomicCommitAction::Finish(outcome) => {
                    if let Some(m) = self.coordinated.get_mut(&match_id) {
                        m.pending = Some(outcome);
                    }
                }
            }
        }
        if self
            .coordinated
            .get(&match_id)
            .is_some_and(|m| m.pending.is_some())
        {
            self.resolve(match_id, store, inbox)?;
        }
        Ok(())
    }

    fn lobby_of(&self, match_id: u64) -> Option<(u64, String)> {
        self.coordinated
            .get(&match_id)
            .and_then(|m| m.lobby.clone())
    }

    /// Sends a coordinator's message to a player of `match_id` through its home.
    fn send(
        &mut self,
        match_id: u64,
        player: PlayerId,
        message: AtomicServerMessage,
        seat: AtomicClusterSeat,
        inbox: &mut dyn AtomicClusterInbox,
    ) {
        let Some(home) = self
            .coordinated
            .get(&match_id)
            .and_then(|m| m.homes.get(&player))
            .cloned()
        else {
            return;
        };
        let to_player = AtomicClusterMessage::ToPlayer {
            match_id,
            coordinator: self.settings.node.clone(),
            player,
            message,
            seat,
        };
        self.deliver(&home, to_player, inbox);
    }

    /// Opens the match's lobby in the store under a fresh id and code. If the store holds
    /// no such match forming under this node, the match is called off.
    fn open_lobby(
        &mut self,
        match_id: u64,
        store: &mut dyn AtomicStore,
    ) -> Result<(), AtomicStoreError> {
        let Some(lease) = self.lease.clone() else {
            return Ok(());
        };
        for _ in 0..LOBBY_DRAWS {
            let lobby_id = self.rng.u64(1..u64::MAX >> 11);
            let code = generate_lobby_code(&mut self.rng, |_| false);
            match store.open_lobby(&lease, match_id, lobby_id, &code) {
                Ok(true) => {
                    if let Some(m) = self.coordinated.get_mut(&match_id) {
                        m.lobby = Some((lobby_id, code));
                    }
                    return Ok(());
                }
                Ok(false) => {}
                Err(error) => {
                    self.call_off(match_id);
                    return Err(error);
                }
            }
        }
        self.call_off(match_id);
        Ok(())
    }

    /// Ends a match now as aborted (its outcome is written at the next chance).
    fn call_off(&mut self, match_id: u64) {
        if let Some(m) = self.coordinated.get_mut(&match_id)
            && m.pending.is_none()
        {
            m.pending = m.machine.abort();
        }
    }

    /// Writes a finished match's outcome at the store's commit point (or rolls it back)
    /// and tells every player through its home.
    fn resolve(
        &mut self,
        match_id: u64,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
    ) -> Result<(), AtomicStoreError> {
        let (Some(lease), Some(m)) = (self.lease.clone(), self.coordinated.get(&match_id)) else {
            return Ok(());
        };
        let Some(mut outcome) = m.pending.clone() else {
            return Ok(());
        };
        let tried = m.tried;
        if outcome.status.is_success() {
            let decided = store.commit(&lease, match_id);
            self.note_tried(match_id, decided.is_err());
            let decided = match decided? {
                // the commit point sent before, whose reply was lost, may have been it
                AtomicCommit::NotForming if tried && self.committed_before(match_id, store)? => {
                    AtomicCommit::Committed
                }
                other => other,
            };
            match decided {
                AtomicCommit::Committed => {
                    self.counters.committed += 1;
                    self.announce_commit(match_id, &outcome, inbox);
                    self.coordinated.remove(&match_id);
                    return Ok(());
                }
                AtomicCommit::NotForming => {
                    // resolved elsewhere (reaped): the homes learn it when they reconcile
                    self.coordinated.remove(&match_id);
                    return Ok(());
                }
                AtomicCommit::PlayerNodeGone { player } => {
                    outcome = without_player(outcome, player);
                }
                AtomicCommit::NoLobby => outcome.status = AtomicMatchStatus::Aborted,
            }
        }
        let rolled = store.rollback(&lease, match_id, &outcome.requeue());
        self.note_tried(match_id, rolled.is_err());
        let mut requeued = rolled?;
        if tried && requeued.is_empty() {
            // the rollback sent before, whose reply was lost, re-queued them
            requeued = self.queued_now(match_id, &outcome.requeue(), store)?;
        }
        let status = outcome.status.as_str().to_owned();
        *self.counters.rolled_back.entry(status).or_default() += 1;
        self.announce_rollback(match_id, &outcome, &requeued, inbox);
        self.coordinated.remove(&match_id);
        Ok(())
    }

    fn note_tried(&mut self, match_id: u64, lost: bool) {
        if lost && let Some(m) = self.coordinated.get_mut(&match_id) {
            m.tried = true;
        }
    }

    /// Whether the match's players are in its lobby (an earlier commit point went through).
    fn committed_before(
        &mut self,
        match_id: u64,
        store: &mut dyn AtomicStore,
    ) -> Result<bool, AtomicStoreError> {
        let Some(m) = self.coordinated.get(&match_id) else {
            return Ok(false);
        };
        let (Some((lobby_id, _)), Some(first)) = (m.lobby.clone(), m.tickets.first()) else {
            return Ok(false);
        };
        let seat = store.player(first.player)?.map(|r| r.seat);
        Ok(seat == Some(AtomicStoreSeat::InLobby { lobby_id }))
    }

    /// Which of `players` the rollback of `match_id` put back: each holds a record that is
    /// not of this match (queued, or claimed again since); one it let go holds none.
    fn queued_now(
        &mut self,
        match_id: u64,
        players: &[PlayerId],
        store: &mut dyn AtomicStore,
    ) -> Result<Vec<PlayerId>, AtomicStoreError> {
        let mut queued = Vec::new();
        for player in players {
            let seat = store.player(*player)?.map(|r| r.seat);
            if seat.is_some_and(|s| s != AtomicStoreSeat::Matching { match_id }) {
                queued.push(*player);
            }
        }
        Ok(queued)
    }

    fn announce_commit(
        &mut self,
        match_id: u64,
        outcome: &AtomicCommitOutcome<PlayerId>,
        inbox: &mut dyn AtomicClusterInbox,
    ) {
        let Some(m) = self.coordinated.get(&match_id) else {
            return;
        };
        let Some((lobby_id, lobby_code)) = m.lobby.clone() else {
            return;
        };
        let players = outcome.matched_players();
        let decided = AtomicClusterOutcome {
            match_id,
            category: m.category.clone(),
            status: outcome.status.clone(),
            lobby_code: Some(lobby_code.clone()),
            players: players.iter().map(|p| p.player).collect(),
            requeued: Vec::new(),
        };
        self.outputs.push(AtomicClusterOutput::Outcome(decided));
        let found = AtomicServerMessage::MatchFound {
            match_id,
            lobby_id,
            lobby_code,
            category: m.category.clone(),
            players,
        };
        for report in &outcome.players {
            let seat = AtomicClusterSeat::InLobby { lobby_id };
            self.send(match_id, report.player, found.clone(), seat, inbox);
        }
    }

    fn announce_rollback(
        &mut self,
        match_id: u64,
        outcome: &AtomicCommitOutcome<PlayerId>,
        requeued: &[PlayerId],
        inbox: &mut dyn AtomicClusterInbox,
    ) {
        let Some(category) = self.coordinated.get(&match_id).map(|m| m.category.clone()) else {
            return;
        };
        let decided = AtomicClusterOutcome {
            match_id,
            category: category.clone(),
            status: outcome.status.clone(),
            lobby_code: None,
            players: outcome.players.iter().map(|r| r.player).collect(),
            requeued: requeued.to_vec(),
        };
        self.outputs.push(AtomicClusterOutput::Outcome(decided));
        let max_latency = self.settings.timings.max_latency;
        for report in &outcome.players {
            let back = requeued.contains(&report.player);
            let cancelled = AtomicServerMessage::MatchCancelled {
                match_id,
                status: outcome.status.clone(),
                reason: cancel_reason(&outcome.status, report, max_latency),
                requeued: back,
            };
            let seat = if back {
                AtomicClusterSeat::Requeued {
                    category: category.clone(),
                }
            } else {
                AtomicClusterSeat::Dropped
            };
            self.send(match_id, report.player, cancelled, seat, inbox);
        }
    }

    /// The node lost its lease while coordinating this match: it can write nothing, so
    /// the node that reaps it rolls the match back (its players on live nodes go back in
    /// front). This node's own players of it are told and queued again, with their
    /// seniority, once a new lease is taken.
    pub(super) fn abandon(&mut self, match_id: u64, m: &Coordinated) {
        for ticket in &m.tickets {
            let player = ticket.player;
            let local = m
                .homes
                .get(&player)
                .is_some_and(|h| *h == self.settings.node);
            let in_match = matches!(
                self.seat(player),
                Some(AtomicLocalSeat::Matching { match_id: id, .. }) if *id == match_id
            );
            if local && in_match {
                self.requeue_locally(player, match_id, &m.category, ticket.enqueued_at_us);
            }
        }
    }

    /// Tells a player of this node its match is off and queues it again at the next lease.
    pub(super) fn requeue_locally(
        &mut self,
        player: PlayerId,
        match_id: u64,
        category: &str,
        enqueued_at_us: u64,
    ) {
        self.tell(player, called_off(match_id, true));
        self.mark_resolved(player, match_id);
        let seat = AtomicLocalSeat::Queued {
            category: category.to_owned(),
            enqueued_at_us: Some(enqueued_at_us),
        };
        self.set_seat(player, seat);
        if let Some(local) = self.players.get_mut(&player) {
            local.rejoin = true;
        }
    }

    /// A home reports a player's measured round trip.
    pub(super) fn on_health(&mut self, match_id: u64, player: PlayerId, nonce: u64, rtt: Duration) {
        if let Some(m) = self.coordinated.get_mut(&match_id) {
            let _ = m.machine.pong_measured(player, nonce, rtt);
        }
    }

    /// A home reports a player's acknowledgement.
    pub(super) fn on_acked(&mut self, match_id: u64, player: PlayerId) {
        if let Some(m) = self.coordinated.get_mut(&match_id) {
            let _ = m.machine.acknowledge(player);
        }
    }

    /// A home reports a player gone (disconnected, left, or no longer in this match).
    pub(super) fn on_gone(&mut self, match_id: u64, player: PlayerId) {
        if let Some(m) = self.coordinated.get_mut(&match_id) {
            let _ = m.machine.disconnected(player);
        }
    }
}

/// The outcome once `player`'s home node is found dead at the commit point: a phase-2
/// failure; the others go back in front.
fn without_player(
    mut outcome: AtomicCommitOutcome<PlayerId>,
    player: PlayerId,
) -> AtomicCommitOutcome<PlayerId> {
    outcome.status = AtomicMatchStatus::NotificationFailed;
    for report in &mut outcome.players {
        let gone = report.player == player;
        if gone {
            report.health = AtomicHealthCheck::Disconnected;
        }
        report.requeued = !gone;
    }
    outcome
}
