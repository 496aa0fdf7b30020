//! The relay's verdicts on our posts: [`Stored`](crate::negotiated::core::protocol::NegotiatedRelayMessage::Stored)
//! or [`Refused`](crate::negotiated::core::protocol::NegotiatedRelayMessage::Refused).
//!
//! A verdict comes on the relay's ordered stream after everything the relay stored
//! before our post: an accept of our bid stored before our withdrawal reaches us before
//! the withdrawal's verdict. So an accept counts once stored, and a withdrawn bid is
//! given up once its withdrawal has a verdict. Every refusal of a post of ours ends what
//! waited on it at once.

use crate::negotiated::core::fact::{
    NegotiatedCancel, NegotiatedFact, NegotiatedFactId, NegotiatedReject, NegotiatedSignedFact,
};
use crate::negotiated::core::protocol::NegotiatedErrorKind;

use super::{
    NegotiatedMachine, NegotiatedMatch, NegotiatedPhase, NegotiatedRestartReason, NegotiatedRole,
};

impl NegotiatedMachine {
    /// The relay stored our post `id`: it joins our store; an accept makes the match, a
    /// withdrawal frees us.
    pub(super) fn on_stored(&mut self, id: NegotiatedFactId) {
        if let Some(fact) = self.pending.remove(&id) {
            // about a request we may have dropped meanwhile: then nothing to keep
            let _ = self
                .store
                .insert(NegotiatedSignedFact::new(self.config.me, fact));
        }
        match self.phase.clone() {
            NegotiatedPhase::Accepting {
                request,
                bid,
                bidder,
                accept,
                ..
            } if accept == id => {
                self.matched(NegotiatedMatch {
                    category: self.category.clone().unwrap_or_default(),
                    other: bidder,
                    role: NegotiatedRole::Requester,
                    request,
                    bid,
                    accept,
                });
                self.reject_waiting_bids(request);
            }
            NegotiatedPhase::Withdrawing {
                request,
                withdrawal,
                reason,
                cancelled,
                ..
            } if withdrawal == id => self.end_bid(request, reason, cancelled),
            _ => {}
        }
    }

    /// The relay refused our post `id`: end what waited on it.
    pub(super) fn on_refused(&mut self, id: NegotiatedFactId, kind: NegotiatedErrorKind) {
        self.pending.remove(&id);
        match self.phase.clone() {
            NegotiatedPhase::Requesting { request, .. } if request == id => {
                // nobody can see it: look again, and wait before requesting again
                self.hold_requests_until = self.now.saturating_add(self.config.bid_timeout);
                self.restart(NegotiatedRestartReason::Refused);
            }
            NegotiatedPhase::Bidding { bid, request, .. } if bid == id => {
                // never stored, so never accepted
                self.end_bid(request, NegotiatedRestartReason::Refused, false);
            }
            NegotiatedPhase::Withdrawing {
                bid,
                request,
                cancelled,
                ..
            } if bid == id => self.end_bid(request, NegotiatedRestartReason::Refused, cancelled),
            NegotiatedPhase::Withdrawing {
                request,
                withdrawal,
                reason,
                cancelled,
                ..
            } if withdrawal == id => {
                // refused only when the bid can no longer be accepted, or was accepted:
                // then the accept came just before, and we are matched already
                self.end_bid(request, reason, cancelled);
            }
            NegotiatedPhase::Accepting {
                request,
                frame,
                bid,
                accept,
                cancelled,
                ..
            } if accept == id => self.accept_refused(request, frame, bid, kind, cancelled),
            _ => {}
        }
    }

    /// Our accept of `bid` was refused: that bid is out; our request stays open unless
    /// it is gone at the relay or the game asked to stop.
    fn accept_refused(
        &mut self,
        request: NegotiatedFactId,
        frame: u64,
        bid: NegotiatedFactId,
        kind: NegotiatedErrorKind,
        cancelled: bool,
    ) {
        self.refused_bids.insert(bid);
        if cancelled {
            self.post(NegotiatedFact::Cancel(NegotiatedCancel::request(request)));
            self.stop(Some(request));
        } else if matches!(
            kind,
            NegotiatedErrorKind::UnknownRequest | NegotiatedErrorKind::RequestClosed
        ) {
            self.restart(NegotiatedRestartReason::RequestClosed);
        } else {
            // the next bid that may be accepted is taken at the next step
            self.phase = NegotiatedPhase::Requesting { request, frame };
        }
    }

    /// Matched on `request`: reject the bids still waiting on it.
    fn reject_waiting_bids(&mut self, request: NegotiatedFactId) {
        let waiting: Vec<NegotiatedFactId> = self
            .store
            .bids_on(request)
            .into_iter()
            .map(|b| b.id)
            .filter(|b| self.store.answer_to(*b).is_none())
            .collect();
        for bid in waiting {
            self.post(NegotiatedFact::Reject(NegotiatedReject { request, bid }));
        }
    }
}
