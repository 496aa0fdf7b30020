//! The two-phase commit of one match, as a state machine advanced by time and events.
//!
//! It never blocks: the caller feeds it pongs, acknowledgements and disconnects as they
//! arrive and calls [`AtomicCommitMachine::poll`] every frame with the current time; `poll` returns
//! the [`AtomicCommitAction`]s to carry out (send a ping, create the lobby, send a proposal,
//! finish). Time is a monotonic [`Duration`] chosen by the caller.
//!
//! Phase 1 (health) pings every player at once and waits until each has answered,
//! disconnected or timed out. A player is healthy when it is connected and answered with a
//! round trip at or under the maximum latency. The round trip runs from when the ping really
//! left ([`AtomicCommitMachine::pings_sent`], called after the transport sent the frame's packets)
//! to when the pong arrived (the time given to [`AtomicCommitMachine::pong`]); the answer is judged
//! at the next poll. A gap between two polls longer than the stall threshold is a stall of
//! the caller: a pong or a timeout that a stall may have delayed is not held against the
//! player, who is pinged again with a fresh nonce (at most [`ATOMIC_MAX_HEALTH_PINGS`] pings).
//! Phase 2 (commit) runs only when all are
//! healthy: the caller creates the lobby, then every player is sent the proposal and must
//! acknowledge it; an unacknowledged proposal is resent after the notification timeout plus
//! the backoff, up to the attempt limit. Any failure finishes the match with a rollback
//! outcome that lists who to re-queue.
//!
//! Inside: `types` (timings, health, statuses, actions and outcomes), this module (the
//! machine, its events and `poll`), `health` (phase 1) and `lobby` (phase 2). The
//! protocol is stated in `docs/design.md` ("Two-phase commit").

mod health;
mod lobby;
mod types;

use std::time::Duration;

pub use types::{
    ATOMIC_MAX_HEALTH_PINGS, AtomicAckState, AtomicCommitAction, AtomicCommitEventError,
    AtomicCommitOutcome, AtomicCommitTimings, AtomicHealthCheck, AtomicMatchStatus,
    AtomicPlayerReport, cancel_reason,
};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Health,
    Commit,
    Finished,
}

#[derive(Debug, Clone)]
struct Slot<P> {
    player: P,
    nonce: u64,
    /// Health pings sent so far.
    pings: u32,
    /// When the last ping left: the poll that asked for it until the caller stamps it.
    ping_sent_at: Duration,
    /// Whether the last ping still waits for [`AtomicCommitMachine::pings_sent`].
    ping_unstamped: bool,
    /// When the pong arrived; judged at the next poll.
    answered_at: Option<Duration>,
    health: AtomicHealthCheck,
    ack: AtomicAckState,
}

impl<P: Copy> Slot<P> {
    /// (Re)pings the player with `nonce` at `now`.
    fn ping(&mut self, nonce: u64, now: Duration) -> AtomicCommitAction<P> {
        self.nonce = nonce;
        self.pings += 1;
        self.ping_sent_at = now;
        self.ping_unstamped = true;
        self.answered_at = None;
        AtomicCommitAction::Ping {
            player: self.player,
            nonce,
        }
    }
}

/// The two-phase commit of one match.
#[derive(Debug, Clone)]
pub struct AtomicCommitMachine<P> {
    timings: AtomicCommitTimings,
    slots: Vec<Slot<P>>,
    phase: Phase,
    outcome: Option<AtomicCommitOutcome<P>>,
    /// The previous poll, to see stalls.
    last_poll: Option<Duration>,
    /// The end of the last stall (the poll after the gap).
    last_stall: Option<Duration>,
    /// Called off from outside: the next poll finishes the match.
    cancelled: bool,
    /// Before this moment a poll has nothing to do unless an event arrived (every event
    /// resets it to zero): the earliest deadline the last poll left.
    quiet_until: Duration,
    /// Tests only: every poll does the full work (to check the shortcut changes nothing).
    #[cfg(test)]
    eager: bool,
    /// Nonces of new pings after a stall.
    rng: fastrand::Rng,
}

