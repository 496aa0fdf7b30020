//! The client's negotiation as a pure state machine: fed facts, relay sync markers and
//! relay time; answers with messages to send and events to report. No Bevy, no clock of
//! its own, no I/O: [`NegotiatedClientPlugin`](crate::negotiated::client::NegotiatedClientPlugin)
//! drives it, and tests drive it directly.
//!
//! The algorithm (the seed's, plus a tie-break):
//!
//! 1. **Looking**: once the relay has sent everything it holds for the current and the
//!    prior frame, pick an open request (not accepted, not cancelled, not expired, not
//!    ours, not one we gave up on) at random and bid on it; if there is none, post a
//!    request to the current frame.
//! 2. **Bidding**: wait for the requester's answer. Accepted: matched. Rejected (or
//!    another bid accepted), the request cancelled or expired, or no answer within the
//!    bid timeout: back to 1.
//! 3. **Requesting**: accept the first bid, reject every later one. When the request
//!    expires (its frame is older than the prior frame) without a bid: back to 1.
//!    **Tie-break**: open requests that see each other were posted before either was
//!    seen. Sorted by creation time then content id (the same order for every client),
//!    they pair off from the oldest — (0, 1), (2, 3)... — and the newer of each pair
//!    cancels its request and bids on the older. Two clients that posted at the same
//!    moment pair at once instead of waiting for expiry, and a crowd that posted
//!    together pairs in one round trip.
//! 4. **Matched**: done; bids still arriving on our request are rejected.
//!
//! Abandoning a search posts a cancel of our open request. When the relay reports that
//! a player's connection closed, its requests are no longer bid on (and a bid waiting on
//! one gives up at once instead of at the bid timeout).
//!
//! A bid cannot be withdrawn: if a requester answers after our bid timed out, we take the
//! late accept when we are still free (looking, or requesting without a bid), and report
//! [`NegotiatedErrorKind::LateAccept`] otherwise (the requester then holds a match we do
//! not honour). Keep the bid timeout well above the round trip to the relay.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::shared::player::{PlayerId, validate_category};

use super::clock::as_us;
use super::fact::{
    NegotiatedAccept, NegotiatedBid, NegotiatedCancel, NegotiatedFact, NegotiatedFactId,
    NegotiatedReject, NegotiatedRequest, NegotiatedSignedFact,
};
use super::frame::NegotiatedFrames;
use super::protocol::{NegotiatedClientMessage, NegotiatedErrorKind};
use super::store::{NegotiatedFactStore, NegotiatedInsert};

/// What the machine needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMachineConfig {
    /// Our id (the author the relay stamps on our facts).
    pub me: PlayerId,
    /// The frame grid.
    pub frames: NegotiatedFrames,
    /// How long to wait for an answer to a bid.
    pub bid_timeout: Duration,
    /// Seed of the random choice among open requests.
    pub seed: u64,
}

/// Which side of the conversation we were on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiatedRole {
    /// We posted the request and accepted the other player's bid.
    Requester,
    /// We bid and the other player accepted.
    Bidder,
}

/// A match: the request, the accepted bid and the accept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NegotiatedMatch {
    /// The category.
    pub category: String,
    /// The other player.
    pub other: PlayerId,
    /// Our side.
    pub role: NegotiatedRole,
    /// The request.
    pub request: NegotiatedFactId,
    /// The accepted bid.
    pub bid: NegotiatedFactId,
    /// The accept.
    pub accept: NegotiatedFactId,
}

impl NegotiatedMatch {
    /// The requester, given our own id.
    pub fn requester(&self, me: PlayerId) -> PlayerId {
        match self.role {
            NegotiatedRole::Requester => me,
            NegotiatedRole::Bidder => self.other,
        }
    }

    /// The bidder, given our own id.
    pub fn bidder(&self, me: PlayerId) -> PlayerId {
        match self.role {
            NegotiatedRole::Requester => self.other,
            NegotiatedRole::Bidder => me,
        }
    }
}

/// Where the machine stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedPhase {
    /// Not searching.
    Idle,
    /// Searching: waiting for the current frames, then bidding or requesting.
    Looking,
    /// Our request is open.
    Requesting {
        /// The request.
        request: NegotiatedFactId,
        /// Its frame.
        frame: u64,
    },
    /// Our bid waits for an answer.
    Bidding {
        /// The bid.
        bid: NegotiatedFactId,
        /// The request bid on.
        request: NegotiatedFactId,
        /// Its author.
        requester: PlayerId,
        /// When we bid (relay time).
        since: Duration,
    },
    /// Paired.
    Matched(NegotiatedMatch),
}

