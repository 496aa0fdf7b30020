//! A relay whose store is a replica of a shared one
//! ([`NegotiatedSharedStore`](super::super::shared::NegotiatedSharedStore)): it decides no
//! verdict, it routes what the shared log says and hands its clients the store's verdicts.

use crate::shared::player::PlayerId;

use super::super::fact::NegotiatedFactId;
use super::super::protocol::NegotiatedRelayMessage;
use super::super::shared::{NegotiatedLogEvent, NegotiatedSharedVerdict};
use super::{NegotiatedOutbox, NegotiatedRelayCore};

impl NegotiatedRelayCore {
    /// Applies the next entry of the shared log to this relay's replica: a stored fact
    /// new here joins the store and goes to this relay's clients along the pivots (its
    /// author excepted); a departure goes to the watchers of its requests' frames; a
    /// connection ends a departure.
    ///
    /// A fact this relay can no longer place (its request's frame expired here first) is
    /// skipped: no client here can see it.
    pub fn apply_log(&mut self, event: &NegotiatedLogEvent) -> NegotiatedOutbox {
        match event {
            NegotiatedLogEvent::Stored(signed) => {
                if self.store.contains(signed.id()) {
                    return NegotiatedOutbox::new();
                }
                let Ok((frame, category)) = self.store.locate(&signed.fact, false) else {
                    self.stats.facts_unplaced += 1;
                    return NegotiatedOutbox::new();
                };
                if self.store.insert(signed.clone()).is_err() {
                    self.stats.facts_unplaced += 1;
                    return NegotiatedOutbox::new();
                }
                self.stats.facts_replicated += 1;
                self.forwards(signed, &category, frame)
            }
            NegotiatedLogEvent::Connected(player) => {
                self.connect(*player);
                NegotiatedOutbox::new()
            }
            NegotiatedLogEvent::Departed(player) => self.depart(*player),
        }
    }

    /// Hands `author` the shared store's verdict on its post `fact`: stored (also for a
    /// fact stored before), or refused, after the fact that won over it when there is
    /// one.
    pub fn apply_verdict(
        &mut self,
        author: PlayerId,
        fact: NegotiatedFactId,
        verdict: &NegotiatedSharedVerdict,
    ) -> NegotiatedOutbox {
        match verdict {
            NegotiatedSharedVerdict::Stored(_) => {
                self.stats.facts_stored += 1;
                vec![(author, NegotiatedRelayMessage::Stored { fact })]
            }
            NegotiatedSharedVerdict::Duplicate(_) => {
                self.stats.facts_duplicate += 1;
                vec![(author, NegotiatedRelayMessage::Stored { fact })]
            }
            NegotiatedSharedVerdict::Refused(refusal, _) => {
                self.stats.facts_refused += 1;
                self.refusal_messages(author, fact, refusal)
            }
        }
    }

    /// Forgets every replicated fact, departure and departed bid (the shared log is read
    /// again from its start); subscriptions stay.
    pub fn forget_replica(&mut self) {
        self.store.clear();
        self.departed.clear();
        self.dead_bids.clear();
    }
}
