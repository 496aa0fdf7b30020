//! Phase 1 of the commit: every player is pinged at once; each answer is judged against
//! the timeout and the maximum round trip, and a stall of the caller earns a fresh ping.

use std::time::Duration;

use super::{
    ATOMIC_MAX_HEALTH_PINGS, AtomicAckState, AtomicCommitAction, AtomicCommitMachine,
    AtomicHealthCheck, AtomicMatchStatus, Phase,
};

impl<P: Copy + Eq> AtomicCommitMachine<P> {
    /// Whether the last stall ended after `from` and by `to`: a round trip over that span
    /// may have been held up by the caller.
    pub(super) fn stalled_between(&self, from: Duration, to: Duration) -> bool {
        self.last_stall.is_some_and(|s| s > from && s <= to)
    }

    /// Phase 1: judges the answers and timeouts, pings again after a stall, and ends the
    /// phase (lobby or rollback) once everyone is judged.
    pub(super) fn advance_health(
        &mut self,
        now: Duration,
        actions: &mut Vec<AtomicCommitAction<P>>,
    ) {
        let timings = self.timings;
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            if slot.health != AtomicHealthCheck::Pending {
                continue;
            }
            let sent = slot.ping_sent_at;
            let (judged_at, timed_out) = match slot.answered_at {
                Some(at) => (at, false),
                None if now >= sent.saturating_add(timings.ping_timeout) => (now, true),
                None => continue,
            };
            if slot.pings < ATOMIC_MAX_HEALTH_PINGS && self.stalled_between(sent, judged_at) {
                let nonce = self.rng.u64(..);
                actions.push(self.slots[i].ping(nonce, now));
                continue;
            }
            let latency = judged_at.saturating_sub(sent);
            self.slots[i].health = match timed_out {
                true => AtomicHealthCheck::NoAnswer,
                false if latency <= timings.max_latency => AtomicHealthCheck::Healthy { latency },
                false => AtomicHealthCheck::TooSlow { latency },
            };
        }
        if self
            .slots
            .iter()
            .any(|s| s.health == AtomicHealthCheck::Pending)
        {
            return;
        }
        let healthy: Vec<bool> = self.slots.iter().map(|s| s.health.is_healthy()).collect();
        if healthy.iter().all(|h| *h) {
            self.phase = Phase::Commit;
            actions.push(AtomicCommitAction::CreateLobby);
            for slot in &mut self.slots {
                slot.ack = AtomicAckState::Backoff {
                    attempt: 1,
                    at: now,
                };
            }
        } else {
            let status = AtomicMatchStatus::from_health(&healthy);
            actions.push(self.finish(status));
        }
    }
}
