//! The relay connection coming and going.
//!
//! What awaits a verdict survives a lost connection: an accept or a withdrawal of ours
//! may have been stored just before the connection dropped, so once back online the same
//! fact is posted again and the relay's verdict (stored, already held, or refused) settles
//! it. A bid that waited for an answer is withdrawn once back: the relay no longer lets
//! anyone accept it (its bidder left), and the withdrawal's verdict tells whether an
//! accept came first.

use std::time::Duration;

use crate::negotiated::core::fact::{NegotiatedAccept, NegotiatedCancel, NegotiatedFact};

use super::{NegotiatedMachine, NegotiatedOutput, NegotiatedPhase, NegotiatedRestartReason};

impl NegotiatedMachine {
    /// The connection is up and the clock estimated: settle what awaited a verdict,
    /// (re)subscribe and carry on.
    pub fn online(&mut self, now: Duration) -> Vec<NegotiatedOutput> {
        self.online = true;
        self.resume();
        self.advance(now);
        self.take()
    }

    /// The connection is gone: forget what the relay told us (it may have lost it too),
    /// keep what awaits a verdict, and start the search over once back online.
    pub fn offline(&mut self) -> Vec<NegotiatedOutput> {
        self.online = false;
        self.store.clear();
        self.synced.clear();
        self.departed.clear();
        self.pending.clear();
        self.subscribed = None;
        if matches!(self.phase, NegotiatedPhase::Requesting { .. }) {
            self.restart(NegotiatedRestartReason::ConnectionLost);
        }
        self.take()
    }

    /// Back online: post again what awaited a verdict, withdraw a bid that waited.
    fn resume(&mut self) {
        match self.phase.clone() {
            NegotiatedPhase::Accepting { request, bid, .. } => {
                self.post(NegotiatedFact::Accept(NegotiatedAccept { request, bid }));
            }
            NegotiatedPhase::Bidding { .. } => {
                self.withdraw(NegotiatedRestartReason::ConnectionLost, false);
            }
            NegotiatedPhase::Withdrawing { request, bid, .. } => {
                self.post(NegotiatedFact::Cancel(NegotiatedCancel::withdraw(
                    request, bid,
                )));
            }
            _ => {}
        }
    }
}