/// Why the machine went back to looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiatedRestartReason {
    /// Our request expired without a bid.
    RequestExpired,
    /// The requester rejected our bid, or accepted another.
    BidRejected,
    /// The requester did not answer our bid in time.
    BidTimedOut,
    /// The request we bid on was cancelled or expired, or its requester left (or our own
    /// request was closed by a fact we did not post).
    RequestClosed,
    /// We saw an older open request than ours: we cancelled ours to bid on it.
    TieBreak,
    /// The connection to the relay was lost (the relay may have lost our facts).
    ConnectionLost,
}

/// What happened, for the game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedEvent {
    /// We posted a request.
    RequestPosted {
        /// The request.
        request: NegotiatedFactId,
        /// The category.
        category: String,
        /// Its frame.
        frame: u64,
    },
    /// We bid on a request.
    BidPlaced {
        /// The bid.
        bid: NegotiatedFactId,
        /// The request.
        request: NegotiatedFactId,
        /// Its author.
        requester: PlayerId,
    },
    /// Paired.
    Matched(NegotiatedMatch),
    /// Back to looking.
    Restarted(NegotiatedRestartReason),
    /// The search was abandoned (with the request we cancelled, if one was open).
    Cancelled {
        /// The category.
        category: String,
        /// Our cancelled request.
        request: Option<NegotiatedFactId>,
    },
    /// Something went wrong.
    Error {
        /// What.
        kind: NegotiatedErrorKind,
        /// For humans.
        message: String,
    },
}

/// One thing the machine wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedOutput {
    /// Send this to the relay.
    Send(NegotiatedClientMessage),
    /// Report this.
    Event(NegotiatedEvent),
}

/// The client's negotiation; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct NegotiatedMachine {
    config: NegotiatedMachineConfig,
    rng: fastrand::Rng,
    store: NegotiatedFactStore,
    phase: NegotiatedPhase,
    category: Option<String>,
    online: bool,
    subscribed: Option<(String, Vec<u64>)>,
    synced: BTreeSet<u64>,
    given_up: BTreeMap<NegotiatedFactId, u64>,
    departed: BTreeSet<PlayerId>,
    my_bids: BTreeMap<NegotiatedFactId, (NegotiatedFactId, u64)>,
    now: Duration,
    last_stamp_us: u64,
    out: Vec<NegotiatedOutput>,
}

impl NegotiatedMachine {
    /// An idle, offline machine.
    pub fn new(config: NegotiatedMachineConfig) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(config.seed),
            config,
            store: NegotiatedFactStore::new(),
            phase: NegotiatedPhase::Idle,
            category: None,
            online: false,
            subscribed: None,
            synced: BTreeSet::new(),
            given_up: BTreeMap::new(),
            departed: BTreeSet::new(),
            my_bids: BTreeMap::new(),
            now: Duration::ZERO,
            last_stamp_us: 0,
            out: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NegotiatedMachineConfig {
        &self.config
    }

    /// Where the machine stands.
    pub fn phase(&self) -> &NegotiatedPhase {
        &self.phase
    }

    /// Whether a search is under way (looking, requesting or bidding).
    pub fn is_searching(&self) -> bool {
        matches!(
            self.phase,
            NegotiatedPhase::Looking
                | NegotiatedPhase::Requesting { .. }
                | NegotiatedPhase::Bidding { .. }
        )
    }

