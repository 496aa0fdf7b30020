//! Bidding: placing a bid, waiting for the answer and giving up on a request.

use std::time::Duration;

use crate::negotiated::core::fact::{NegotiatedBid, NegotiatedFact, NegotiatedFactId};

use super::advance::Step;
use super::{NegotiatedEvent, NegotiatedMachine, NegotiatedPhase, NegotiatedRestartReason};

impl NegotiatedMachine {
    /// Bids on a request we know and waits for its requester's answer.
    pub(super) fn bid(&mut self, request: NegotiatedFactId) {
        let (frame, requester) = match self.store.get(request) {
            Some(r) => (r.frame, r.author),
            None => return,
        };
        let created_us = self.stamp();
        let bid = self.post(NegotiatedFact::Bid(NegotiatedBid {
            request,
            created_us,
        }));
        self.my_bids.insert(bid, (request, frame));
        self.phase = NegotiatedPhase::Bidding {
            bid,
            request,
            requester,
            since: self.now,
        };
        self.event(NegotiatedEvent::BidPlaced {
            bid,
            request,
            requester,
        });
    }

    /// While bidding: give up when the request closed, expired or left us unanswered
    /// for the bid timeout.
    pub(super) fn step_bidding(&mut self, request: NegotiatedFactId, since: Duration) -> Step {
        let frames = self.config.frames;
        let live = self
            .store
            .get(request)
            .is_some_and(|r| frames.is_live(r.frame, self.now));
        if !live || self.store.is_closed(request) {
            self.abandon_bid(request, NegotiatedRestartReason::RequestClosed);
            return Step::Again;
        }
        if self.now.saturating_sub(since) >= self.config.bid_timeout {
            self.abandon_bid(request, NegotiatedRestartReason::BidTimedOut);
            return Step::Again;
        }
        Step::Settled
    }

    /// When we are bidding on `request`: give up on it and look again.
    pub(super) fn abandon_bid_on(
        &mut self,
        request: NegotiatedFactId,
        reason: NegotiatedRestartReason,
    ) {
        if let NegotiatedPhase::Bidding { request: ours, .. } = self.phase
            && ours == request
        {
            self.abandon_bid(request, reason);
        }
    }

    /// Never bid on `request` again, and look again.
    pub(super) fn abandon_bid(
        &mut self,
        request: NegotiatedFactId,
        reason: NegotiatedRestartReason,
    ) {
        self.give_up(request);
        self.restart(reason);
    }

    /// Never bid on `request` again (remembered until its frame is dropped).
    fn give_up(&mut self, request: NegotiatedFactId) {
        let frame = self.store.get(request).map(|r| r.frame).unwrap_or(u64::MAX);
        self.given_up.insert(request, frame);
    }
}
