//! The relay's logic without the engine: store facts by frame and route them along the
//! facts' pivots (`docs/design.md`, "The relay"). No matchmaking happens here.
//!
//! - A request goes to everyone watching its category and frame.
//! - A bid goes to the requester.
//! - An accept goes to the bidder and to everyone watching the request.
//! - A reject goes to the bidder.
//! - A cancel goes to everyone watching the request; a withdrawal (a cancel naming a bid)
//!   goes to the requester.
//! - Every post gets a verdict back to its author, [`NegotiatedRelayMessage::Stored`] or
//!   [`NegotiatedRelayMessage::Refused`], on the same ordered stream as the forwards.
//! - When a connection closes, everyone watching a frame where it posted a request is
//!   told it departed (its requests will not be answered); so is every later subscriber
//!   to such a frame, until it connects again. This is presence, not matchmaking: what to
//!   make of it is again the clients' business.
//!
//! The relay stamps the author from the connection and keeps storage rules, first writer
//! wins: facts about a request need the request; an accept is refused once
//! the request is closed, or when its bid was withdrawn or rejected first, is past its
//! deadline or its bidder's connection closed; a withdrawal is refused once its bid was
//! accepted. Whether an author was entitled to a fact is otherwise for clients to judge.
//!
//! With a [`NegotiatedRelayJournal`] every fact is recorded before its verdict is sent,
//! and [`NegotiatedRelayCore::restore`] reads the journal back after a restart, so a
//! restarted relay gives the verdicts the previous one would have: an accept stored
//! before the restart still wins over the bidder's withdrawal after it.
//!
//! Memory is bounded ([`NegotiatedRelayLimits`]): facts per connection and frame, facts in
//! all, and departed ids remembered; frames older than two frame durations are dropped.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::time::Duration;

use crate::shared::player::{PlayerId, validate_category};

use super::fact::{NegotiatedFact, NegotiatedFactId, NegotiatedSignedFact};
use super::frame::NegotiatedFrames;
use super::journal::NegotiatedRelayJournal;
use super::protocol::{
    NEGOTIATED_MAX_WATCHED_FRAMES, NegotiatedErrorKind, NegotiatedRelayMessage, bounded_error_text,
};
use super::store::{NegotiatedFactStore, NegotiatedInsert, NegotiatedStoredFact};

mod rules;
pub use rules::check_request;
mod shared;

#[cfg(test)]
mod tests;

/// Messages to send: (recipient, message), in order.
pub type NegotiatedOutbox = Vec<(PlayerId, NegotiatedRelayMessage)>;

/// Default of [`NegotiatedRelayLimits::max_facts`].
pub const NEGOTIATED_DEFAULT_MAX_FACTS: usize = 100_000;

/// Default of [`NegotiatedRelayLimits::max_departed`].
pub const NEGOTIATED_DEFAULT_MAX_DEPARTED: usize = 10_000;

/// Default of [`NegotiatedRelayLimits::max_facts_per_frame`].
pub const NEGOTIATED_DEFAULT_MAX_FACTS_PER_FRAME: usize = 256;

/// What the relay keeps at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatedRelayLimits {
    /// Facts one connection may post into one frame, not counting its rejects of bids
    /// and withdrawals of its bids (at most one per bid); past it:
    /// [`NegotiatedErrorKind::TooManyFacts`].
    pub max_facts_per_frame: usize,
    /// Facts held in all; past it new facts are refused with
    /// [`NegotiatedErrorKind::RelayFull`], except a bidder's withdrawal of its bid (at
    /// most one per stored bid, so the store never holds more than twice this).
    pub max_facts: usize,
    /// Departed ids remembered for later subscribers. Only ids with a stored request are
    /// remembered, and only until their requests expire; past the cap a departure is not
    /// remembered (later subscribers are not told; bids on those requests time out).
    pub max_departed: usize,
}

