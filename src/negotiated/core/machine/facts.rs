//! Reacting to a fact from the relay: one handler per kind of fact.

use crate::negotiated::core::fact::{
    NegotiatedAccept, NegotiatedBid, NegotiatedCancel, NegotiatedFact, NegotiatedFactId,
    NegotiatedReject, NegotiatedRequest, NegotiatedSignedFact,
};
use crate::negotiated::core::protocol::NegotiatedErrorKind;
use crate::negotiated::core::store::NegotiatedInsert;
use crate::shared::player::PlayerId;

use super::{
    NegotiatedMachine, NegotiatedMatch, NegotiatedPhase, NegotiatedRestartReason, NegotiatedRole,
};

impl NegotiatedMachine {
    /// Stores a new fact and reacts to it (decisions that depend on time and on the
    /// whole view wait for `advance`).
    pub(super) fn handle_fact(&mut self, author: PlayerId, fact: NegotiatedFact) {
        let Some(id) = self.admit(author, &fact) else {
            return;
        };
        // a new fact from a player reported gone: it is back (or the relay is replaying
        // old facts, in which case a departure notice follows them)
        self.departed.remove(&author);
        match fact {
            NegotiatedFact::Request(request) => self.on_request(author, id, &request),
            NegotiatedFact::Bid(bid) => self.on_bid(author, id, &bid),
            NegotiatedFact::Accept(accept) => self.on_accept(author, id, &accept),
            NegotiatedFact::Reject(reject) => self.on_reject(&reject),
            NegotiatedFact::Cancel(cancel) => self.on_cancel(&cancel),
        }
    }

    /// Stores the fact when it is new, about a request we know and posted by someone
    /// entitled to it (reporting it when not); returns its id then.
    fn admit(&mut self, author: PlayerId, fact: &NegotiatedFact) -> Option<NegotiatedFactId> {
        if let Some(request) = fact.request()
            && !self.store.contains(request)
        {
            // about a request we never saw or already dropped: nothing to do with us
            return None;
        }
        if !self.store.is_entitled(author, fact) {
            self.error(
                NegotiatedErrorKind::NotEntitled,
                format!(
                    "ignored a {:?} by player {author}, who is not entitled to it",
                    fact.kind()
                ),
            );
            return None;
        }
        match self
            .store
            .insert(NegotiatedSignedFact::new(author, fact.clone()))
        {
            Ok(NegotiatedInsert::Added(id)) => Some(id),
            Ok(NegotiatedInsert::Duplicate(_)) | Err(_) => None,
        }
    }

    /// A request: if it is ours from before a reconnect, it is not ours to keep open.
    fn on_request(&mut self, author: PlayerId, id: NegotiatedFactId, request: &NegotiatedRequest) {
        if author == self.config.me
            && self.online
            && !self.store.is_closed(id)
            && self.current_request() != Some(id)
            && self.config.frames.is_live(request.frame, self.now)
        {
            self.post(NegotiatedFact::Cancel(NegotiatedCancel { request: id }));
        }
    }

    /// A bid on one of our requests: accept it if the request is the open one, reject it
    /// otherwise (unless answered already).
    fn on_bid(&mut self, author: PlayerId, id: NegotiatedFactId, bid: &NegotiatedBid) {
        if self.store.requester(bid.request) != Some(self.config.me) {
            return;
        }
        if self.current_request() == Some(bid.request) {
            let accept = self.post(NegotiatedFact::Accept(NegotiatedAccept {
                request: bid.request,
                bid: id,
            }));
            self.matched(NegotiatedMatch {
                category: self.category.clone().unwrap_or_default(),
                other: author,
                role: NegotiatedRole::Requester,
                request: bid.request,
                bid: id,
                accept,
            });
        } else if self.store.answer_to(id).is_none() {
            self.post(NegotiatedFact::Reject(NegotiatedReject {
                request: bid.request,
                bid: id,
            }));
        }
    }

    /// An accept: of one of our bids (matched, or a late accept), or of another bid on
    /// the request we bid on (as good as a reject).
    fn on_accept(&mut self, author: PlayerId, id: NegotiatedFactId, accept: &NegotiatedAccept) {
        if self.my_bids.contains_key(&accept.bid) {
            self.on_accept_of_our_bid(author, id, accept);
        } else {
            // the requester took another bid: ours is as good as rejected
            self.abandon_bid_on(accept.request, NegotiatedRestartReason::BidRejected);
        }
    }

    /// The requester accepted one of our bids: the one we wait on, or an earlier one we
    /// gave up on (taken when we are still free, reported otherwise).
    fn on_accept_of_our_bid(
        &mut self,
        author: PlayerId,
        id: NegotiatedFactId,
        accept: &NegotiatedAccept,
    ) {
        let found = NegotiatedMatch {
            category: self
                .store
                .request(accept.request)
                .map(|(_, r)| r.category.clone())
                .unwrap_or_default(),
            other: author,
            role: NegotiatedRole::Bidder,
            request: accept.request,
            bid: accept.bid,
            accept: id,
        };
        match self.phase.clone() {
            NegotiatedPhase::Bidding { bid, .. } if bid == accept.bid => self.matched(found),
            NegotiatedPhase::Looking => self.matched(found),
            NegotiatedPhase::Requesting { request, .. } => {
                // a late accept while our own request has no bid: take it
                self.post(NegotiatedFact::Cancel(NegotiatedCancel { request }));
                self.matched(found);
            }
            _ => self.error(
                NegotiatedErrorKind::LateAccept,
                format!(
                    "player {author} accepted bid {} after we gave up on it",
                    accept.bid
                ),
            ),
        }
    }

    /// A reject of the bid we wait on: look again.
    fn on_reject(&mut self, reject: &NegotiatedReject) {
        if let NegotiatedPhase::Bidding { bid, request, .. } = self.phase
            && bid == reject.bid
        {
            self.abandon_bid(request, NegotiatedRestartReason::BidRejected);
        }
    }

    /// A cancel of the request we bid on: look again.
    fn on_cancel(&mut self, cancel: &NegotiatedCancel) {
        self.abandon_bid_on(cancel.request, NegotiatedRestartReason::RequestClosed);
    }
}
