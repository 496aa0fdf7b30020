//! The client's negotiation as a pure state machine: fed facts, relay sync markers and
//! relay time; answers with messages to send and events to report. No game engine, no
//! clock of its own, no I/O:
//! [`NegotiatedClientPlugin`](crate::negotiated::client::NegotiatedClientPlugin) drives it,
//! and tests drive it directly.
//!
//! The algorithm (the one of `docs/design.md`, "Client state machine": the negotiated
//! design plus a tie-break, plus relay verdicts that make every match mutual):
//!
//! 1. **Looking**: once the relay has sent everything it holds for the current and the
//!    prior frame, pick an open request (not accepted, not cancelled, not expired, not
//!    ours, not one we gave up on; at most one per author, its newest) at random and bid
//!    on it; if there is none, post a request to the current frame.
//! 2. **Bidding**: wait for the requester's answer. Accepted: matched. Rejected (or
//!    another bid accepted), or the request cancelled: back to 1. When the bid's deadline
//!    passes (the bid timeout), the request expires or its requester leaves, **withdraw**
//!    the bid and wait for the relay's verdict: if the requester's accept was stored
//!    first, it reaches us before the verdict and we are matched; otherwise the relay
//!    refuses any later accept, and we are back to 1.
//! 3. **Requesting**: accept the first bid that can still be accepted (deadline not
//!    passed, bidder not gone), reject every later one, and count the match only when
//!    the relay's verdict says the accept was stored; if it was refused (the bid was
//!    withdrawn, expired or its bidder left), go on requesting. When the request expires
//!    (its frame is older than the prior frame) without a bid: back to 1.
//!    **Tie-break**: open requests that see each other were posted before either was
//!    seen. Sorted by creation time then content id (the same order for every client),
//!    they pair off from the oldest — (0, 1), (2, 3)... — and the newer of each pair
//!    cancels its request and bids on the older. Two clients that posted at the same
//!    moment pair at once instead of waiting for expiry, and a crowd that posted
//!    together pairs in one round trip.
//! 4. **Matched**: done; bids still arriving on our request are rejected.
//!
//! Every match is mutual: the relay stores at most one of an accept and a withdrawal of
//! a bid (the first), the requester counts the match only when its accept was stored,
//! and the bidder gives up a bid only on the relay's word that no accept was stored
//! before. A connection that drops while an accept or a withdrawal awaits its verdict
//! posts it again when back (the same fact, so the relay's answer is the same).
//! What the relay lost cannot be recovered: if a relay without a journal restarts (or the
//! bidder is away until the request's frame is dropped) between storing an accept and
//! telling both sides, one side may never learn of the match. A relay with a journal
//! gives the same verdicts after a restart.
//!
//! Abandoning a search cancels our open request, or withdraws our bid (matched after
//! all if the accept came first). When the relay reports that a player's connection
//! closed, its requests are no longer bid on (and a bid waiting on one is withdrawn at
//! once instead of at the bid timeout). Time is always taken first: facts that arrive
//! with a later time are judged after whatever expired by then.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::shared::player::{PlayerId, validate_category};

use super::fact::{NegotiatedCancel, NegotiatedFact, NegotiatedFactId};
use super::frame::NegotiatedFrames;
use super::protocol::NegotiatedErrorKind;
use super::store::NegotiatedFactStore;

// By concern: `phase` and `output` are what the machine shows and says; `facts` reacts to
// each kind of fact; `verdicts` to the relay's verdicts on our posts; `connection` to the
// relay connection coming and going; `advance` moves the machine on in time (forgets old
// frames, watches the readable ones, expires and decides); `searching` looks and
// requests; `requesting` accepts bids; `bidding` bids, withdraws and gives up;
// `tie_break` pairs requests that saw each other.
mod advance;
mod bidding;
mod connection;
mod facts;
mod output;
mod phase;
mod requesting;
mod searching;
mod tie_break;
mod verdicts;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_verdicts;

pub use output::{NegotiatedEvent, NegotiatedOutput, NegotiatedRestartReason};
pub use phase::{NegotiatedMatch, NegotiatedPhase, NegotiatedRole};

