//! Requesting: keeping our request open, accepting a bid on it, and the tie-break.
//!
//! An accept counts only once the relay's verdict says it was stored (see `verdicts`):
//! until then we are accepting, and other bids on our request wait.

use crate::negotiated::core::clock::as_us;
use crate::negotiated::core::fact::{NegotiatedAccept, NegotiatedFact, NegotiatedFactId};
use crate::shared::player::PlayerId;

use super::advance::Step;
use super::{NegotiatedMachine, NegotiatedPhase, NegotiatedRestartReason};

impl NegotiatedMachine {
    /// While our request is open: look again when it expired or was closed, accept a bid
    /// waiting on it, or yield to an older request when the tie-break says so.
    pub(super) fn step_requesting(
        &mut self,
        request: NegotiatedFactId,
        frame: u64,
        readable: &[u64],
        all_synced: bool,
    ) -> Step {
        if !self.config.frames.is_live(frame, self.now) {
            self.restart(NegotiatedRestartReason::RequestExpired);
            return Step::Again;
        }
        if self.store.is_closed(request) {
            // closed by a fact of ours we did not post in this session
            self.restart(NegotiatedRestartReason::RequestClosed);
            return Step::Again;
        }
        if let Some((bid, bidder)) = self.waiting_bid(request) {
            self.accept(request, frame, bid, bidder);
        } else if all_synced && let Some(older) = self.tie_break(request, readable) {
            self.yield_to(request, older);
        }
        Step::Settled
    }

    /// Whether a bid on our request may be accepted: not answered, not refused to us
    /// before, its deadline not passed and its bidder not gone.
    pub(super) fn acceptable(&self, bid: NegotiatedFactId) -> bool {
        let Some((stored, b)) = self.store.bid(bid) else {
            return false;
        };
        b.deadline_us > as_us(self.now)
            && !self.departed.contains(&stored.author)
            && !self.refused_bids.contains(&bid)
            && self.store.answer_to(bid).is_none()
    }

    /// The first bid on our request that may be accepted, with its bidder.
    fn waiting_bid(&self, request: NegotiatedFactId) -> Option<(NegotiatedFactId, PlayerId)> {
        self.store
            .bids_on(request)
            .into_iter()
            .find(|b| self.acceptable(b.id))
            .map(|b| (b.id, b.author))
    }

    /// Accepts a bid on our request and waits for the relay's verdict.
    pub(super) fn accept(
        &mut self,
        request: NegotiatedFactId,
        frame: u64,
        bid: NegotiatedFactId,
        bidder: PlayerId,
    ) {
        let accept = self.post(NegotiatedFact::Accept(NegotiatedAccept { request, bid }));
        self.phase = NegotiatedPhase::Accepting {
            request,
            frame,
            bid,
            bidder,
            accept,
            cancelled: false,
        };
    }
}
