//! Searching: looking at the readable frames, posting our request, and the ends of a
//! search (matched, or back to looking).

use std::collections::BTreeMap;

use crate::negotiated::core::fact::{NegotiatedFact, NegotiatedFactId, NegotiatedRequest};
use crate::negotiated::core::store::NegotiatedStoredFact;
use crate::shared::player::PlayerId;

use super::advance::Step;
use super::{
    NegotiatedEvent, NegotiatedMachine, NegotiatedMatch, NegotiatedPhase, NegotiatedRestartReason,
};

impl NegotiatedMachine {
    /// While looking, once every readable frame is synced: bid on a random open request,
    /// or post our own to the `current` frame when there is none (unless the relay
    /// refused our last request a moment ago).
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
        if !candidates.is_empty() {
            let pick = candidates[self.rng.usize(..candidates.len())];
            self.bid(pick);
        } else if self.now >= self.hold_requests_until {
            self.request(current);
        }
        Step::Settled
    }

    /// Open requests of others we may bid on: one per author at most, its newest (an
    /// honest client has one open request; a client posting many gets one try, not one
    /// per request), not given up on, its author not gone. Sorted by author.
    pub(super) fn candidates(&self, readable: &[u64]) -> Vec<NegotiatedFactId> {
        let category = self.category.as_deref().unwrap_or_default();
        let mut newest: BTreeMap<PlayerId, &NegotiatedStoredFact> = BTreeMap::new();
        for r in self.store.open_requests(category, readable) {
            if r.author != self.config.me {
                // frame then arrival order: a later one replaces an earlier one
                newest.insert(r.author, r);
            }
        }
        newest
            .into_values()
            .filter(|r| !self.given_up.contains_key(&r.id) && !self.departed.contains(&r.author))
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
        self.refused_bids.clear();
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
