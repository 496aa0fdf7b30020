//! Facts by frame: what the relay keeps and what each client knows.
//!
//! The store is a set: inserting a fact it holds changes nothing. Facts about a request
//! (bids, accepts, rejects, cancels) live in the request's frame, so dropping a frame drops
//! a whole conversation. Queries that close a request or answer a bid only count facts
//! whose author is entitled to them ([`NegotiatedFactStore::is_entitled`]): a forged accept,
//! cancel or withdrawal sits in the store but closes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::shared::player::PlayerId;

use super::fact::{
    NegotiatedBid, NegotiatedFact, NegotiatedFactId, NegotiatedFactKind, NegotiatedRequest,
    NegotiatedSignedFact,
};

/// A fact in the store, with its id and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedStoredFact {
    /// Content id.
    pub id: NegotiatedFactId,
    /// The author the relay stamped.
    pub author: PlayerId,
    /// The fact.
    pub fact: NegotiatedFact,
    /// The frame it lives in (its request's frame).
    pub frame: u64,
    /// Its request's category.
    pub category: String,
}

impl NegotiatedStoredFact {
    /// The fact as a request, if it is one.
    pub fn as_request(&self) -> Option<&NegotiatedRequest> {
        match &self.fact {
            NegotiatedFact::Request(r) => Some(r),
            _ => None,
        }
    }

    /// The fact as a bid, if it is one.
    pub fn as_bid(&self) -> Option<&NegotiatedBid> {
        match &self.fact {
            NegotiatedFact::Bid(b) => Some(b),
            _ => None,
        }
    }

    /// The fact with its author.
    pub fn signed(&self) -> NegotiatedSignedFact {
        NegotiatedSignedFact::new(self.author, self.fact.clone())
    }
}

/// Result of a successful insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegotiatedInsert {
    /// The fact is new.
    Added(NegotiatedFactId),
    /// The store already held it: nothing changed.
    Duplicate(NegotiatedFactId),
}

impl NegotiatedInsert {
    /// The fact's id.
    pub fn id(&self) -> NegotiatedFactId {
        match self {
            NegotiatedInsert::Added(id) | NegotiatedInsert::Duplicate(id) => *id,
        }
    }

    /// Whether the fact was new.
    pub fn is_added(&self) -> bool {
        matches!(self, NegotiatedInsert::Added(_))
    }
}

/// Why a fact cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiatedStoreError {
    /// The request it is about is not in the store (never seen, or its frame was dropped).
    #[error("request {0} is unknown or expired")]
    UnknownRequest(NegotiatedFactId),
    /// The id it names as its request is not a request.
    #[error("fact {0} is not a request")]
    NotARequest(NegotiatedFactId),
    /// The bid it answers is not in the store (only checked by [`NegotiatedFactStore::insert_strict`]).
    #[error("bid {0} is unknown or expired")]
    UnknownBid(NegotiatedFactId),
    /// The bid it answers is not a bid on its request.
    #[error("fact {0} is not a bid on that request")]
    BidOfAnotherRequest(NegotiatedFactId),
}

/// How a bid was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegotiatedAnswer {
    /// Accepted by the requester (this accept's id).
    Accepted(NegotiatedFactId),
    /// Rejected by the requester (this reject's id).
    Rejected(NegotiatedFactId),
    /// Withdrawn by the bidder (this withdrawal's id).
    Withdrawn(NegotiatedFactId),
}

/// Facts by frame, idempotent on insert.
#[derive(Debug, Clone, Default)]
pub struct NegotiatedFactStore {
    facts: HashMap<NegotiatedFactId, NegotiatedStoredFact>,
    frames: BTreeMap<u64, Vec<NegotiatedFactId>>,
    about: HashMap<NegotiatedFactId, Vec<NegotiatedFactId>>,
    /// Facts each author posted that count toward its share of a frame (see
    /// [`count_by`](NegotiatedFactStore::count_by)).
    per_author: HashMap<(u64, PlayerId), usize>,
    /// Every fact of each author.
    authored: HashMap<PlayerId, BTreeSet<NegotiatedFactId>>,
}