impl<P: Copy + Eq> AtomicCommitMachine<P> {
    /// A machine for these players (match order; the first is the host) with one nonce each.
    ///
    /// # Panics
    /// If `players` and `nonces` differ in length.
    pub fn new(players: &[P], nonces: &[u64], timings: AtomicCommitTimings) -> Self {
        assert_eq!(players.len(), nonces.len(), "one nonce per player");
        let seed = nonces
            .iter()
            .fold(0x9E37_79B9_7F4A_7C15u64, |acc, n| acc.rotate_left(17) ^ n);
        Self {
            timings,
            slots: players
                .iter()
                .zip(nonces)
                .map(|(&player, &nonce)| Slot {
                    player,
                    nonce,
                    pings: 0,
                    ping_sent_at: Duration::ZERO,
                    ping_unstamped: false,
                    answered_at: None,
                    health: AtomicHealthCheck::Pending,
                    ack: AtomicAckState::NotProposed,
                })
                .collect(),
            phase: Phase::NotStarted,
            outcome: None,
            last_poll: None,
            last_stall: None,
            cancelled: false,
            quiet_until: Duration::ZERO,
            #[cfg(test)]
            eager: false,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The timings this machine runs with.
    pub fn timings(&self) -> AtomicCommitTimings {
        self.timings
    }

    /// The players in match order.
    pub fn players(&self) -> impl Iterator<Item = P> + '_ {
        self.slots.iter().map(|s| s.player)
    }

    /// A player's current health.
    pub fn health(&self, player: P) -> Option<AtomicHealthCheck> {
        self.slot(player).map(|s| s.health)
    }

    /// A player's proposal state.
    pub fn ack_state(&self, player: P) -> Option<AtomicAckState> {
        self.slot(player).map(|s| s.ack)
    }

    /// Health pings sent to a player so far (more than one after a stall).
    pub fn pings(&self, player: P) -> Option<u32> {
        self.slot(player).map(|s| s.pings)
    }

    /// Whether phase 2 (lobby, proposals) is running.
    pub fn in_commit_phase(&self) -> bool {
        self.phase == Phase::Commit
    }

    /// Whether the machine has finished.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The outcome, once finished.
    pub fn outcome(&self) -> Option<&AtomicCommitOutcome<P>> {
        self.outcome.as_ref()
    }

    fn slot(&self, player: P) -> Option<&Slot<P>> {
        self.slots.iter().find(|s| s.player == player)
    }

    fn slot_mut(&mut self, player: P) -> Result<&mut Slot<P>, AtomicCommitEventError> {
        self.slots
            .iter_mut()
            .find(|s| s.player == player)
            .ok_or(AtomicCommitEventError::NotAMember)
    }

    /// The pings asked for since the last call really left at `at` (call it after the
    /// transport sent the frame's packets). Without it a ping counts from the poll that
    /// asked for it.
    pub fn pings_sent(&mut self, at: Duration) {
        for slot in self.slots.iter_mut().filter(|s| s.ping_unstamped) {
            slot.ping_sent_at = at;
            slot.ping_unstamped = false;
        }
    }

    /// Whether a ping asked for still waits for [`Self::pings_sent`].
    pub fn has_unstamped_pings(&self) -> bool {
        self.slots.iter().any(|s| s.ping_unstamped)
    }

    /// A pong from `player` arrived at `at`; it is judged at the next poll.
    pub fn pong(
        &mut self,
        player: P,
        nonce: u64,
        at: Duration,
    ) -> Result<(), AtomicCommitEventError> {
        let in_health = self.phase == Phase::Health;
        let slot = self.slot_mut(player)?;
        if slot.nonce != nonce {
            return Err(AtomicCommitEventError::WrongNonce);
        }
        if !in_health || slot.health != AtomicHealthCheck::Pending || slot.answered_at.is_some() {
            return Err(AtomicCommitEventError::Unexpected);
        }
        slot.answered_at = Some(at);
        self.quiet_until = Duration::ZERO;
        Ok(())
    }

    /// `player`'s own node measured this ping's round trip as `rtt` (a player on another
    /// node of a cluster): judged at the next poll as a pong that arrived `rtt` after the
    /// ping left. A report that comes after the ping timed out is refused like a late pong.
    pub fn pong_measured(
        &mut self,
        player: P,
        nonce: u64,
        rtt: Duration,
    ) -> Result<(), AtomicCommitEventError> {
        let at = self
            .slot(player)
            .map(|s| s.ping_sent_at.saturating_add(rtt))
            .ok_or(AtomicCommitEventError::NotAMember)?;
        self.pong(player, nonce, at)
    }

    /// `player` acknowledged the proposal.
    pub fn acknowledge(&mut self, player: P) -> Result<(), AtomicCommitEventError> {
        let in_commit = self.phase == Phase::Commit;
        let slot = self.slot_mut(player)?;
        match slot.ack {
            AtomicAckState::Waiting { .. } | AtomicAckState::Backoff { .. } if in_commit => {
                slot.ack = AtomicAckState::Acknowledged;
                self.quiet_until = Duration::ZERO;
                Ok(())
            }
            _ => Err(AtomicCommitEventError::Unexpected),
        }
    }

    /// `player` lost its connection.
    pub fn disconnected(&mut self, player: P) -> Result<(), AtomicCommitEventError> {
        self.lose(player, AtomicHealthCheck::Disconnected)
    }

    /// `player` left the queue while the match was forming.
    pub fn withdrew(&mut self, player: P) -> Result<(), AtomicCommitEventError> {
        self.lose(player, AtomicHealthCheck::Withdrew)
    }

    fn lose(&mut self, player: P, health: AtomicHealthCheck) -> Result<(), AtomicCommitEventError> {
        if self.phase == Phase::Finished {
            return Err(AtomicCommitEventError::Unexpected);
        }
        let slot = self.slot_mut(player)?;
        slot.health = health;
        slot.answered_at = None;
        if slot.ack != AtomicAckState::NotProposed {
            slot.ack = AtomicAckState::Failed;
        }
        self.quiet_until = Duration::ZERO;
        Ok(())
    }

    /// Calls the match off from outside (its lobby is gone): the next poll finishes it
    /// with [`AtomicMatchStatus::Aborted`].
    pub fn cancel(&mut self) -> Result<(), AtomicCommitEventError> {
        if self.phase == Phase::Finished {
            return Err(AtomicCommitEventError::Unexpected);
        }
        self.cancelled = true;
        self.quiet_until = Duration::ZERO;
        Ok(())
    }

    /// Calls the match off from outside and finishes it now with [`AtomicMatchStatus::Aborted`]
    /// (the match itself is going away). `None` if it had finished already.
    pub fn abort(&mut self) -> Option<AtomicCommitOutcome<P>> {
        if self.phase == Phase::Finished {
            return None;
        }
        match self.finish(AtomicMatchStatus::Aborted) {
            AtomicCommitAction::Finish(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Advances the machine to `now` and returns what to do, in order.
    ///
    /// Cheap when nothing is due: a poll before the earliest deadline with no event since
    /// the last poll only notes the time (to see stalls) and returns no action.
    pub fn poll(&mut self, now: Duration) -> Vec<AtomicCommitAction<P>> {
        if let Some(previous) = self.last_poll
            && now.saturating_sub(previous) > self.timings.stall_threshold
        {
            self.last_stall = Some(now);
        }
        self.last_poll = Some(now);
        let mut actions = Vec::new();
        if self.phase == Phase::Finished || (now < self.quiet_until && !self.is_eager()) {
            return actions;
        }
        if self.cancelled {
            actions.push(self.finish(AtomicMatchStatus::Aborted));
            return actions;
        }
        if self.phase == Phase::NotStarted {
            self.phase = Phase::Health;
            for slot in self.slots.iter_mut() {
                if slot.health == AtomicHealthCheck::Pending {
                    let nonce = slot.nonce;
                    actions.push(slot.ping(nonce, now));
                }
            }
        }
        if self.phase == Phase::Health {
            self.advance_health(now, &mut actions);
        }
        if self.phase == Phase::Commit {
            self.advance_commit(now, &mut actions);
        }
        self.quiet_until = self.next_deadline();
        actions
    }

    #[cfg(test)]
    fn is_eager(&self) -> bool {
        self.eager
    }

    #[cfg(not(test))]
    fn is_eager(&self) -> bool {
        false
    }

    /// The earliest moment a poll could act without an event: a ping timing out, a
    /// proposal due or timing out. Events reset it; a ping stamped later than it was asked
    /// for only makes a poll at this moment find nothing due.
    fn next_deadline(&self) -> Duration {
        let deadline = |slot: &Slot<P>| match (self.phase, slot.ack) {
            (Phase::Health, _) if slot.health == AtomicHealthCheck::Pending => {
                match slot.answered_at {
                    Some(_) => Duration::ZERO,
                    None => slot.ping_sent_at.saturating_add(self.timings.ping_timeout),
                }
            }
            (Phase::Commit, AtomicAckState::Backoff { at, .. }) => at,
            (Phase::Commit, AtomicAckState::Waiting { deadline, .. }) => deadline,
            _ => Duration::MAX,
        };
        match self.phase {
            Phase::Health | Phase::Commit => self
                .slots
                .iter()
                .map(deadline)
                .min()
                .unwrap_or(Duration::ZERO),
            Phase::NotStarted => Duration::ZERO,
            Phase::Finished => Duration::MAX,
        }
    }

    fn finish(&mut self, status: AtomicMatchStatus) -> AtomicCommitAction<P> {
        self.phase = Phase::Finished;
        let aborted = status == AtomicMatchStatus::Aborted;
        let success = status.is_success();
        let outcome = AtomicCommitOutcome {
            status,
            players: self
                .slots
                .iter()
                .map(|s| {
                    // an aborted match holds nothing against a player still pending
                    let fit = s.health.is_healthy()
                        || (aborted && s.health == AtomicHealthCheck::Pending);
                    AtomicPlayerReport {
                        player: s.player,
                        health: s.health,
                        acknowledged: s.ack == AtomicAckState::Acknowledged,
                        requeued: !success && fit && s.ack != AtomicAckState::Failed,
                    }
                })
                .collect(),
        };
        self.outcome = Some(outcome.clone());
        AtomicCommitAction::Finish(outcome)
    }
}

#[cfg(test)]
mod tests;
