//! The tie-break between open requests that saw each other.

use crate::negotiated::core::fact::{NegotiatedCancel, NegotiatedFact, NegotiatedFactId};

use super::{NegotiatedMachine, NegotiatedRestartReason};

impl NegotiatedMachine {
    /// The tie-break between open requests that saw each other: sort them (ours
    /// included) by (creation time, id), the same order for every client, and pair them
    /// off from the oldest: (0, 1), (2, 3)... The younger of each pair cancels its request
    /// and bids on the older. Returns the request to bid on when ours is the younger.
    ///
    /// Every client that sees the same requests pairs the same way, so a crowd that
    /// posted at once pairs up in one round trip. When views differ the worst case is a
    /// rejected bid and a restart; the two oldest open requests always pair, so the
    /// search keeps making progress.
    pub(super) fn tie_break(
        &self,
        mine: NegotiatedFactId,
        readable: &[u64],
    ) -> Option<NegotiatedFactId> {
        let mut open: Vec<(u64, NegotiatedFactId)> = self
            .candidates(readable)
            .into_iter()
            .chain(std::iter::once(mine))
            .filter_map(|id| self.store.request(id).map(|(_, r)| (r.created_us, id)))
            .collect();
        open.sort_unstable();
        let position = open.iter().position(|(_, id)| *id == mine)?;
        (position % 2 == 1).then(|| open[position - 1].1)
    }

    /// The younger of a pair: cancel our request `mine` and bid on the `older` one.
    pub(super) fn yield_to(&mut self, mine: NegotiatedFactId, older: NegotiatedFactId) {
        self.post(NegotiatedFact::Cancel(NegotiatedCancel::request(mine)));
        self.restart(NegotiatedRestartReason::TieBreak);
        self.bid(older);
    }
}