impl Default for NegotiatedRelayLimits {
    fn default() -> Self {
        Self {
            max_facts_per_frame: NEGOTIATED_DEFAULT_MAX_FACTS_PER_FRAME,
            max_facts: NEGOTIATED_DEFAULT_MAX_FACTS,
            max_departed: NEGOTIATED_DEFAULT_MAX_DEPARTED,
        }
    }
}

impl NegotiatedRelayLimits {
    /// Every limit at least 1.
    fn sane(self) -> Self {
        Self {
            max_facts_per_frame: self.max_facts_per_frame.max(1),
            max_facts: self.max_facts.max(1),
            max_departed: self.max_departed.max(1),
        }
    }
}

/// What a client watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedWatch {
    /// The category.
    pub category: String,
    /// The frames.
    pub frames: BTreeSet<u64>,
}

/// Why the relay refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedRefusal {
    /// What.
    pub kind: NegotiatedErrorKind,
    /// For humans.
    pub message: String,
    /// The stored fact that won over a refused post (the accept that came before a
    /// withdrawal), sent to the poster just before the refusal.
    pub winner: Option<NegotiatedSignedFact>,
}

impl NegotiatedRefusal {
    pub(crate) fn new(kind: NegotiatedErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            winner: None,
        }
    }

    /// The refusal as a message to the client.
    pub fn to_message(&self) -> NegotiatedRelayMessage {
        NegotiatedRelayMessage::Error {
            kind: self.kind,
            message: bounded_error_text(self.message.clone()),
        }
    }

    /// The refusal of the posted fact `fact`, as a message to its author.
    pub fn to_verdict(&self, fact: NegotiatedFactId) -> NegotiatedRelayMessage {
        NegotiatedRelayMessage::Refused {
            fact,
            kind: self.kind,
            message: bounded_error_text(self.message.clone()),
        }
    }
}

/// What [`NegotiatedRelayCore::decide`] did with a post the rules allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedDecision {
    /// The fact is new and now stored, in this frame and category.
    Added {
        /// The frame it lives in (its request's frame).
        frame: u64,
        /// Its request's category.
        category: String,
    },
    /// The store already held it: nothing changed.
    Duplicate,
}

/// Counters of the relay since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NegotiatedRelayStats {
    /// Facts stored.
    pub facts_stored: u64,
    /// Facts received again (ignored).
    pub facts_duplicate: u64,
    /// Facts refused (unknown request, out of range, too many...).
    pub facts_refused: u64,
    /// Fact messages sent to clients (forwards and subscription catch-up).
    pub facts_sent: u64,
    /// Facts dropped with their expired frame.
    pub facts_expired: u64,
    /// Departures not remembered because [`NegotiatedRelayLimits::max_departed`] was reached.
    pub departures_forgotten: u64,
    /// Facts read back from the journal at start.
    pub facts_restored: u64,
    /// Journal writes or deletes that failed (a failed write refuses its fact).
    pub journal_errors: u64,
    /// Facts read from a shared store's log that were new here (a relay sharing a store).
    pub facts_replicated: u64,
    /// Facts read from a shared store's log that this relay could not place (their request
    /// expired here first).
    pub facts_unplaced: u64,
}

/// The relay's store, subscriptions and routing.
#[derive(Debug, Clone)]
pub struct NegotiatedRelayCore {
    frames: NegotiatedFrames,
    store: NegotiatedFactStore,
    watches: HashMap<PlayerId, NegotiatedWatch>,
    departed: BTreeSet<PlayerId>,
    /// Unanswered bids whose bidder's connection closed: never accepted from then on.
    dead_bids: HashSet<NegotiatedFactId>,
    limits: NegotiatedRelayLimits,
    stats: NegotiatedRelayStats,
    /// Where stored facts are recorded, if anywhere.
    journal: Option<NegotiatedRelayJournal>,
}

