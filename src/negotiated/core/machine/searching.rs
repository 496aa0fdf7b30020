//! Searching: looking at the readable frames, posting and keeping our request, and the
//! ends of a search (matched, or back to looking).

use crate::negotiated::core::fact::{NegotiatedFact, NegotiatedFactId, NegotiatedRequest};

use super::advance::Step;
use super::{
    NegotiatedEvent, NegotiatedMachine, NegotiatedMatch, NegotiatedPhase, NegotiatedRestartReason,
};

impl NegotiatedMachine {
    /// While looking, once every readable frame is synced: bid on a random open request,
    /// or post our own to the `current` frame when there is none.
    pub(super) fn step_looking(
        &mut self,
        current: u64,
        readable: &[u64],
        all_synced: bool,
    ) -> Step {
        if !all_synced {
            return Step::Settled;
        }
        let candidates = self.candidates(readable);
        if candidates.is_empty() {
            self.request(current);
        } else {
            let pick = candidates[self.rng.usize(..candidates.len())];
            self.bid(pick);
        }
        Step::Settled
    }

    /// While our request is open: look again when it expired or was closed, and yield
    /// to an older request when the tie-break says so.
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
        if all_synced && let Some(older) = self.tie_break(request, readable) {
            self.yield_to(request, older);
        }
        Step::Settled
    }

    /// Open requests of others we may bid on, in a stable order.
    pub(super) fn candidates(&self, readable: &[u64]) -> Vec<NegotiatedFactId> {
        let category = self.category.as_deref().unwrap_or_default();
        self.store
            .open_requests(category, readable)
            .into_iter()
            .filter(|r| {
                r.author != self.config.me
                    && !self.given_up.contains_key(&r.id)
                    && !self.departed.contains(&r.author)
            })
            .map(|r| r.id)
            .collect()
    }

    /// Posts our request to `frame` and waits for bids.
    fn request(&mut self, frame: u64) {
        let category = self.category.clone().unwrap_or_default();
        let created_us = self.stamp();
        let request = self.post(NegotiatedFact::Request(NegotiatedRequest {
            category: category.clone(),
            frame,
            created_us,
        }));
        self.phase = NegotiatedPhase::Requesting { request, frame };
        self.event(NegotiatedEvent::RequestPosted {
            request,
            category,
            frame,
        });
    }

    /// Back to looking.
    pub(super) fn restart(&mut self, reason: NegotiatedRestartReason) {
        self.phase = NegotiatedPhase::Looking;
        self.event(NegotiatedEvent::Restarted(reason));
    }

    /// Paired: the search is over.
    pub(super) fn matched(&mut self, found: NegotiatedMatch) {
        self.phase = NegotiatedPhase::Matched(found.clone());
        self.stop_watching();
        self.event(NegotiatedEvent::Matched(found));
    }
}
