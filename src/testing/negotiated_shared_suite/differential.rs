//! [`differential`]: one random sequence of calls, deterministic per seed, applied to two
//! shared stores that must agree on every verdict and every logged event.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::negotiated::core::fact::{NegotiatedFact, NegotiatedFactId, NegotiatedSignedFact};
use crate::negotiated::core::protocol::NegotiatedErrorKind;
use crate::negotiated::core::relay_core::NegotiatedRelayLimits;
use crate::negotiated::core::shared::{
    NegotiatedConnection, NegotiatedLogEvent, NegotiatedLogPosition, NegotiatedSharedStore,
    NegotiatedSharedVerdict,
};
use crate::shared::player::PlayerId;

use super::{
    SUITE_FRAME, accept, at, bid, cancel, connection, frames, id, reject, request_in, us, withdraw,
};

/// The limits of both stores: low, so that full stores and full shares happen.
pub const DIFFERENTIAL_LIMITS: NegotiatedRelayLimits = NegotiatedRelayLimits {
    max_facts_per_frame: 4,
    max_facts: 24,
    max_departed: 100,
};

/// What a verdict says, without its log position (positions differ between stores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedVerdictKind {
    /// Stored.
    Stored,
    /// Already stored.
    Duplicate,
    /// Refused with this kind, after this winner.
    Refused(NegotiatedErrorKind, Option<NegotiatedSignedFact>),
}

impl NegotiatedVerdictKind {
    fn of(verdict: NegotiatedSharedVerdict) -> Self {
        match verdict {
            NegotiatedSharedVerdict::Stored(_) => Self::Stored,
            NegotiatedSharedVerdict::Duplicate(_) => Self::Duplicate,
            NegotiatedSharedVerdict::Refused(refusal, _) => {
                Self::Refused(refusal.kind, refusal.winner)
            }
        }
    }
}

/// What a differential run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegotiatedDifferentialReport {
    /// Posts made.
    pub posts: usize,
    /// Posts stored.
    pub stored: usize,
    /// Posts found already stored.
    pub duplicates: usize,
    /// Refusals by kind.
    pub refused: BTreeMap<String, usize>,
    /// Refusals that came with the fact that won (a withdrawal after the accept).
    pub winners: usize,
    /// Log events seen.
    pub events: usize,
    /// Departures logged.
    pub departures: usize,
}

/// One call.
#[derive(Debug, Clone)]
enum Call {
    Post(PlayerId, NegotiatedFact),
    Connect(PlayerId, NegotiatedConnection),
    Disconnect(PlayerId, NegotiatedConnection),
}

/// The random calls: facts on the requests and bids stored lately, by a few authors,
/// mostly entitled, sometimes forged or naming the wrong thing.
struct Calls {
    rng: fastrand::Rng,
    now: Duration,
    /// (requester, id, frame) of the requests stored.
    requests: Vec<(PlayerId, NegotiatedFactId, u64)>,
    /// (bidder, id, request) of the bids stored.
    bids: Vec<(PlayerId, NegotiatedFactId, NegotiatedFactId, u64)>,
    posts: Vec<(PlayerId, NegotiatedFact)>,
    /// Each player's last connection.
    links: BTreeMap<PlayerId, NegotiatedConnection>,
    created: u64,
}

const AUTHORS: u64 = 4;

impl Calls {
    fn author(&mut self) -> PlayerId {
        self.rng.u64(1..=AUTHORS)
    }

    /// Mostly `entitled`, sometimes anyone.
    fn mostly(&mut self, entitled: PlayerId) -> PlayerId {
        if self.rng.u8(..10) < 8 {
            entitled
        } else {
            self.author()
        }
    }

    /// A request stored lately, mostly one whose frame is still kept.
    fn some_request(&mut self) -> (PlayerId, NegotiatedFactId) {
        let oldest = frames().oldest_kept(self.now);
        let kept: Vec<_> = self
            .requests
            .iter()
            .rev()
            .take(6)
            .filter(|r| r.2 >= oldest)
            .collect();
        let pick = match (kept.len(), self.rng.u8(..20)) {
            (_, 0) => None,
            (0, _) | (_, 1..=2) => {
                let n = self.requests.len();
                (n > 0).then(|| self.requests[self.rng.usize(n.saturating_sub(4)..n)])
            }
            (n, _) => Some(*kept[self.rng.usize(..n)]),
        };
        match pick {
            Some((requester, request, _)) => (requester, request),
            None => (1, NegotiatedFactId(self.rng.u64(..))),
        }
    }