impl NegotiatedRelayCore {
    /// A relay with this frame grid, accepting at most `max_facts_per_frame` facts per
    /// connection and frame, and the default global limits.
    pub fn new(frames: NegotiatedFrames, max_facts_per_frame: usize) -> Self {
        Self::with_limits(
            frames,
            NegotiatedRelayLimits {
                max_facts_per_frame,
                ..NegotiatedRelayLimits::default()
            },
        )
    }

    /// A relay with this frame grid and these limits (each at least 1).
    pub fn with_limits(frames: NegotiatedFrames, limits: NegotiatedRelayLimits) -> Self {
        Self {
            frames,
            store: NegotiatedFactStore::new(),
            watches: HashMap::new(),
            departed: BTreeSet::new(),
            dead_bids: HashSet::new(),
            limits: limits.sane(),
            stats: NegotiatedRelayStats::default(),
            journal: None,
        }
    }

    /// Reads back what `journal` holds and records every fact stored from now on in it.
    /// Call it on a fresh relay, before any connection, at relay time `now`.
    ///
    /// Every connection closed when the previous relay stopped, so the restored relay
    /// treats them all as gone: unanswered bids can no longer be accepted (their
    /// bidders withdraw them when back, and learn from the verdict whether an accept
    /// came first), and the authors of stored requests count as departed until they
    /// connect again. Returns how many facts were read back.
    pub fn restore(&mut self, journal: NegotiatedRelayJournal, now: Duration) -> io::Result<usize> {
        let facts = journal.lock().load()?;
        let mut restored = 0;
        for fact in facts {
            if self.store.insert_strict(fact).is_ok_and(|i| i.is_added()) {
                restored += 1;
            }
        }
        self.stats.facts_restored += restored as u64;
        self.journal = Some(journal);
        self.expire(now);
        let ids = self.store.ids();
        for id in ids {
            let Some(fact) = self.store.get(id) else {
                continue;
            };
            let author = fact.author;
            if fact.as_bid().is_some() && self.store.answer_to(id).is_none() {
                self.dead_bids.insert(id);
            } else if fact.as_request().is_some() && self.departed.len() < self.limits.max_departed
            {
                self.departed.insert(author);
            }
        }
        Ok(restored as usize)
    }

    /// The journal facts are recorded in, if any.
    pub fn journal(&self) -> Option<&NegotiatedRelayJournal> {
        self.journal.as_ref()
    }

    /// The frame grid.
    pub fn frames(&self) -> NegotiatedFrames {
        self.frames
    }

    /// Changes the per-connection, per-frame fact limit.
    pub fn set_max_facts_per_frame(&mut self, max: usize) {
        self.set_limits(NegotiatedRelayLimits {
            max_facts_per_frame: max,
            ..self.limits
        });
    }

    /// Changes the limits (each at least 1). What is held beyond a lowered limit stays
    /// until it expires; nothing new is added past it.
    pub fn set_limits(&mut self, limits: NegotiatedRelayLimits) {
        self.limits = limits.sane();
    }

    /// The limits.
    pub fn limits(&self) -> NegotiatedRelayLimits {
        self.limits
    }

    /// The stored facts.
    pub fn store(&self) -> &NegotiatedFactStore {
        &self.store
    }

    /// The counters.
    pub fn stats(&self) -> NegotiatedRelayStats {
        self.stats
    }

    /// What a client watches.
    pub fn watch(&self, client: PlayerId) -> Option<&NegotiatedWatch> {
        self.watches.get(&client)
    }

    /// Number of clients with a subscription.
    pub fn watching(&self) -> usize {
        self.watches.len()
    }

    /// Clients watching a category and frame, sorted.
    pub fn watchers(&self, category: &str, frame: u64) -> BTreeSet<PlayerId> {
        self.watches
            .iter()
            .filter(|(_, w)| w.category == category && w.frames.contains(&frame))
            .map(|(c, _)| *c)
            .collect()
    }

