//! Bidding: placing a bid, waiting for the answer, withdrawing it and giving up on a
//! request.
//!
//! A bid is given up only when the relay's stream proves no accept of it can be stored:
//! the requester rejected it, accepted another bid or cancelled the request (each of which
//! the relay stored first), or our withdrawal got its verdict (an accept stored before
//! it reaches us before the verdict).

use crate::negotiated::core::clock::as_us;
use crate::negotiated::core::fact::{
    NegotiatedBid, NegotiatedCancel, NegotiatedFact, NegotiatedFactId,
};

use super::advance::Step;
use super::{NegotiatedEvent, NegotiatedMachine, NegotiatedPhase, NegotiatedRestartReason};

impl NegotiatedMachine {
    /// Bids on a request we know and waits for its requester's answer until the bid's
    /// deadline, `bid_timeout` from now.
    pub(super) fn bid(&mut self, request: NegotiatedFactId) {
        let Some(requester) = self.store.requester(request) else {
            return;
        };
        let created_us = self.stamp();
        let deadline = self.now.saturating_add(self.config.bid_timeout);
        let bid = self.post(NegotiatedFact::Bid(NegotiatedBid {
            request,
            created_us,
            deadline_us: as_us(deadline),
        }));
        self.phase = NegotiatedPhase::Bidding {
            bid,
            request,
            requester,
            since: self.now,
            deadline,
        };
        self.event(NegotiatedEvent::BidPlaced {
            bid,
            request,
            requester,
        });
    }

    /// While bidding, once time has passed: withdraw the bid at its deadline, or when
    /// the request expired.
    pub(super) fn expire_bid(&mut self) {
        let NegotiatedPhase::Bidding {
            request, deadline, ..
        } = self.phase
        else {
            return;
        };
        let frames = self.config.frames;
        let live = self
            .store
            .get(request)
            .is_some_and(|r| frames.is_live(r.frame, self.now));
        if self.now >= deadline {
            self.withdraw(NegotiatedRestartReason::BidTimedOut, false);
        } else if !live {
            self.withdraw(NegotiatedRestartReason::RequestClosed, false);
        }
    }

    /// While bidding: give up when the requester closed the request (a cancel, or an
    /// accept of another bid, stored before anything of ours could be accepted).
    pub(super) fn step_bidding(&mut self, request: NegotiatedFactId) -> Step {
        if self.store.is_closed(request) {
            self.end_bid(request, NegotiatedRestartReason::RequestClosed, false);
            return Step::Again;
        }
        self.expire_bid();
        Step::Settled
    }

    /// Withdraws the bid we wait on and waits for the relay's verdict.
    pub(super) fn withdraw(&mut self, reason: NegotiatedRestartReason, cancelled: bool) {
        let NegotiatedPhase::Bidding {
            bid,
            request,
            requester,
            ..
        } = self.phase
        else {
            return;
        };
        let withdrawal = self.post(NegotiatedFact::Cancel(NegotiatedCancel::withdraw(
            request, bid,
        )));
        self.phase = NegotiatedPhase::Withdrawing {
            bid,
            request,
            requester,
            withdrawal,
            reason,
            cancelled,
        };
    }

    /// Our bid on `request` can no longer be accepted: never bid on that request again
    /// (unless it was our connection that failed), and look again (or stop, when the
    /// game asked to).
    pub(super) fn end_bid(
        &mut self,
        request: NegotiatedFactId,
        reason: NegotiatedRestartReason,
        cancelled: bool,
    ) {
        if reason != NegotiatedRestartReason::ConnectionLost {
            self.give_up(request);
        }
        if cancelled {
            self.stop(None);
        } else {
            self.restart(reason);
        }
    }

    /// Never bid on `request` again (remembered until its frame is dropped).
    pub(super) fn give_up(&mut self, request: NegotiatedFactId) {
        let frame = self.store.get(request).map(|r| r.frame).unwrap_or(u64::MAX);
        self.given_up.insert(request, frame);
    }
}