    /// The verdict on `call`: a request or bid stored joins the pool facts are about.
    fn decided(&mut self, call: &Call, verdict: &NegotiatedVerdictKind) {
        let (Call::Post(author, fact), NegotiatedVerdictKind::Stored) = (call, verdict) else {
            return;
        };
        match fact {
            NegotiatedFact::Request(r) => self.requests.push((*author, id(*author, fact), r.frame)),
            NegotiatedFact::Bid(b) => {
                let frame = self
                    .requests
                    .iter()
                    .find(|r| r.1 == b.request)
                    .map_or(0, |r| r.2);
                self.bids
                    .push((*author, id(*author, fact), b.request, frame));
            }
            _ => {}
        }
    }

    /// A bid stored lately, mostly on a request whose frame is still kept.
    fn some_bid(&mut self) -> Option<(PlayerId, NegotiatedFactId, NegotiatedFactId)> {
        let oldest = frames().oldest_kept(self.now);
        let kept: Vec<_> = self
            .bids
            .iter()
            .rev()
            .take(10)
            .filter(|b| b.3 >= oldest)
            .collect();
        let (bidder, bid, request, _) = match kept.len() {
            n if n > 0 && self.rng.u8(..10) < 9 => *kept[self.rng.usize(..n)],
            _ => *self
                .bids
                .get(self.bids.len().checked_sub(1 + self.rng.usize(..3))?)?,
        };
        Some((bidder, bid, request))
    }

    /// What an accept or reject names: a bid stored lately with its request and requester
    /// (mostly), or a request and some bid.
    fn answered(&mut self) -> (PlayerId, NegotiatedFactId, NegotiatedFactId) {
        if self.rng.u8(..10) < 6
            && let Some((_, bid, request)) = self.some_bid()
        {
            let requester = self.requests.iter().find(|(_, r, _)| *r == request);
            return (requester.map_or(1, |(a, _, _)| *a), request, bid);
        }
        let (requester, request) = self.some_request();
        (requester, request, self.bid_for(request))
    }

    /// A bid on the request (mostly), or on another one, or made up.
    fn bid_for(&mut self, request: NegotiatedFactId) -> NegotiatedFactId {
        let on_it: Vec<NegotiatedFactId> = self
            .bids
            .iter()
            .filter(|bid| bid.2 == request)
            .map(|bid| bid.1)
            .collect();
        match self.rng.u8(..10) {
            0 => NegotiatedFactId(self.rng.u64(..)),
            1 => self.some_bid().map_or(request, |(_, b, _)| b),
            _ if !on_it.is_empty() => on_it[self.rng.usize(..on_it.len())],
            _ => self.some_bid().map_or(request, |(_, b, _)| b),
        }
    }

    fn advance(&mut self) {
        let frame_ms = SUITE_FRAME.as_millis() as u64;
        let step = match self.rng.u8(..40) {
            0 => self.rng.u64(frame_ms..2 * frame_ms),
            _ => self.rng.u64(..frame_ms / 16),
        };
        self.now += Duration::from_millis(step);
    }

    fn request(&mut self) -> Call {
        let author = self.author();
        let current = frames().frame_of(self.now);
        let frame = match self.rng.u8(..20) {
            0 => current.saturating_sub(2),
            1 => current + 2,
            2..=3 => current.saturating_sub(1),
            4..=5 => current + 1,
            _ => current,
        };
        self.created += 1;
        let category = if self.rng.u8(..20) == 0 {
            "bad category"
        } else {
            "duel"
        };
        let mut fact = request_in(category, self.now, self.created);
        if let NegotiatedFact::Request(r) = &mut fact {
            r.frame = frame;
        }
        Call::Post(author, fact)
    }

    fn bid(&mut self) -> Call {
        let (requester, request) = self.some_request();
        let mut author = self.author();
        if author == requester && self.rng.bool() {
            author = author % AUTHORS + 1;
        }
        self.created += 1;
        let deadline = self.now + Duration::from_millis(self.rng.u64(..3000));
        let deadline = deadline.saturating_sub(Duration::from_millis(500));
        Call::Post(author, bid(request, self.created, deadline))
    }

    fn post(&mut self) -> Call {
        let oldest = frames().oldest_kept(self.now);
        let live = self
            .requests
            .last()
            .is_some_and(|(_, _, frame)| *frame >= oldest);
        match self.rng.u8(..100) {
            n if !live && n < 50 => self.request(),
            0..=17 => self.request(),
            18..=37 => self.bid(),
            38..=53 => {
                let (requester, request, bid) = self.answered();
                Call::Post(self.mostly(requester), accept(request, bid))
            }
            54..=61 => {
                let (requester, request, bid) = self.answered();
                Call::Post(self.mostly(requester), reject(request, bid))
            }
            62..=66 => {
                let (requester, request) = self.some_request();
                Call::Post(self.mostly(requester), cancel(request))
            }
            67..=80 => match self.some_bid() {
                Some((bidder, bid, request)) => {
                    let request = if self.rng.u8(..10) == 0 {
                        self.some_request().1
                    } else {
                        request
                    };
                    Call::Post(self.mostly(bidder), withdraw(request, bid))
                }
                None => self.bid(),
            },
            _ => match self.posts.len() {
                0 => self.request(),
                n => {
                    let (author, fact) =
                        self.posts[self.rng.usize(n.saturating_sub(10)..n)].clone();
                    Call::Post(author, fact)
                }
            },
        }
    }