    /// Whether `client` sees a stored fact through routing: requests, accepts and cancels
    /// by watching; bids and withdrawals as the requester; rejects (and accepts) as the
    /// bidder; its own facts.
    fn visible_to(&self, client: PlayerId, fact: &NegotiatedStoredFact) -> bool {
        if fact.author == client {
            return true;
        }
        match &fact.fact {
            NegotiatedFact::Cancel(c) if c.bid.is_some() => {
                self.store.requester(c.request) == Some(client)
            }
            NegotiatedFact::Request(_) | NegotiatedFact::Accept(_) | NegotiatedFact::Cancel(_) => {
                true
            }
            NegotiatedFact::Bid(b) => self.store.requester(b.request) == Some(client),
            NegotiatedFact::Reject(r) => self.store.get(r.bid).map(|b| b.author) == Some(client),
        }
    }

    /// Who a newly stored fact goes to (its author excepted), along the pivots.
    fn recipients(&self, fact: &NegotiatedFact, category: &str, frame: u64) -> BTreeSet<PlayerId> {
        let bidder = |bid| self.store.get(bid).map(|b| b.author);
        match fact {
            NegotiatedFact::Request(_) => self.watchers(category, frame),
            NegotiatedFact::Bid(b) => self.store.requester(b.request).into_iter().collect(),
            NegotiatedFact::Accept(a) => {
                let mut to = self.watchers(category, frame);
                to.extend(bidder(a.bid));
                to
            }
            NegotiatedFact::Reject(r) => bidder(r.bid).into_iter().collect(),
            NegotiatedFact::Cancel(c) if c.bid.is_some() => {
                self.store.requester(c.request).into_iter().collect()
            }
            NegotiatedFact::Cancel(_) => self.watchers(category, frame),
        }
    }

    /// Replaces a client's subscription: sends the stored facts it may see in every newly
    /// watched frame, then [`NegotiatedRelayMessage::Synced`] for that frame.
    pub fn subscribe(
        &mut self,
        client: PlayerId,
        category: String,
        frames: Vec<u64>,
    ) -> Result<NegotiatedOutbox, NegotiatedRefusal> {
        validate_category(&category)
            .map_err(|why| NegotiatedRefusal::new(NegotiatedErrorKind::InvalidCategory, why))?;
        let frames: BTreeSet<u64> = frames.into_iter().collect();
        if frames.len() > NEGOTIATED_MAX_WATCHED_FRAMES {
            return Err(NegotiatedRefusal::new(
                NegotiatedErrorKind::InvalidSubscription,
                format!(
                    "a subscription names at most {NEGOTIATED_MAX_WATCHED_FRAMES} frames, got {}",
                    frames.len()
                ),
            ));
        }
        let already: BTreeSet<u64> = match self.watches.get(&client) {
            Some(w) if w.category == category => w.frames.clone(),
            _ => BTreeSet::new(),
        };
        let mut out = NegotiatedOutbox::new();
        for frame in frames.difference(&already) {
            self.catch_up(client, &category, *frame, &mut out);
        }
        self.stats.facts_sent += out
            .iter()
            .filter(|(_, m)| matches!(m, NegotiatedRelayMessage::Fact { .. }))
            .count() as u64;
        self.watches
            .insert(client, NegotiatedWatch { category, frames });
        Ok(out)
    }

    /// The stored facts of one frame `client` may see, the departures of their
    /// requesters, then [`NegotiatedRelayMessage::Synced`].
    fn catch_up(&self, client: PlayerId, category: &str, frame: u64, out: &mut NegotiatedOutbox) {
        let mut gone = BTreeSet::new();
        for fact in self.store.facts_in(frame) {
            if fact.category == category && self.visible_to(client, fact) {
                out.push((
                    client,
                    NegotiatedRelayMessage::Fact {
                        author: fact.author,
                        fact: fact.fact.clone(),
                    },
                ));
                if fact.as_request().is_some() && self.departed.contains(&fact.author) {
                    gone.insert(fact.author);
                }
            }
        }
        for author in gone {
            out.push((client, NegotiatedRelayMessage::Departed { author }));
        }
        out.push((
            client,
            NegotiatedRelayMessage::Synced {
                category: category.to_owned(),
                frame,
            },
        ));
    }

