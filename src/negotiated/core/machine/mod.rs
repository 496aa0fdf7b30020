//! The client's negotiation as a pure state machine: fed facts, relay sync markers and
//! relay time; answers with messages to send and events to report. No game engine, no
//! clock of its own, no I/O:
//! [`NegotiatedClientPlugin`](crate::negotiated::client::NegotiatedClientPlugin) drives it,
//! and tests drive it directly.
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

use super::fact::{NegotiatedCancel, NegotiatedFact, NegotiatedFactId};
use super::frame::NegotiatedFrames;
use super::protocol::NegotiatedErrorKind;
use super::store::NegotiatedFactStore;

// By concern: `phase` and `output` are what the machine shows and says; `facts` reacts to
// each kind of fact; `advance` moves the machine on in time (forgets old frames, watches
// the readable ones, expires and decides); `searching` looks and requests; `bidding` bids
// and gives up; `tie_break` pairs requests that saw each other.
mod advance;
mod bidding;
mod facts;
mod output;
mod phase;
mod searching;
mod tie_break;

#[cfg(test)]
mod tests;

pub use output::{NegotiatedEvent, NegotiatedOutput, NegotiatedRestartReason};
pub use phase::{NegotiatedMatch, NegotiatedPhase, NegotiatedRole};

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

/// The client's negotiation; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct NegotiatedMachine {
    config: NegotiatedMachineConfig,
    rng: fastrand::Rng,
    store: NegotiatedFactStore,
    phase: NegotiatedPhase,
    category: Option<String>,
    online: bool,
    /// The category and frames we asked the relay for.
    subscribed: Option<(String, Vec<u64>)>,
    /// Subscribed frames the relay sent everything for.
    synced: BTreeSet<u64>,
    /// Requests we no longer bid on, with their frames (`u64::MAX` when unknown).
    given_up: BTreeMap<NegotiatedFactId, u64>,
    departed: BTreeSet<PlayerId>,
    /// Our bids: bid → (request, its frame).
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

    /// Players the relay reported gone (and who did not post since).
    pub fn departed_players(&self) -> &BTreeSet<PlayerId> {
        &self.departed
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
        let request = self.current_request();
        if let Some(request) = request
            && self.online
        {
            self.post(NegotiatedFact::Cancel(NegotiatedCancel { request }));
        }
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
        if author == self.config.me {
            return;
        }
        self.departed.insert(author);
        if let NegotiatedPhase::Bidding {
            request, requester, ..
        } = self.phase
            && requester == author
        {
            self.abandon_bid(request, NegotiatedRestartReason::RequestClosed);
        }
    }

    /// Our open request, when requesting.
    fn current_request(&self) -> Option<NegotiatedFactId> {
        match self.phase {
            NegotiatedPhase::Requesting { request, .. } => Some(request),
            _ => None,
        }
    }
}