    fn next(&mut self) -> Call {
        self.advance();
        let link = |rng: &mut fastrand::Rng| {
            connection(
                if rng.bool() { "relay-a" } else { "relay-b" },
                rng.u64(1..=2),
            )
        };
        match self.rng.u8(..100) {
            0..=9 => {
                let (player, link) = (self.author(), link(&mut self.rng));
                self.links.insert(player, link.clone());
                Call::Connect(player, link)
            }
            10..=19 => {
                let player = self.author();
                let link = match self.links.get(&player) {
                    Some(latest) if self.rng.u8(..10) < 7 => latest.clone(),
                    _ => link(&mut self.rng),
                };
                Call::Disconnect(player, link)
            }
            _ => {
                let call = self.post();
                if let Call::Post(author, fact) = &call {
                    self.posts.push((*author, fact.clone()));
                }
                call
            }
        }
    }
}

/// The log events after `cursor`, moving it.
fn new_events<S: NegotiatedSharedStore>(
    store: &mut S,
    cursor: &mut NegotiatedLogPosition,
) -> Vec<NegotiatedLogEvent> {
    let entries = store
        .read(*cursor, usize::MAX, Duration::ZERO)
        .unwrap_or_else(|e| panic!("read after {cursor}: {e}"));
    if let Some(last) = entries.last() {
        *cursor = last.position;
    }
    entries.into_iter().map(|e| e.event).collect()
}

/// One call to a store: the verdict's kind for a post.
fn call<S: NegotiatedSharedStore>(
    store: &mut S,
    call: &Call,
    now: Duration,
) -> Option<NegotiatedVerdictKind> {
    match call {
        Call::Post(author, fact) => {
            let verdict = store.post(*author, fact, now);
            Some(NegotiatedVerdictKind::of(
                verdict.unwrap_or_else(|e| panic!("{call:?}: {e}")),
            ))
        }
        Call::Connect(player, link) => {
            store
                .connect(*player, link, now)
                .unwrap_or_else(|e| panic!("{call:?}: {e}"));
            None
        }
        Call::Disconnect(player, link) => {
            store
                .disconnect(*player, link, now)
                .unwrap_or_else(|e| panic!("{call:?}: {e}"));
            None
        }
    }
}

/// Applies `steps` random calls (deterministic per `seed`) to `a` and `b`, two fresh
/// stores on the suite's grid with [`DIFFERENTIAL_LIMITS`], with relay time moving forward across
/// frame boundaries; panics at the first call where their verdict kinds or the events
/// they log differ.
pub fn differential<A: NegotiatedSharedStore, B: NegotiatedSharedStore>(
    a: &mut A,
    b: &mut B,
    seed: u64,
    steps: usize,
) -> NegotiatedDifferentialReport {
    let mut calls = Calls {
        rng: fastrand::Rng::with_seed(seed),
        now: at(0),
        requests: Vec::new(),
        bids: Vec::new(),
        posts: Vec::new(),
        links: BTreeMap::new(),
        created: us(at(0)),
    };
    let mut report = NegotiatedDifferentialReport::default();
    let (mut cursor_a, mut cursor_b) = (NegotiatedLogPosition::START, NegotiatedLogPosition::START);
    for step in 0..steps {
        let next = calls.next();
        let now = calls.now;
        let (verdict_a, verdict_b) = (call(a, &next, now), call(b, &next, now));
        assert_eq!(
            verdict_a, verdict_b,
            "seed {seed}, step {step}: {next:?} at {now:?}"
        );
        if let Some(verdict) = &verdict_a {
            calls.decided(&next, verdict);
        }
        let (events_a, events_b) = (new_events(a, &mut cursor_a), new_events(b, &mut cursor_b));
        assert_eq!(
            events_a, events_b,
            "seed {seed}, step {step}: the log after {next:?}"
        );
        report.events += events_a.len();
        report.departures += events_a
            .iter()
            .filter(|e| matches!(e, NegotiatedLogEvent::Departed(_)))
            .count();
        match verdict_a {
            None => {}
            Some(kind) => {
                report.posts += 1;
                match kind {
                    NegotiatedVerdictKind::Stored => report.stored += 1,
                    NegotiatedVerdictKind::Duplicate => report.duplicates += 1,
                    NegotiatedVerdictKind::Refused(kind, winner) => {
                        report.winners += usize::from(winner.is_some());
                        *report.refused.entry(format!("{kind:?}")).or_default() += 1;
                    }
                }
            }
        }
    }
    report
}