    /// Stops a client's subscription.
    pub fn unsubscribe(&mut self, client: PlayerId) {
        self.watches.remove(&client);
    }

    /// A client (re)connected: it is no longer reported as departed. Its bids that were
    /// unanswered when it left stay unacceptable.
    pub fn connect(&mut self, client: PlayerId) {
        self.departed.remove(&client);
    }

    /// A client's connection closed: forgets its subscription (its facts stay), makes
    /// its unanswered bids unacceptable, and tells everyone watching a frame where it
    /// posted a request, with [`NegotiatedRelayMessage::Departed`]. Later subscribers to
    /// those frames are told too, until the client connects again (within
    /// [`NegotiatedRelayLimits::max_departed`]).
    pub fn disconnect(&mut self, client: PlayerId) -> NegotiatedOutbox {
        self.unsubscribe(client);
        self.depart(client)
    }

    /// A client's connection closed, here or on another relay sharing the store: its
    /// unanswered bids become unacceptable and everyone here watching a frame where it
    /// posted a request is told ([`disconnect`](Self::disconnect) without the
    /// subscription, which another relay never had).
    pub fn depart(&mut self, client: PlayerId) -> NegotiatedOutbox {
        let mut places = BTreeSet::new();
        for fact in self.store.by_author(client) {
            if fact.as_request().is_some() {
                places.insert((fact.category.clone(), fact.frame));
            } else if fact.as_bid().is_some() && self.store.answer_to(fact.id).is_none() {
                self.dead_bids.insert(fact.id);
            }
        }
        if places.is_empty() {
            return NegotiatedOutbox::new();
        }
        if self.departed.len() < self.limits.max_departed {
            self.departed.insert(client);
        } else if !self.departed.contains(&client) {
            self.stats.departures_forgotten += 1;
        }
        let mut to = BTreeSet::new();
        for (category, frame) in places {
            to.extend(self.watchers(&category, frame));
        }
        to.into_iter()
            .map(|c| (c, NegotiatedRelayMessage::Departed { author: client }))
            .collect()
    }

    /// Clients whose connection closed, who had a request stored when they left, and
    /// who did not connect again (while their requests are stored).
    pub fn departed(&self) -> &BTreeSet<PlayerId> {
        &self.departed
    }

    /// Bids that can no longer be accepted because their bidder left (while stored).
    pub fn departed_bids(&self) -> usize {
        self.dead_bids.len()
    }

    /// Handles a fact posted by `author` at relay time `now`: frames that expired by then
    /// are dropped first, then the fact is stored and forwarded, or refused. Returns the
    /// forwards and the verdict to the author ([`NegotiatedRelayMessage::Stored`], also
    /// for a fact already held, which is forwarded to no one; or, after the winning fact
    /// when there is one, [`NegotiatedRelayMessage::Refused`]).
    pub fn post(
        &mut self,
        author: PlayerId,
        fact: NegotiatedFact,
        now: Duration,
    ) -> NegotiatedOutbox {
        let signed = NegotiatedSignedFact::new(author, fact);
        let id = signed.id();
        match self.store_fact(signed, now) {
            Ok(forwards) => {
                let mut out = vec![(author, NegotiatedRelayMessage::Stored { fact: id })];
                out.extend(forwards);
                out
            }
            Err(refusal) => self.refusal_messages(author, id, &refusal),
        }
    }

    /// The messages that tell `author` its post `id` was refused: the stored fact that
    /// won over it, when there is one, then the refusal.
    fn refusal_messages(
        &mut self,
        author: PlayerId,
        id: NegotiatedFactId,
        refusal: &NegotiatedRefusal,
    ) -> NegotiatedOutbox {
        let mut out = NegotiatedOutbox::new();
        if let Some(winner) = &refusal.winner {
            self.stats.facts_sent += 1;
            out.push((
                author,
                NegotiatedRelayMessage::Fact {
                    author: winner.author,
                    fact: winner.fact.clone(),
                },
            ));
        }
        out.push((author, refusal.to_verdict(id)));
        out
    }

