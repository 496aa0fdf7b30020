//! Reacting to a fact from the relay: answers to our bid first (they need nothing but the
//! phase), then one handler per kind of fact stored.

use crate::negotiated::core::fact::{
    NegotiatedBid, NegotiatedCancel, NegotiatedFact, NegotiatedFactId, NegotiatedReject,
    NegotiatedRequest, NegotiatedSignedFact,
};
use crate::negotiated::core::protocol::NegotiatedErrorKind;
use crate::negotiated::core::store::NegotiatedInsert;
use crate::shared::player::PlayerId;

use super::{
    NegotiatedMachine, NegotiatedMatch, NegotiatedPhase, NegotiatedRestartReason, NegotiatedRole,
};

impl NegotiatedMachine {
    /// Reacts to a fact and stores it when new (decisions that depend on time and on the
    /// whole view wait for `advance`).
    pub(super) fn handle_fact(&mut self, author: PlayerId, fact: NegotiatedFact) {
        self.revive(author, &fact);
        self.answer_to_our_bid(author, &fact);
        let Some(id) = self.admit(author, &fact) else {
            return;
        };
        // a new fact from a player reported gone: it is back (or the relay is replaying
        // old facts, in which case a departure notice follows them)
        self.departed.remove(&author);
        match fact {
            NegotiatedFact::Request(request) => self.on_request(author, id, &request),
            NegotiatedFact::Bid(bid) => self.on_bid(author, id, &bid),
            _ => {}
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

    /// The requester of the request we bid on answered: an accept of our bid (matched),
    /// of another bid or a reject of ours (rejected), or a cancel of the request. The
    /// relay stored it, so it settles our bid even while our withdrawal awaits its
    /// verdict, and even when our store lost the request (a reconnect).
    fn answer_to_our_bid(&mut self, author: PlayerId, fact: &NegotiatedFact) {
        let (bid, request, requester, cancelled) = match self.phase {
            NegotiatedPhase::Bidding {
                bid,
                request,
                requester,
                ..
            } => (bid, request, requester, false),
            NegotiatedPhase::Withdrawing {
                bid,
                request,
                requester,
                cancelled,
                ..
            } => (bid, request, requester, cancelled),
            _ => return,
        };
        if author != requester || fact.request() != Some(request) {
            return;
        }
        match fact {
            NegotiatedFact::Accept(a) if a.bid == bid => {
                let accept = NegotiatedSignedFact::new(author, fact.clone()).id();
                self.matched(NegotiatedMatch {
                    category: self.category.clone().unwrap_or_default(),
                    other: author,
                    role: NegotiatedRole::Bidder,
                    request,
                    bid,
                    accept,
                });
            }
            NegotiatedFact::Accept(_) => {
                self.end_bid(request, NegotiatedRestartReason::BidRejected, cancelled);
            }
            NegotiatedFact::Reject(r) if r.bid == bid => {
                self.end_bid(request, NegotiatedRestartReason::BidRejected, cancelled);
            }
            NegotiatedFact::Cancel(c) if c.bid.is_none() => {
                self.end_bid(request, NegotiatedRestartReason::RequestClosed, cancelled);
            }
            _ => {}
        }
    }

    /// A reject of a bid of ours we already gave up on (it came after our withdrawal)
    /// shows its requester is there after all: its request is a candidate again. (A
    /// requester rejects a bid it can no longer accept, such as one past its deadline.)
    fn revive(&mut self, author: PlayerId, fact: &NegotiatedFact) {
        if let NegotiatedFact::Reject(r) = fact
            && self.given_up.contains_key(&r.request)
            && self.store.requester(r.request) == Some(author)
            && self
                .store
                .get(r.bid)
                .is_some_and(|b| b.author == self.config.me)
        {
            self.given_up.remove(&r.request);
        }
    }

    /// A request: if it is ours from before a reconnect, it is not ours to keep open.
    fn on_request(&mut self, author: PlayerId, id: NegotiatedFactId, request: &NegotiatedRequest) {
        if author == self.config.me
            && self.online
            && !self.store.is_closed(id)
            && self.current_request() != Some(id)
            && !self.pending.contains_key(&id)
            && self.config.frames.is_live(request.frame, self.now)
        {
            self.post(NegotiatedFact::Cancel(NegotiatedCancel::request(id)));
        }
    }

    /// A bid on one of our requests: accept it if the request is the open one and the
    /// bid can still be accepted; leave it waiting while an accept of ours awaits its
    /// verdict; reject it otherwise (unless answered already).
    fn on_bid(&mut self, author: PlayerId, id: NegotiatedFactId, bid: &NegotiatedBid) {
        if self.store.requester(bid.request) != Some(self.config.me) {
            return;
        }
        match self.phase {
            NegotiatedPhase::Requesting { request, frame }
                if request == bid.request && self.acceptable(id) =>
            {
                self.accept(request, frame, id, author);
            }
            NegotiatedPhase::Accepting { request, .. } if request == bid.request => {}
            _ if self.store.answer_to(id).is_none() => {
                self.post(NegotiatedFact::Reject(NegotiatedReject {
                    request: bid.request,
                    bid: id,
                }));
            }
            _ => {}
        }
    }
}