    /// The category of the current or last search.
    pub fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }

    /// What the machine knows.
    pub fn store(&self) -> &NegotiatedFactStore {
        &self.store
    }

    /// Whether the relay connection is ready.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// The latest relay time the machine was given.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Frames the relay confirmed it sent everything for.
    pub fn synced_frames(&self) -> &BTreeSet<u64> {
        &self.synced
    }

    /// The connection is up and the clock estimated: (re)subscribe and carry on.
    pub fn online(&mut self, now: Duration) -> Vec<NegotiatedOutput> {
        self.online = true;
        self.advance(now);
        self.take()
    }

    /// The connection is gone: forget what the relay told us (it may have lost it too)
    /// and start the search over once back online.
    pub fn offline(&mut self) -> Vec<NegotiatedOutput> {
        self.online = false;
        self.store.clear();
        self.synced.clear();
        self.departed.clear();
        self.subscribed = None;
        if matches!(
            self.phase,
            NegotiatedPhase::Requesting { .. } | NegotiatedPhase::Bidding { .. }
        ) {
            self.restart(NegotiatedRestartReason::ConnectionLost);
        }
        self.take()
    }

    /// Starts searching in a category.
    pub fn search(&mut self, category: &str, now: Duration) -> Vec<NegotiatedOutput> {
        if self.is_searching() {
            self.error(
                NegotiatedErrorKind::Unexpected,
                format!(
                    "already searching in {}",
                    self.category.as_deref().unwrap_or("a category")
                ),
            );
        } else if let Err(why) = validate_category(category) {
            self.error(NegotiatedErrorKind::InvalidCategory, why);
        } else {
            self.category = Some(category.to_owned());
            self.phase = NegotiatedPhase::Looking;
            self.advance(now);
        }
        self.take()
    }

    /// Abandons the search: cancels our open request, if any.
    pub fn cancel(&mut self, now: Duration) -> Vec<NegotiatedOutput> {
        self.now = self.now.max(now);
        if !self.is_searching() {
            self.error(NegotiatedErrorKind::Unexpected, "not searching".to_owned());
            return self.take();
        }
        let request = match self.phase {
            NegotiatedPhase::Requesting { request, .. } => {
                if self.online {
                    self.post(NegotiatedFact::Cancel(NegotiatedCancel { request }));
                }
                Some(request)
            }
            _ => None,
        };
        self.phase = NegotiatedPhase::Idle;
        self.stop_watching();
        self.event(NegotiatedEvent::Cancelled {
            category: self.category.clone().unwrap_or_default(),
            request,
        });
        self.take()
    }

    /// The relay sent everything it holds for a watched frame.
    pub fn synced(&mut self, category: &str, frame: u64, now: Duration) -> Vec<NegotiatedOutput> {
        self.ingest_synced(category, frame);
        self.advance(now);
        self.take()
    }

    /// Like [`synced`](Self::synced) without deciding anything yet: call
    /// [`tick`](Self::tick) once a batch of relay messages is in, so that decisions see
    /// all of it.
    pub fn ingest_synced(&mut self, category: &str, frame: u64) {
        if let Some((watched, frames)) = &self.subscribed
            && watched == category
            && frames.contains(&frame)
        {
            self.synced.insert(frame);
        }
    }

    /// Time passed.
    pub fn tick(&mut self, now: Duration) -> Vec<NegotiatedOutput> {
        self.advance(now);
        self.take()
    }

    /// A fact arrived from the relay, stamped with `author`.
    pub fn receive(
        &mut self,
        author: PlayerId,
        fact: NegotiatedFact,
        now: Duration,
    ) -> Vec<NegotiatedOutput> {
        self.now = self.now.max(now);
        self.handle_fact(author, fact);
        self.advance(now);
        self.take()
    }

    /// Like [`receive`](Self::receive), but only reacts to the fact itself (answers a
    /// bid, notes an accept or reject): looking, bidding, expiry and the tie-break wait
    /// for the next [`tick`](Self::tick), so that a batch of facts that arrived together
    /// is judged as a whole.
    pub fn ingest(&mut self, author: PlayerId, fact: NegotiatedFact) -> Vec<NegotiatedOutput> {
        self.handle_fact(author, fact);
        self.take()
    }

    /// The relay says `author`'s connection closed: its requests will not be answered.
    /// We stop bidding on them (at once if we are waiting on one) until it posts again.
    pub fn departed(&mut self, author: PlayerId, now: Duration) -> Vec<NegotiatedOutput> {
        self.note_departed(author);
        self.advance(now);
        self.take()
    }

    /// Like [`departed`](Self::departed), deciding nothing until the next
    /// [`tick`](Self::tick).
    pub fn ingest_departed(&mut self, author: PlayerId) -> Vec<NegotiatedOutput> {
        self.note_departed(author);
        self.take()
    }

    fn note_departed(&mut self, author: PlayerId) {
        if author != self.config.me {
            self.departed.insert(author);
            if let NegotiatedPhase::Bidding {
                request, requester, ..
            } = self.phase
                && requester == author
            {
                self.give_up(request);
                self.restart(NegotiatedRestartReason::RequestClosed);
            }
        }
    }

    /// Players the relay reported gone (and who did not post since).
    pub fn departed_players(&self) -> &BTreeSet<PlayerId> {
        &self.departed
    }

    fn handle_fact(&mut self, author: PlayerId, fact: NegotiatedFact) {
        let me = self.config.me;
        if let Some(request) = fact.request()
            && !self.store.contains(request)
        {
            // about a request we never saw or already dropped: nothing to do with us
            return;
        }
        if !self.store.is_entitled(author, &fact) {
            self.error(
                NegotiatedErrorKind::NotEntitled,
                format!(
                    "ignored a {:?} by player {author}, who is not entitled to it",
                    fact.kind()
                ),
            );
            return;
        }
        let signed = NegotiatedSignedFact::new(author, fact);
        let id = match self.store.insert(signed.clone()) {
            Ok(NegotiatedInsert::Added(id)) => id,
            Ok(NegotiatedInsert::Duplicate(_)) | Err(_) => return,
        };
        // a new fact from a player reported gone: it is back (or the relay is replaying
        // old facts, in which case a departure notice follows them)
        self.departed.remove(&author);
        match signed.fact {
            NegotiatedFact::Request(r) => {
                // our own request from before a reconnect: it is not ours to keep open
                if author == me
                    && self.online
                    && !self.store.is_closed(id)
                    && self.current_request() != Some(id)
                    && self.config.frames.is_live(r.frame, self.now)
                {
                    self.post(NegotiatedFact::Cancel(NegotiatedCancel { request: id }));
                }
            }
            NegotiatedFact::Bid(b) => {
                if self.store.requester(b.request) != Some(me) {
                    return;
                }
                match &self.phase {
                    NegotiatedPhase::Requesting { request, .. } if *request == b.request => {
                        let accept = self.post(NegotiatedFact::Accept(NegotiatedAccept {
                            request: b.request,
                            bid: id,
                        }));
                        self.matched(NegotiatedMatch {
                            category: self.category.clone().unwrap_or_default(),
                            other: author,
                            role: NegotiatedRole::Requester,
                            request: b.request,
                            bid: id,
                            accept,
                        });
                    }
                    _ => {
                        if self.store.answer_to(id).is_none() {
                            self.post(NegotiatedFact::Reject(NegotiatedReject {
                                request: b.request,
                                bid: id,
                            }));
                        }
                    }
                }
            }
            NegotiatedFact::Accept(a) => {
                if self.my_bids.contains_key(&a.bid) {
                    let m = NegotiatedMatch {
                        category: self
                            .store
                            .request(a.request)
                            .map(|(_, r)| r.category.clone())
                            .unwrap_or_default(),
                        other: author,
                        role: NegotiatedRole::Bidder,
                        request: a.request,
                        bid: a.bid,
                        accept: id,
                    };
                    match self.phase.clone() {
                        NegotiatedPhase::Bidding { bid, .. } if bid == a.bid => self.matched(m),
                        NegotiatedPhase::Looking => self.matched(m),
                        NegotiatedPhase::Requesting { request, .. } => {
                            // a late accept while our own request has no bid: take it
                            self.post(NegotiatedFact::Cancel(NegotiatedCancel { request }));
                            self.matched(m);
                        }
                        _ => self.error(
                            NegotiatedErrorKind::LateAccept,
                            format!(
                                "player {author} accepted bid {} after we gave up on it",
                                a.bid
                            ),
                        ),
                    }
                } else if let NegotiatedPhase::Bidding { request, .. } = self.phase
                    && request == a.request
                {
                    // the requester took another bid: ours is as good as rejected
                    self.give_up(request);
                    self.restart(NegotiatedRestartReason::BidRejected);
                }
            }
            NegotiatedFact::Reject(r) => {
                if let NegotiatedPhase::Bidding { bid, request, .. } = self.phase
                    && bid == r.bid
                {
                    self.give_up(request);
                    self.restart(NegotiatedRestartReason::BidRejected);
                }
            }
            NegotiatedFact::Cancel(c) => {
                if let NegotiatedPhase::Bidding { request, .. } = self.phase
                    && request == c.request
                {
                    self.give_up(request);
                    self.restart(NegotiatedRestartReason::RequestClosed);
                }
            }
        }
    }

    fn current_request(&self) -> Option<NegotiatedFactId> {
        match self.phase {
            NegotiatedPhase::Requesting { request, .. } => Some(request),
            _ => None,
        }
    }

    fn advance(&mut self, now: Duration) {
        self.now = self.now.max(now);
        if !self.online {
            return;
        }
        let now = self.now;
        let frames = self.config.frames;
        let current = frames.frame_of(now);
        let keep = current.saturating_sub(2);
        self.store.drop_before(keep);
        self.given_up.retain(|_, f| *f >= keep);
        self.my_bids.retain(|_, (_, f)| *f >= keep);
        let readable = frames.readable(now);
        if self.is_searching() {
            let category = self.category.clone().unwrap_or_default();
            let wanted = (category.clone(), readable.clone());
            if self.subscribed.as_ref() != Some(&wanted) {
                if self.subscribed.as_ref().map(|(c, _)| c) != Some(&category) {
                    self.synced.clear();
                }
                self.synced.retain(|f| readable.contains(f));
                self.send(NegotiatedClientMessage::Subscribe {
                    category,
                    frames: readable.clone(),
                });
                self.subscribed = Some(wanted);
            }
        }
        let all_synced = readable.iter().all(|f| self.synced.contains(f));
        // at most: expire/close, then decide
        for _ in 0..3 {
            match self.phase.clone() {
                NegotiatedPhase::Idle | NegotiatedPhase::Matched(_) => return,
                NegotiatedPhase::Requesting { request, frame } => {
                    if !frames.is_live(frame, now) {
                        self.restart(NegotiatedRestartReason::RequestExpired);
                        continue;
                    }
                    if self.store.is_closed(request) {
                        // closed by a fact of ours we did not post in this session
                        self.restart(NegotiatedRestartReason::RequestClosed);
                        continue;
                    }
                    if all_synced && let Some(partner) = self.tie_break(request, &readable) {
                        self.post(NegotiatedFact::Cancel(NegotiatedCancel { request }));
                        self.restart(NegotiatedRestartReason::TieBreak);
                        self.bid(partner);
                    }
                    return;
                }
                NegotiatedPhase::Bidding { request, since, .. } => {
                    let live = self
                        .store
                        .get(request)
                        .is_some_and(|r| frames.is_live(r.frame, now));
                    if !live || self.store.is_closed(request) {
                        self.give_up(request);
                        self.restart(NegotiatedRestartReason::RequestClosed);
                        continue;
                    }
                    if now.saturating_sub(since) >= self.config.bid_timeout {
                        self.give_up(request);
                        self.restart(NegotiatedRestartReason::BidTimedOut);
                        continue;
                    }
                    return;
                }
                NegotiatedPhase::Looking => {
                    if !all_synced {
                        return;
                    }
                    let candidates = self.candidates(&readable);
                    if candidates.is_empty() {
                        self.request(current);
                    } else {
                        let pick = candidates[self.rng.usize(..candidates.len())];
                        self.bid(pick);
                    }
                    return;
                }
            }
        }
    }

    /// Open requests of others we may bid on, in a stable order.
    fn candidates(&self, readable: &[u64]) -> Vec<NegotiatedFactId> {
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

    /// The tie-break between open requests that saw each other: sort them (ours
    /// included) by (creation time, id), the same order for every client, and pair them
    /// off from the oldest: (0, 1), (2, 3)... The younger of each pair cancels its request
    /// and bids on the older. Returns the request to bid on when ours is the younger.
    ///
    /// Every client that sees the same requests pairs the same way, so a crowd that
    /// posted at once pairs up in one round trip. When views differ the worst case is a
    /// rejected bid and a restart; the two oldest open requests always pair, so the
    /// search keeps making progress.
    fn tie_break(&self, mine: NegotiatedFactId, readable: &[u64]) -> Option<NegotiatedFactId> {
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

    fn bid(&mut self, request: NegotiatedFactId) {
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

    /// A creation time for a new request or bid: now, but strictly after the previous
    /// one, so two facts of ours never share content (and id) even within one instant.
    fn stamp(&mut self) -> u64 {
        let us = as_us(self.now).max(self.last_stamp_us.saturating_add(1));
        self.last_stamp_us = us;
        us
    }

    fn give_up(&mut self, request: NegotiatedFactId) {
        let frame = self.store.get(request).map(|r| r.frame).unwrap_or(u64::MAX);
        self.given_up.insert(request, frame);
    }

    fn restart(&mut self, reason: NegotiatedRestartReason) {
        self.phase = NegotiatedPhase::Looking;
        self.event(NegotiatedEvent::Restarted(reason));
    }

    fn matched(&mut self, m: NegotiatedMatch) {
        self.phase = NegotiatedPhase::Matched(m.clone());
        self.stop_watching();
        self.event(NegotiatedEvent::Matched(m));
    }

    fn stop_watching(&mut self) {
        if self.subscribed.take().is_some() && self.online {
            self.send(NegotiatedClientMessage::Unsubscribe);
        }
        self.synced.clear();
    }

    /// Stores our own fact and sends it; returns its id.
    fn post(&mut self, fact: NegotiatedFact) -> NegotiatedFactId {
        let signed = NegotiatedSignedFact::new(self.config.me, fact.clone());
        let id = signed.id();
        // our facts are about requests we know, so this cannot fail
        let _ = self.store.insert(signed);
        self.send(NegotiatedClientMessage::Post { fact });
        id
    }

    fn send(&mut self, message: NegotiatedClientMessage) {
        self.out.push(NegotiatedOutput::Send(message));
    }

    fn event(&mut self, event: NegotiatedEvent) {
        self.out.push(NegotiatedOutput::Event(event));
    }

    fn error(&mut self, kind: NegotiatedErrorKind, message: String) {
        self.event(NegotiatedEvent::Error { kind, message });
    }

    fn take(&mut self) -> Vec<NegotiatedOutput> {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: PlayerId = 1;
    const FRAME: Duration = Duration::from_secs(10);

    fn t(ms: u64) -> Duration {
        Duration::from_secs(1000) + Duration::from_millis(ms)
    }

    fn machine() -> NegotiatedMachine {
        NegotiatedMachine::new(NegotiatedMachineConfig {
            me: ME,
            frames: NegotiatedFrames::new(FRAME),
            bid_timeout: Duration::from_secs(2),
            seed: 3,
        })
    }

    fn posts(out: &[NegotiatedOutput]) -> Vec<NegotiatedFact> {
        out.iter()
            .filter_map(|o| match o {
                NegotiatedOutput::Send(NegotiatedClientMessage::Post { fact }) => {
                    Some(fact.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn events(out: &[NegotiatedOutput]) -> Vec<NegotiatedEvent> {
        out.iter()
            .filter_map(|o| match o {
                NegotiatedOutput::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// A machine online and searching at `t(0)`, with both readable frames synced.
    fn searching(m: &mut NegotiatedMachine) -> Vec<NegotiatedOutput> {
        let mut out = m.online(t(0));
        out.extend(m.search("duel", t(0)));
        let frames: Vec<u64> = m.config().frames.readable(t(0));
        assert!(out.contains(&NegotiatedOutput::Send(
            NegotiatedClientMessage::Subscribe {
                category: "duel".into(),
                frames: frames.clone(),
            }
        )));
        for f in frames {
            out.extend(m.synced("duel", f, t(0)));
        }
        out
    }

    fn request_by(author: PlayerId, created_ms: u64) -> (NegotiatedFactId, NegotiatedFact) {
        let fact = NegotiatedFact::Request(NegotiatedRequest {
            category: "duel".into(),
            frame: NegotiatedFrames::new(FRAME).frame_of(t(created_ms)),
            created_us: as_us(t(created_ms)),
        });
        (NegotiatedSignedFact::new(author, fact.clone()).id(), fact)
    }

    /// A machine bidding on player 2's request; returns (request, bid).
    fn bidding(m: &mut NegotiatedMachine) -> (NegotiatedFactId, NegotiatedFactId) {
        m.online(t(0));
        m.search("duel", t(0));
        let (r, fact) = request_by(2, 0);
        m.receive(2, fact, t(0));
        let frames: Vec<u64> = m.config().frames.readable(t(0));
        let mut out = Vec::new();
        for f in frames {
            out.extend(m.synced("duel", f, t(0)));
        }
        let NegotiatedPhase::Bidding { bid, request, .. } = m.phase().clone() else {
            panic!("not bidding: {:?}", m.phase())
        };
        assert_eq!(request, r);
        assert_eq!(posts(&out).len(), 1);
        (r, bid)
    }

    #[test]
    fn waits_for_the_frames_then_requests() {
        let mut m = machine();
        assert!(m.search("duel", t(0)).is_empty() || !m.is_online());
        let out = m.online(t(0));
        assert!(
            posts(&out).is_empty(),
            "nothing posted before the frames are synced"
        );
        assert_eq!(m.phase(), &NegotiatedPhase::Looking);
        let frames = m.config().frames.readable(t(0));
        let out = m.synced("duel", frames[0], t(0));
        assert!(posts(&out).is_empty());
        let out = m.synced("duel", frames[1], t(0));
        let posted = posts(&out);
        assert!(matches!(&posted[..], [NegotiatedFact::Request(r)] if r.frame == frames[1]));
        assert!(matches!(m.phase(), NegotiatedPhase::Requesting { .. }));
        // a synced marker for another category is ignored
        let mut other = machine();
        other.online(t(0));
        other.search("duel", t(0));
        for f in &frames {
            assert!(posts(&other.synced("race", *f, t(0))).is_empty());
        }
    }

    #[test]
    fn a_requester_accepts_the_first_bid_and_rejects_the_rest() {
        let mut m = machine();
        searching(&mut m);
        let NegotiatedPhase::Requesting { request, .. } = m.phase().clone() else {
            panic!()
        };
        let bid = |ms| {
            NegotiatedFact::Bid(NegotiatedBid {
                request,
                created_us: ms,
            })
        };
        let out = m.receive(2, bid(1), t(5));
        let b2 = NegotiatedSignedFact::new(2, bid(1)).id();
        assert_eq!(
            posts(&out),
            vec![NegotiatedFact::Accept(NegotiatedAccept {
                request,
                bid: b2
            })]
        );
        assert!(
            matches!(&events(&out)[..], [NegotiatedEvent::Matched(m)] if m.other == 2 && m.role == NegotiatedRole::Requester)
        );
        // a duplicate changes nothing; a later bid is rejected; a self-bid is ignored
        assert!(posts(&m.receive(2, bid(1), t(6))).is_empty());
        let out = m.receive(3, bid(2), t(7));
        let b3 = NegotiatedSignedFact::new(3, bid(2)).id();
        assert_eq!(
            posts(&out),
            vec![NegotiatedFact::Reject(NegotiatedReject {
                request,
                bid: b3
            })]
        );
        let out = m.receive(ME, bid(3), t(8));
        assert!(posts(&out).is_empty());
        assert!(matches!(
            &events(&out)[..],
            [NegotiatedEvent::Error {
                kind: NegotiatedErrorKind::NotEntitled,
                ..
            }]
        ));
    }

    #[test]
    fn a_reject_restarts_and_the_request_is_not_bid_on_again() {
        let mut m = machine();
        let (r, bid) = bidding(&mut m);
        // a forged reject is ignored
        let out = m.receive(
            3,
            NegotiatedFact::Reject(NegotiatedReject { request: r, bid }),
            t(10),
        );
        assert!(matches!(m.phase(), NegotiatedPhase::Bidding { .. }));
        assert!(matches!(
            &events(&out)[..],
            [NegotiatedEvent::Error {
                kind: NegotiatedErrorKind::NotEntitled,
                ..
            }]
        ));
        let out = m.receive(
            2,
            NegotiatedFact::Reject(NegotiatedReject { request: r, bid }),
            t(20),
        );
        let ev = events(&out);
        assert_eq!(
            ev[0],
            NegotiatedEvent::Restarted(NegotiatedRestartReason::BidRejected)
        );
        // the same request is still "open" (not accepted) but we do not bid on it again
        assert!(matches!(&posts(&out)[..], [NegotiatedFact::Request(_)]));
    }

    #[test]
    fn an_unanswered_bid_times_out() {
        let mut m = machine();
        let (_, _) = bidding(&mut m);
        assert!(events(&m.tick(t(1999))).is_empty());
        let out = m.tick(t(2000));
        assert_eq!(
            events(&out)[0],
            NegotiatedEvent::Restarted(NegotiatedRestartReason::BidTimedOut)
        );
        assert!(matches!(m.phase(), NegotiatedPhase::Requesting { .. }));
    }

    #[test]
    fn a_late_accept_is_taken_when_free_and_reported_when_busy() {
        // free: requesting without a bid -> cancel our request, matched
        let mut m = machine();
        let (r, bid) = bidding(&mut m);
        m.tick(t(2000));
        let NegotiatedPhase::Requesting { request: mine, .. } = m.phase().clone() else {
            panic!()
        };
        let out = m.receive(
            2,
            NegotiatedFact::Accept(NegotiatedAccept { request: r, bid }),
            t(2100),
        );
        assert_eq!(
            posts(&out),
            vec![NegotiatedFact::Cancel(NegotiatedCancel { request: mine })]
        );
        assert!(matches!(m.phase(), NegotiatedPhase::Matched(x) if x.other == 2 && x.bid == bid));

        // busy: bidding on another request -> error, keep bidding
        let mut m = machine();
        let (r, bid) = bidding(&mut m);
        m.tick(t(2000));
        let NegotiatedPhase::Requesting { .. } = m.phase() else {
            panic!("{:?}", m.phase())
        };
        // 3's request, older than ours: the tie-break makes us bid on it
        let (r3, fact) = request_by(3, 1990);
        m.receive(3, fact, t(2001));
        assert!(matches!(m.phase(), NegotiatedPhase::Bidding { request, .. } if *request == r3));
        let out = m.receive(
            2,
            NegotiatedFact::Accept(NegotiatedAccept { request: r, bid }),
            t(2100),
        );
        assert!(matches!(
            &events(&out)[..],
            [NegotiatedEvent::Error {
                kind: NegotiatedErrorKind::LateAccept,
                ..
            }]
        ));
        assert!(matches!(m.phase(), NegotiatedPhase::Bidding { request, .. } if *request == r3));
    }

    #[test]
    fn the_tie_break_pairs_off_sorted_requests() {
        // our request is created at 0 ms; others at -5 (older) and +5 ms (newer)
        let mut m = machine();
        searching(&mut m);
        let NegotiatedPhase::Requesting { request: mine, .. } = m.phase().clone() else {
            panic!()
        };
        // only a newer request: we are position 0 and keep ours
        let (_, newer) = request_by(3, 5);
        m.ingest(3, newer);
        m.tick(t(6));
        assert!(
            matches!(m.phase(), NegotiatedPhase::Requesting { request, .. } if *request == mine)
        );
        // an older one too: we are position 1 of [older, ours, newer] and bid on the older
        let older_fact = NegotiatedFact::Request(NegotiatedRequest {
            category: "duel".into(),
            frame: NegotiatedFrames::new(FRAME).frame_of(t(0)),
            created_us: as_us(t(0)) - 5000,
        });
        let older = NegotiatedSignedFact::new(2, older_fact.clone()).id();
        m.ingest(2, older_fact);
        let out = m.tick(t(7));
        let p = posts(&out);
        assert_eq!(
            p[0],
            NegotiatedFact::Cancel(NegotiatedCancel { request: mine })
        );
        assert!(matches!(&p[1], NegotiatedFact::Bid(b) if b.request == older));
        assert_eq!(
            events(&out)[0],
            NegotiatedEvent::Restarted(NegotiatedRestartReason::TieBreak)
        );
    }

    #[test]
    fn losing_the_connection_restarts_and_old_requests_are_cancelled() {
        let mut m = machine();
        searching(&mut m);
        let NegotiatedPhase::Requesting { request: old, .. } = m.phase().clone() else {
            panic!()
        };
        let old_fact = m.store().get(old).unwrap().fact.clone();
        let out = m.offline();
        assert_eq!(
            events(&out),
            vec![NegotiatedEvent::Restarted(
                NegotiatedRestartReason::ConnectionLost
            )]
        );
        assert!(m.store().is_empty());
        // back on the same relay: resubscribe; the relay still holds our old request
        let out = m.online(t(100));
        assert!(out.iter().any(|o| matches!(
            o,
            NegotiatedOutput::Send(NegotiatedClientMessage::Subscribe { .. })
        )));
        let out = m.ingest(ME, old_fact);
        assert_eq!(
            posts(&out),
            vec![NegotiatedFact::Cancel(NegotiatedCancel { request: old })]
        );
    }

    #[test]
    fn a_departed_requester_is_not_waited_for_nor_bid_on() {
        let mut m = machine();
        let (r, _) = bidding(&mut m);
        let out = m.departed(2, t(100));
        assert_eq!(
            events(&out)[0],
            NegotiatedEvent::Restarted(NegotiatedRestartReason::RequestClosed)
        );
        // its request is still "open" but we post our own instead of bidding again
        assert!(!m.store().is_closed(r));
        assert!(matches!(&posts(&out)[..], [NegotiatedFact::Request(_)]));
        assert!(m.departed_players().contains(&2));
        // 3's request arrives while 3 is gone: not a candidate for the tie-break
        let (_, fact) = request_by(3, 50);
        m.ingest(3, fact);
        m.ingest_departed(3);
        m.tick(t(101));
        assert!(matches!(m.phase(), NegotiatedPhase::Requesting { .. }));
        // a new fact from 2 means it is back
        let (_, fact) = request_by(2, 60);
        m.ingest(2, fact);
        assert!(!m.departed_players().contains(&2));
    }

    #[test]
    fn cancel_posts_a_cancel_of_the_open_request() {
        let mut m = machine();
        searching(&mut m);
        let NegotiatedPhase::Requesting { request, .. } = m.phase().clone() else {
            panic!()
        };
        let out = m.cancel(t(10));
        assert_eq!(
            posts(&out),
            vec![NegotiatedFact::Cancel(NegotiatedCancel { request })]
        );
        assert!(out.contains(&NegotiatedOutput::Send(
            NegotiatedClientMessage::Unsubscribe
        )));
        assert_eq!(m.phase(), &NegotiatedPhase::Idle);
        // a bid arriving afterwards is rejected
        let bid = NegotiatedFact::Bid(NegotiatedBid {
            request,
            created_us: 9,
        });
        let out = m.receive(2, bid, t(20));
        assert!(matches!(&posts(&out)[..], [NegotiatedFact::Reject(_)]));
    }
}
