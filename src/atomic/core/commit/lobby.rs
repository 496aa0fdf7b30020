//! Phase 2 of the commit: once the lobby exists, every player is sent the proposal and must
//! acknowledge it, within a number of attempts with a timeout and a backoff each.

use std::time::Duration;

use super::{AtomicAckState, AtomicCommitAction, AtomicCommitMachine, AtomicMatchStatus};

impl<P: Copy + Eq> AtomicCommitMachine<P> {
    /// Phase 2: sends due proposals, times out unanswered ones, and commits or rolls back.
    pub(super) fn advance_commit(
        &mut self,
        now: Duration,
        actions: &mut Vec<AtomicCommitAction<P>>,
    ) {
        let timings = self.timings;
        for slot in &mut self.slots {
            loop {
                match slot.ack {
                    AtomicAckState::Backoff { attempt, at } if now >= at => {
                        actions.push(AtomicCommitAction::Propose {
                            player: slot.player,
                            attempt,
                        });
                        slot.ack = AtomicAckState::Waiting {
                            attempt,
                            deadline: now.saturating_add(timings.notification_timeout),
                        };
                    }
                    AtomicAckState::Waiting { attempt, deadline } if now >= deadline => {
                        slot.ack = if attempt < timings.notification_attempts {
                            AtomicAckState::Backoff {
                                attempt: attempt + 1,
                                at: deadline.saturating_add(timings.notification_backoff),
                            }
                        } else {
                            AtomicAckState::Failed
                        };
                    }
                    _ => break,
                }
            }
        }
        if self.slots.iter().any(|s| s.ack == AtomicAckState::Failed) {
            actions.push(self.finish(AtomicMatchStatus::NotificationFailed));
        } else if self
            .slots
            .iter()
            .all(|s| s.ack == AtomicAckState::Acknowledged)
        {
            actions.push(self.finish(AtomicMatchStatus::Success));
        }
    }
}