/// What the machine needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMachineConfig {
    /// Our id (the author the relay stamps on our facts).
    pub me: PlayerId,
    /// The frame grid.
    pub frames: NegotiatedFrames,
    /// How long a bid waits for an answer before we withdraw it (its deadline is this
    /// long after we bid); also how long we wait before posting a request again after
    /// the relay refused one.
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
    /// Our posts awaiting the relay's verdict (they join the store when stored).
    pending: BTreeMap<NegotiatedFactId, NegotiatedFact>,
    /// Bids on our request whose accept the relay refused: not accepted again.
    refused_bids: BTreeSet<NegotiatedFactId>,
    /// No request of ours before this relay time (the relay refused the last one).
    hold_requests_until: Duration,
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
            pending: BTreeMap::new(),
            refused_bids: BTreeSet::new(),
            hold_requests_until: Duration::ZERO,
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

    /// Whether a search is under way (looking, requesting, accepting, bidding or
    /// withdrawing, including a cancel waiting for the relay's verdict).
    pub fn is_searching(&self) -> bool {
        matches!(
            self.phase,
            NegotiatedPhase::Looking
                | NegotiatedPhase::Requesting { .. }
                | NegotiatedPhase::Accepting { .. }
                | NegotiatedPhase::Bidding { .. }
                | NegotiatedPhase::Withdrawing { .. }
        )
    }

    /// Whether the game asked to stop and the machine waits for the relay's verdict on
    /// an accept or a withdrawal before it can say whether it is matched.
    pub fn is_cancelling(&self) -> bool {
        matches!(
            self.phase,
            NegotiatedPhase::Accepting {
                cancelled: true,
                ..
            } | NegotiatedPhase::Withdrawing {
                cancelled: true,
                ..
            }
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

    /// Our posts the relay has not given its verdict on yet.
    pub fn pending(&self) -> impl Iterator<Item = (&NegotiatedFactId, &NegotiatedFact)> {
        self.pending.iter()
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

    /// Starts searching in a category (or, while a cancel of a search in that category
    /// waits for the relay's verdict, carries on with it).
    pub fn search(&mut self, category: &str, now: Duration) -> Vec<NegotiatedOutput> {
        if self.is_cancelling() && self.category.as_deref() == Some(category) {
            self.set_cancelled(false);
        } else if self.is_searching() {
            self.error(
                NegotiatedErrorKind::Unexpected,
                format!(
                    "already searching in {}",
                    self.category.as_deref().unwrap_or("a category")
                ),
            );
        } else if let Err(why) = validate_category(category) {
            self.error(NegotiatedErrorKind::InvalidCategory, why.to_string());
        } else {
            self.category = Some(category.to_owned());
            self.phase = NegotiatedPhase::Looking;
            self.advance(now);
        }
        self.take()
    }

    /// Abandons the search: cancels our open request, or withdraws our bid. While an
    /// accept or a withdrawal of ours waits for the relay's verdict, the search ends with
    /// that verdict: matched if the accept won, cancelled otherwise.
    pub fn cancel(&mut self, now: Duration) -> Vec<NegotiatedOutput> {
        self.expire_to(now);
        match self.phase.clone() {
            _ if !self.is_searching() || self.is_cancelling() => {
                self.error(NegotiatedErrorKind::Unexpected, "not searching".to_owned());
            }
            NegotiatedPhase::Accepting { .. } | NegotiatedPhase::Withdrawing { .. } => {
                self.set_cancelled(true);
            }
            NegotiatedPhase::Bidding { .. } => {
                // offline, the withdrawal is posted again once back online
                self.withdraw(NegotiatedRestartReason::RequestClosed, true);
            }
            NegotiatedPhase::Requesting { request, .. } if self.online => {
                self.post(NegotiatedFact::Cancel(NegotiatedCancel::request(request)));
                self.stop(Some(request));
            }
            _ => self.stop(None),
        }
        self.take()
    }

    /// The search is over without a match: idle, reported as cancelled.
    pub(super) fn stop(&mut self, request: Option<NegotiatedFactId>) {
        self.phase = NegotiatedPhase::Idle;
        self.stop_watching();
        self.event(NegotiatedEvent::Cancelled {
            category: self.category.clone().unwrap_or_default(),
            request,
        });
    }

    /// Marks (or unmarks) a wait for a verdict as the end of the search.
    fn set_cancelled(&mut self, value: bool) {
        if let NegotiatedPhase::Accepting { cancelled, .. }
        | NegotiatedPhase::Withdrawing { cancelled, .. } = &mut self.phase
        {
            *cancelled = value;
        }
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

    /// Time passed: expire and decide.
    pub fn tick(&mut self, now: Duration) -> Vec<NegotiatedOutput> {
        self.advance(now);
        self.take()
    }

    /// Time passed: forget old frames and end what expired by `now` (our request, the
    /// wait on our bid), deciding nothing else. Call it before a batch of
    /// [`ingest`](Self::ingest) calls, so that facts are judged after the time at which
    /// they arrived.
    pub fn pass_time(&mut self, now: Duration) -> Vec<NegotiatedOutput> {
        self.expire_to(now);
        self.take()
    }

    /// Time passes to `now` first, then `input` is handled, then the machine decides.
    fn decide_at(&mut self, now: Duration, input: impl FnOnce(&mut Self)) -> Vec<NegotiatedOutput> {
        self.expire_to(now);
        input(self);
        self.advance(now);
        self.take()
    }

    /// A fact arrived from the relay at `now`, stamped with `author`: time passes first,
    /// then the fact is handled and the machine decides.
    pub fn receive(
        &mut self,
        author: PlayerId,
        fact: NegotiatedFact,
        now: Duration,
    ) -> Vec<NegotiatedOutput> {
        self.decide_at(now, |m| m.handle_fact(author, fact))
    }

    /// Like [`receive`](Self::receive) at the machine's current time, but only reacts to
    /// the fact itself (answers a bid, notes an accept or reject): looking, bidding,
    /// expiry and the tie-break wait for the next [`tick`](Self::tick), so that a batch
    /// of facts that arrived together is judged as a whole.
    pub fn ingest(&mut self, author: PlayerId, fact: NegotiatedFact) -> Vec<NegotiatedOutput> {
        self.handle_fact(author, fact);
        self.take()
    }

    /// The relay stored our post with this id (or already held it).
    pub fn stored(&mut self, fact: NegotiatedFactId, now: Duration) -> Vec<NegotiatedOutput> {
        self.decide_at(now, |m| m.on_stored(fact))
    }

    /// Like [`stored`](Self::stored), deciding nothing until the next [`tick`](Self::tick).
    pub fn ingest_stored(&mut self, fact: NegotiatedFactId) -> Vec<NegotiatedOutput> {
        self.on_stored(fact);
        self.take()
    }

    /// The relay refused our post with this id.
    pub fn refused(
        &mut self,
        fact: NegotiatedFactId,
        kind: NegotiatedErrorKind,
        now: Duration,
    ) -> Vec<NegotiatedOutput> {
        self.decide_at(now, |m| m.on_refused(fact, kind))
    }

    /// Like [`refused`](Self::refused), deciding nothing until the next
    /// [`tick`](Self::tick).
    pub fn ingest_refused(
        &mut self,
        fact: NegotiatedFactId,
        kind: NegotiatedErrorKind,
    ) -> Vec<NegotiatedOutput> {
        self.on_refused(fact, kind);
        self.take()
    }

    /// The relay says `author`'s connection closed: its requests will not be answered.
    /// We stop bidding on them (withdrawing at once a bid waiting on one) until it posts
    /// again.
    pub fn departed(&mut self, author: PlayerId, now: Duration) -> Vec<NegotiatedOutput> {
        self.expire_to(now);
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
        if let NegotiatedPhase::Bidding { requester, .. } = self.phase
            && requester == author
            && self.online
        {
            self.withdraw(NegotiatedRestartReason::RequestClosed, false);
        }
    }

    /// Our open request, when requesting or accepting a bid on it.
    fn current_request(&self) -> Option<NegotiatedFactId> {
        match self.phase {
            NegotiatedPhase::Requesting { request, .. }
            | NegotiatedPhase::Accepting { request, .. } => Some(request),
            _ => None,
        }
    }
}