    /// Stores a new fact if the rules allow and returns its forwards.
    fn store_fact(
        &mut self,
        signed: NegotiatedSignedFact,
        now: Duration,
    ) -> Result<NegotiatedOutbox, NegotiatedRefusal> {
        match self.decide(&signed, now)? {
            NegotiatedDecision::Duplicate => Ok(NegotiatedOutbox::new()),
            NegotiatedDecision::Added { frame, category } => {
                Ok(self.forwards(&signed, &category, frame))
            }
        }
    }

    /// Decides a post by the storage rules and stores it when they allow, without routing
    /// it: what a store shared by several relays does (each relay then routes the facts
    /// it reads back, [`apply_log`](Self::apply_log)). Frames that expired by `now` are
    /// dropped first.
    pub fn decide(
        &mut self,
        signed: &NegotiatedSignedFact,
        now: Duration,
    ) -> Result<NegotiatedDecision, NegotiatedRefusal> {
        self.expire(now);
        if self.store.contains(signed.id()) {
            self.stats.facts_duplicate += 1;
            return Ok(NegotiatedDecision::Duplicate);
        }
        let refused = |stats: &mut NegotiatedRelayStats| stats.facts_refused += 1;
        let (frame, category) = self
            .check(signed, now)
            .inspect_err(|_| refused(&mut self.stats))?;
        self.record(frame, signed)
            .inspect_err(|_| refused(&mut self.stats))?;
        let inserted = self
            .store
            .insert_strict(signed.clone())
            .expect("checked just before");
        debug_assert!(matches!(inserted, NegotiatedInsert::Added(_)));
        self.stats.facts_stored += 1;
        Ok(NegotiatedDecision::Added { frame, category })
    }

    /// The messages that forward a newly stored fact to who should see it (its author
    /// excepted), along the pivots.
    fn forwards(
        &mut self,
        signed: &NegotiatedSignedFact,
        category: &str,
        frame: u64,
    ) -> NegotiatedOutbox {
        let out: NegotiatedOutbox = self
            .recipients(&signed.fact, category, frame)
            .into_iter()
            .filter(|c| *c != signed.author)
            .map(|c| {
                (
                    c,
                    NegotiatedRelayMessage::Fact {
                        author: signed.author,
                        fact: signed.fact.clone(),
                    },
                )
            })
            .collect();
        self.stats.facts_sent += out.len() as u64;
        out
    }

    /// Records a fact in the journal, if there is one, before anyone is told it is stored.
    fn record(
        &mut self,
        frame: u64,
        signed: &NegotiatedSignedFact,
    ) -> Result<(), NegotiatedRefusal> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let written = journal.lock().append(frame, signed);
        written.map_err(|why| {
            self.stats.journal_errors += 1;
            NegotiatedRefusal::new(
                NegotiatedErrorKind::RelayFull,
                format!("the relay could not record the fact in its journal: {why}"),
            )
        })
    }

    /// Drops frames that ended more than two frame durations before `now`, with what
    /// only they kept alive (departures, departed bids); returns how many facts went.
    pub fn expire(&mut self, now: Duration) -> usize {
        let oldest = self.frames.oldest_kept(now);
        let dropped = self.store.drop_before(oldest);
        if dropped > 0 {
            if let Some(journal) = &self.journal
                && journal.lock().drop_before(oldest).is_err()
            {
                self.stats.journal_errors += 1;
            }
            self.stats.facts_expired += dropped as u64;
            let store = &self.store;
            self.dead_bids.retain(|bid| store.contains(*bid));
            self.departed
                .retain(|author| store.by_author(*author).any(|f| f.as_request().is_some()));
        }
        dropped
    }
}