impl NegotiatedFactStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a fact. A fact about a request needs the request in the store; an accept
    /// or reject whose bid is known must name a bid on the same request.
    pub fn insert(
        &mut self,
        fact: NegotiatedSignedFact,
    ) -> Result<NegotiatedInsert, NegotiatedStoreError> {
        self.insert_checked(fact, false)
    }

    /// Like [`insert`](Self::insert), and an accept or reject must also name a bid the
    /// store holds (the relay's check; a client watching a request never sees its bids).
    pub fn insert_strict(
        &mut self,
        fact: NegotiatedSignedFact,
    ) -> Result<NegotiatedInsert, NegotiatedStoreError> {
        self.insert_checked(fact, true)
    }

    /// Where a fact would live and whether it can be stored, without storing it.
    pub fn locate(
        &self,
        fact: &NegotiatedFact,
        require_bid: bool,
    ) -> Result<(u64, String), NegotiatedStoreError> {
        let Some(request_id) = fact.request() else {
            let NegotiatedFact::Request(r) = fact else {
                unreachable!("only requests have no request")
            };
            return Ok((r.frame, r.category.clone()));
        };
        let request = self
            .facts
            .get(&request_id)
            .ok_or(NegotiatedStoreError::UnknownRequest(request_id))?;
        if request.as_request().is_none() {
            return Err(NegotiatedStoreError::NotARequest(request_id));
        }
        if let Some(bid_id) = fact.bid() {
            match self.facts.get(&bid_id) {
                Some(bid) => match &bid.fact {
                    NegotiatedFact::Bid(b) if b.request == request_id => {}
                    _ => return Err(NegotiatedStoreError::BidOfAnotherRequest(bid_id)),
                },
                None if require_bid => return Err(NegotiatedStoreError::UnknownBid(bid_id)),
                None => {}
            }
        }
        Ok((request.frame, request.category.clone()))
    }

    fn insert_checked(
        &mut self,
        fact: NegotiatedSignedFact,
        require_bid: bool,
    ) -> Result<NegotiatedInsert, NegotiatedStoreError> {
        let id = fact.id();
        if self.facts.contains_key(&id) {
            return Ok(NegotiatedInsert::Duplicate(id));
        }
        let (frame, category) = self.locate(&fact.fact, require_bid)?;
        if self.counts_toward_share(fact.author, &fact.fact) {
            *self.per_author.entry((frame, fact.author)).or_default() += 1;
        }
        if let Some(request) = fact.fact.request() {
            self.about.entry(request).or_default().push(id);
        }
        self.frames.entry(frame).or_default().push(id);
        self.authored.entry(fact.author).or_default().insert(id);
        self.facts.insert(
            id,
            NegotiatedStoredFact {
                id,
                author: fact.author,
                fact: fact.fact,
                frame,
                category,
            },
        );
        Ok(NegotiatedInsert::Added(id))
    }

    /// Whether a fact counts toward its author's share of a frame: everything but the
    /// answers an author owes to bids (the requester's rejects, the bidder's withdrawal),
    /// of which there is at most one per bid, so that bids from others can never use up
    /// the share a requester needs for its accept.
    pub fn counts_toward_share(&self, author: PlayerId, fact: &NegotiatedFact) -> bool {
        let answer = matches!(
            fact.kind(),
            NegotiatedFactKind::Reject | NegotiatedFactKind::Withdraw
        );
        !(answer && self.is_entitled(author, fact))
    }

    /// A fact by id.
    pub fn get(&self, id: NegotiatedFactId) -> Option<&NegotiatedStoredFact> {
        self.facts.get(&id)
    }

    /// A bid by id, with its stored entry.
    pub fn bid(&self, id: NegotiatedFactId) -> Option<(&NegotiatedStoredFact, &NegotiatedBid)> {
        let stored = self.facts.get(&id)?;
        stored.as_bid().map(|b| (stored, b))
    }

    /// The facts `author` posted that the store holds (in id order).
    pub fn by_author(&self, author: PlayerId) -> impl Iterator<Item = &NegotiatedStoredFact> {
        self.authored
            .get(&author)
            .into_iter()
            .flatten()
            .filter_map(|id| self.facts.get(id))
    }

    /// Whether the store holds this fact.
    pub fn contains(&self, id: NegotiatedFactId) -> bool {
        self.facts.contains_key(&id)
    }

    /// A request by id, with its stored entry.
    pub fn request(
        &self,
        id: NegotiatedFactId,
    ) -> Option<(&NegotiatedStoredFact, &NegotiatedRequest)> {
        let stored = self.facts.get(&id)?;
        stored.as_request().map(|r| (stored, r))
    }

    /// The author of a request.
    pub fn requester(&self, request: NegotiatedFactId) -> Option<PlayerId> {
        self.request(request).map(|(s, _)| s.author)
    }

    /// Whether `author` may post `fact`, given what the store knows: anyone may post a
    /// request; anyone but the requester may bid; only the requester may accept,
    /// reject or cancel; only the bidder may withdraw its bid. Facts about unknown
    /// requests (and withdrawals of unknown bids) are not entitled.
    pub fn is_entitled(&self, author: PlayerId, fact: &NegotiatedFact) -> bool {
        let Some(request) = fact.request() else {
            return true;
        };
        let Some(requester) = self.requester(request) else {
            return false;
        };
        match fact.kind() {
            NegotiatedFactKind::Request => true,
            NegotiatedFactKind::Bid => author != requester,
            NegotiatedFactKind::Accept
            | NegotiatedFactKind::Reject
            | NegotiatedFactKind::Cancel => author == requester,
            NegotiatedFactKind::Withdraw => fact
                .bid()
                .and_then(|bid| self.bid(bid))
                .is_some_and(|(stored, bid)| stored.author == author && bid.request == request),
        }
    }

    /// The facts about a request (bids, answers, cancels), entitled or not, in the order
    /// they were stored.
    pub fn about(&self, request: NegotiatedFactId) -> impl Iterator<Item = &NegotiatedStoredFact> {
        self.stored(self.about.get(&request))
    }

    /// The stored facts behind a list of ids (none for no list).
    fn stored<'a>(
        &'a self,
        ids: Option<&'a Vec<NegotiatedFactId>>,
    ) -> impl Iterator<Item = &'a NegotiatedStoredFact> {
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.facts.get(id))
    }

    fn entitled_about(
        &self,
        request: NegotiatedFactId,
    ) -> impl Iterator<Item = &NegotiatedStoredFact> {
        self.about(request)
            .filter(|f| self.is_entitled(f.author, &f.fact))
    }

    /// The requester's accept of this request, if any (the first stored).
    pub fn accept_of(&self, request: NegotiatedFactId) -> Option<&NegotiatedStoredFact> {
        self.entitled_about(request)
            .find(|f| f.fact.kind() == NegotiatedFactKind::Accept)
    }

    /// The bid the requester accepted, if any.
    pub fn accepted_bid(&self, request: NegotiatedFactId) -> Option<NegotiatedFactId> {
        self.accept_of(request).and_then(|f| f.fact.bid())
    }

    /// Whether the requester cancelled this request.
    pub fn is_cancelled(&self, request: NegotiatedFactId) -> bool {
        self.entitled_about(request)
            .any(|f| f.fact.kind() == NegotiatedFactKind::Cancel)
    }

    /// Whether the request is accepted or cancelled (by its requester).
    pub fn is_closed(&self, request: NegotiatedFactId) -> bool {
        self.entitled_about(request).any(|f| {
            matches!(
                f.fact.kind(),
                NegotiatedFactKind::Accept | NegotiatedFactKind::Cancel
            )
        })
    }

    /// The bids on a request by other players than the requester, in the order stored.
    pub fn bids_on(&self, request: NegotiatedFactId) -> Vec<&NegotiatedStoredFact> {
        self.entitled_about(request)
            .filter(|f| f.fact.kind() == NegotiatedFactKind::Bid)
            .collect()
    }

    /// The first answer to a bid the store holds: the requester's accept or reject, or
    /// the bidder's withdrawal.
    pub fn answer_to(&self, bid: NegotiatedFactId) -> Option<NegotiatedAnswer> {
        let request = self.facts.get(&bid)?.fact.request()?;
        self.entitled_about(request)
            .filter(|f| f.fact.bid() == Some(bid))
            .find_map(|f| match f.fact.kind() {
                NegotiatedFactKind::Accept => Some(NegotiatedAnswer::Accepted(f.id)),
                NegotiatedFactKind::Reject => Some(NegotiatedAnswer::Rejected(f.id)),
                NegotiatedFactKind::Withdraw => Some(NegotiatedAnswer::Withdrawn(f.id)),
                _ => None,
            })
    }

    /// The requester's accept of this bid, if the store holds one.
    pub fn accept_of_bid(&self, bid: NegotiatedFactId) -> Option<&NegotiatedStoredFact> {
        let request = self.facts.get(&bid)?.fact.request()?;
        self.entitled_about(request)
            .find(|f| f.fact.kind() == NegotiatedFactKind::Accept && f.fact.bid() == Some(bid))
    }

    /// Requests of a category in these frames that are neither accepted nor cancelled,
    /// in frame then arrival order.
    pub fn open_requests(&self, category: &str, frames: &[u64]) -> Vec<&NegotiatedStoredFact> {
        let frames: BTreeSet<u64> = frames.iter().copied().collect();
        frames
            .into_iter()
            .flat_map(|frame| self.facts_in(frame))
            .filter(|f| f.category == category && f.as_request().is_some())
            .filter(|f| !self.is_closed(f.id))
            .collect()
    }

    /// The facts of a frame, in the order they were stored.
    pub fn facts_in(&self, frame: u64) -> impl Iterator<Item = &NegotiatedStoredFact> {
        self.stored(self.frames.get(&frame))
    }

    /// How many facts `author` stored in `frame`, not counting its rejects of bids on its
    /// requests and withdrawals of its own bids (at most one per bid: they answer others).
    pub fn count_by(&self, author: PlayerId, frame: u64) -> usize {
        self.per_author.get(&(frame, author)).copied().unwrap_or(0)
    }

    /// Drops every frame before `frame`; returns how many facts went.
    pub fn drop_before(&mut self, frame: u64) -> usize {
        if self
            .frames
            .first_key_value()
            .is_none_or(|(f, _)| *f >= frame)
        {
            return 0;
        }
        let kept = self.frames.split_off(&frame);
        let dropped = std::mem::replace(&mut self.frames, kept);
        let mut count = 0;
        for id in dropped.into_values().flatten() {
            if let Some(fact) = self.facts.remove(&id) {
                count += 1;
                if let Some(ids) = self.authored.get_mut(&fact.author) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.authored.remove(&fact.author);
                    }
                }
            }
            self.about.remove(&id);
        }
        self.per_author.retain(|(f, _), _| *f >= frame);
        count
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Number of facts held.
    pub fn len(&self) -> usize {
        self.facts.len()
    }

    /// Number of authors with at least one fact held.
    pub fn authors(&self) -> usize {
        self.authored.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// The frames held, oldest first, with their fact counts.
    pub fn frames(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.frames.iter().map(|(f, ids)| (*f, ids.len()))
    }

    /// Every fact id held, sorted (for comparing stores).
    pub fn ids(&self) -> BTreeSet<NegotiatedFactId> {
        self.facts.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests;
