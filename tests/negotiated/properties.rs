//! Property tests of the pure core: the client state machine on arbitrary input
//! (including the relay's verdicts on its posts, in post order), and whole crowds of
//! machines negotiating through the relay core over a simulated network with random
//! delays, start times and clock errors.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use bevy_atomic_matchmaking::negotiated::core::fact::*;
use bevy_atomic_matchmaking::negotiated::core::frame::NegotiatedFrames;
use bevy_atomic_matchmaking::negotiated::core::machine::*;
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NegotiatedClientMessage, NegotiatedErrorKind,
};
use bevy_atomic_matchmaking::shared::player::PlayerId;

use crate::sim::{CATEGORY, Sim, check_mutual, machine, requests};

// ---------------------------------------------------------------------------------------
// one machine, arbitrary input

#[derive(Debug, Clone)]
enum Input {
    Tick(u64),
    Search,
    Cancel,
    Offline,
    Online,
    /// The relay reports a player gone.
    Departed(PlayerId),
    Synced(u64),
    /// A request by another player, in a frame relative to now.
    Request {
        author: PlayerId,
        frame_back: u64,
        created_back: u64,
    },
    /// A bid by `author` on the n-th request known (ours included), valid for `ms`.
    Bid {
        author: PlayerId,
        nth: usize,
        ms: u64,
    },
    /// An accept / reject / cancel / withdrawal by `author` of the n-th request, naming
    /// the m-th bid.
    Answer {
        author: PlayerId,
        kind: u8,
        nth: usize,
        mth: usize,
    },
    /// A bid by `author` on our open request, if we have one.
    BidOnOurs {
        author: PlayerId,
        ms: u64,
    },
    /// An answer to our outstanding bid, by its requester (or by a forger when `forged`).
    AnswerOurs {
        accept: bool,
        forged: bool,
    },
    /// The relay's verdict on our oldest post still without one.
    Verdict {
        stored: bool,
        kind: u8,
    },
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (0u64..700).prop_map(Input::Tick),
        1 => Just(Input::Search),
        1 => Just(Input::Cancel),
        1 => Just(Input::Offline),
        1 => Just(Input::Online),
        1 => (1u64..5).prop_map(Input::Departed),
        2 => (0u64..2).prop_map(Input::Synced),
        3 => (1u64..5, 0u64..3, 0u64..3000).prop_map(|(author, frame_back, created_back)| Input::Request { author, frame_back, created_back }),
        3 => (0u64..5, 0usize..8, 0u64..1000).prop_map(|(author, nth, ms)| Input::Bid { author, nth, ms }),
        3 => (0u64..5, 0u8..4, 0usize..8, 0usize..8).prop_map(|(author, kind, nth, mth)| Input::Answer { author, kind, nth, mth }),
        3 => (1u64..5, 0u64..1000).prop_map(|(author, ms)| Input::BidOnOurs { author, ms }),
        3 => (any::<bool>(), proptest::bool::weighted(0.2)).prop_map(|(accept, forged)| Input::AnswerOurs { accept, forged }),
        6 => (proptest::bool::weighted(0.7), 0u8..4).prop_map(|(stored, kind)| Input::Verdict { stored, kind }),
    ]
}

const ME: PlayerId = 0;
const FRAME_MS: u64 = 1000;
const BID_TIMEOUT: Duration = Duration::from_millis(400);

/// The world around one machine: time, connection, the facts posted so far, and what
/// the machine did, checked against the algorithm's promises.
struct World {
    m: NegotiatedMachine,
    frames: NegotiatedFrames,
    now: Duration,
    online: bool,
    requests: Vec<NegotiatedFactId>,
    /// Our requests.
    mine: BTreeSet<NegotiatedFactId>,
    bids: Vec<(NegotiatedFactId, NegotiatedFactId)>,
    /// Our posts without a verdict, oldest first (lost with the connection).
    in_flight: VecDeque<(NegotiatedFactId, NegotiatedFact)>,
    /// Our accepts the relay did not refuse: request → bid.
    accepted: BTreeMap<NegotiatedFactId, NegotiatedFactId>,
    /// Our accepts the relay stored.
    stored_accepts: Vec<NegotiatedFactId>,
    matches_since_search: usize,
}

/// Why the last input happened: what a match may rest on.
enum Cause {
    /// The relay stored this post of ours.
    Stored(NegotiatedFactId),
    /// This fact arrived.
    Fact(PlayerId, NegotiatedFact),
    Other,
}

impl World {
    fn new() -> Self {
        Self {
            m: machine(ME, FRAME_MS, BID_TIMEOUT.as_millis() as u64, 1),
            frames: NegotiatedFrames::new(Duration::from_millis(FRAME_MS)),
            now: Duration::from_secs(100),
            online: false,
            requests: Vec::new(),
            mine: BTreeSet::new(),
            bids: Vec::new(),
            in_flight: VecDeque::new(),
            accepted: BTreeMap::new(),
            stored_accepts: Vec::new(),
            matches_since_search: 0,
        }
    }

    fn us(&self) -> u64 {
        self.now.as_micros() as u64
    }

    fn fact(&mut self, author: PlayerId, fact: NegotiatedFact) -> (Vec<NegotiatedOutput>, Cause) {
        let out = self.m.receive(author, fact.clone(), self.now);
        (out, Cause::Fact(author, fact))
    }

    fn bid(&mut self, author: PlayerId, request: NegotiatedFactId, ms: u64) -> NegotiatedFact {
        let fact = NegotiatedFact::Bid(NegotiatedBid {
            request,
            created_us: self.us(),
            deadline_us: self.us() + ms * 1000,
        });
        let id = NegotiatedSignedFact::new(author, fact.clone()).id();
        self.bids.push((request, id));
        fact
    }

    /// Feeds one input; returns what the machine said and why.
    fn feed(&mut self, input: Input) -> Option<(Vec<NegotiatedOutput>, Cause)> {
        let now = self.now;
        let out = match input {
            Input::Tick(ms) => {
                self.now += Duration::from_millis(ms);
                self.m.tick(self.now)
            }
            Input::Search => {
                if !self.m.is_searching() {
                    self.matches_since_search = 0;
                }
                self.m.search(CATEGORY, now)
            }
            Input::Cancel => self.m.cancel(now),
            Input::Offline => {
                self.online = false;
                self.in_flight.clear();
                self.m.offline()
            }
            Input::Online => {
                self.online = true;
                self.m.online(now)
            }
            Input::Departed(author) => self.m.departed(author, now),
            Input::Synced(back) => {
                let frame = self.frames.frame_of(now).saturating_sub(back);
                self.m.synced(CATEGORY, frame, now)
            }
            Input::Request {
                author,
                frame_back,
                created_back,
            } => {
                let fact = NegotiatedFact::Request(NegotiatedRequest {
                    category: CATEGORY.into(),
                    frame: self.frames.frame_of(now).saturating_sub(frame_back),
                    created_us: self.us().saturating_sub(created_back * 1000),
                });
                self.requests
                    .push(NegotiatedSignedFact::new(author, fact.clone()).id());
                return Some(self.fact(author, fact));
            }
            input => return self.feed_answers(input),
        };
        Some((out, Cause::Other))
    }

    /// The inputs about bids, answers and verdicts.
    fn feed_answers(&mut self, input: Input) -> Option<(Vec<NegotiatedOutput>, Cause)> {
        match input {
            Input::Bid { author, nth, ms } => {
                let request = *self.requests.get(nth % self.requests.len().max(1))?;
                let fact = self.bid(author, request, ms);
                Some(self.fact(author, fact))
            }
            Input::BidOnOurs { author, ms } => {
                let NegotiatedPhase::Requesting { request, .. } = *self.m.phase() else {
                    return None;
                };
                let fact = self.bid(author, request, ms);
                Some(self.fact(author, fact))
            }
            Input::AnswerOurs { accept, forged } => self.answer_ours(accept, forged),
            Input::Answer {
                author,
                kind,
                nth,
                mth,
            } => {
                let request = *self.requests.get(nth % self.requests.len().max(1))?;
                let (_, bid) = *self.bids.get(mth % self.bids.len().max(1))?;
                let fact = match kind {
                    0 => NegotiatedFact::Accept(NegotiatedAccept { request, bid }),
                    1 => NegotiatedFact::Reject(NegotiatedReject { request, bid }),
                    2 => NegotiatedFact::Cancel(NegotiatedCancel::request(request)),
                    _ => NegotiatedFact::Cancel(NegotiatedCancel::withdraw(request, bid)),
                };
                Some(self.fact(author, fact))
            }
            Input::Verdict { stored, kind } => self.verdict(stored, kind),
            _ => unreachable!("handled by feed"),
        }
    }

    /// The requester (or a forger) answers the bid we wait on (or withdraw).
    fn answer_ours(
        &mut self,
        accept: bool,
        forged: bool,
    ) -> Option<(Vec<NegotiatedOutput>, Cause)> {
        let (bid, request, requester) = match *self.m.phase() {
            NegotiatedPhase::Bidding {
                bid,
                request,
                requester,
                ..
            }
            | NegotiatedPhase::Withdrawing {
                bid,
                request,
                requester,
                ..
            } => (bid, request, requester),
            _ => return None,
        };
        let author = if forged { requester + 1 } else { requester };
        let fact = if accept {
            NegotiatedFact::Accept(NegotiatedAccept { request, bid })
        } else {
            NegotiatedFact::Reject(NegotiatedReject { request, bid })
        };
        let before = self.m.phase().clone();
        let result = self.fact(author, fact);
        if forged {
            assert_eq!(self.m.phase(), &before, "a forged answer moved us");
        }
        Some(result)
    }

    /// The relay's verdict on our oldest post without one.
    fn verdict(&mut self, stored: bool, kind: u8) -> Option<(Vec<NegotiatedOutput>, Cause)> {
        let (id, fact) = self.in_flight.pop_front()?;
        if stored {
            if let NegotiatedFact::Accept(_) = fact {
                self.stored_accepts.push(id);
            }
            return Some((self.m.stored(id, self.now), Cause::Stored(id)));
        }
        // a refused accept ends that accept only: a duplicate posted again on reconnecting
        // may be refused after the machine moved on to accept another bid
        if let NegotiatedFact::Accept(a) = &fact
            && self.accepted.get(&a.request) == Some(&a.bid)
        {
            self.accepted.remove(&a.request);
        }
        let kind = [
            NegotiatedErrorKind::TooManyFacts,
            NegotiatedErrorKind::BidWithdrawn,
            NegotiatedErrorKind::UnknownRequest,
            NegotiatedErrorKind::FrameOutOfRange,
        ][kind as usize % 4];
        Some((self.m.refused(id, kind, self.now), Cause::Other))
    }

    /// Checks one post of ours.
    fn check_post(&mut self, fact: NegotiatedFact) -> Result<(), TestCaseError> {
        prop_assert!(self.online, "posted while offline: {:?}", fact);
        let id = NegotiatedSignedFact::new(ME, fact.clone()).id();
        let store = self.m.store();
        match &fact {
            NegotiatedFact::Request(r) => {
                let current = self.frames.frame_of(self.now);
                prop_assert_eq!(r.frame, current, "requests go to the current frame");
                self.requests.push(id);
                self.mine.insert(id);
            }
            NegotiatedFact::Bid(b) => {
                prop_assert!(!self.mine.contains(&b.request), "bid on our own request");
                let bidding = matches!(self.m.phase(), NegotiatedPhase::Bidding { .. });
                prop_assert!(bidding, "a bid posted outside bidding");
                prop_assert_eq!(b.deadline_us, (self.now + BID_TIMEOUT).as_micros() as u64);
                self.bids.push((b.request, id));
            }
            NegotiatedFact::Accept(a) => {
                prop_assert!(
                    self.mine.contains(&a.request),
                    "accepting another's request"
                );
                match self.accepted.insert(a.request, a.bid) {
                    // posted again after a lost connection: the same accept
                    Some(earlier) => prop_assert_eq!(earlier, a.bid, "two live accepts"),
                    None => {
                        let bidder = store.get(a.bid).map(|b| b.author);
                        prop_assert!(bidder.is_some() && bidder != Some(ME));
                    }
                }
            }
            NegotiatedFact::Reject(r) => {
                prop_assert!(
                    self.mine.contains(&r.request),
                    "rejecting on another's request"
                );
                let accepted = self.accepted.get(&r.request);
                prop_assert_ne!(accepted, Some(&r.bid), "rejecting the accepted bid");
            }
            NegotiatedFact::Cancel(c) => match c.bid {
                None => prop_assert!(self.mine.contains(&c.request), "cancelling another's"),
                Some(bid) => {
                    let ours = matches!(self.m.phase(), NegotiatedPhase::Withdrawing { bid: b, .. } if *b == bid);
                    prop_assert!(ours, "withdrawing a bid we do not wait on");
                }
            },
        }
        self.in_flight.push_back((id, fact));
        Ok(())
    }

    /// Checks a match: at most one per search, and only on the relay's word.
    fn check_match(&mut self, found: &NegotiatedMatch, cause: &Cause) -> Result<(), TestCaseError> {
        self.matches_since_search += 1;
        prop_assert_eq!(self.matches_since_search, 1, "two matches in one search");
        prop_assert_ne!(found.other, ME);
        prop_assert!(matches!(self.m.phase(), NegotiatedPhase::Matched(_)));
        match (found.role, cause) {
            (NegotiatedRole::Requester, Cause::Stored(id)) => {
                prop_assert_eq!(*id, found.accept, "matched on another post's verdict");
            }
            (NegotiatedRole::Bidder, Cause::Fact(author, NegotiatedFact::Accept(a))) => {
                prop_assert_eq!(*author, found.other);
                prop_assert_eq!((a.request, a.bid), (found.request, found.bid));
            }
            _ => prop_assert!(
                false,
                "matched as {:?} without the relay's word",
                found.role
            ),
        }
        Ok(())
    }

    fn check_outputs(
        &mut self,
        out: Vec<NegotiatedOutput>,
        cause: &Cause,
    ) -> Result<(), TestCaseError> {
        for o in out {
            match o {
                NegotiatedOutput::Send(NegotiatedClientMessage::Post { fact }) => {
                    self.check_post(fact)?
                }
                NegotiatedOutput::Send(NegotiatedClientMessage::Subscribe {
                    category,
                    frames: watched,
                }) => {
                    prop_assert_eq!(category, CATEGORY);
                    prop_assert_eq!(watched, self.frames.readable(self.now));
                }
                NegotiatedOutput::Send(_) => {}
                NegotiatedOutput::Event(NegotiatedEvent::Matched(found)) => {
                    self.check_match(&found, cause)?
                }
                NegotiatedOutput::Event(NegotiatedEvent::BidPlaced { bid, requester, .. }) => {
                    prop_assert_ne!(requester, ME);
                    let on_it = matches!(self.m.phase(), NegotiatedPhase::Bidding { bid: b, .. } if *b == bid);
                    prop_assert!(on_it, "bid placed but not bidding on it");
                }
                NegotiatedOutput::Event(_) => {}
            }
        }
        Ok(())
    }

    /// What must hold between inputs.
    fn check_phase(&self) -> Result<(), TestCaseError> {
        let m = &self.m;
        match m.phase() {
            NegotiatedPhase::Requesting { request, frame } => {
                prop_assert!(self.mine.contains(request), "a request that is not ours");
                prop_assert!(
                    self.frames.is_live(*frame, m.now()),
                    "an expired request is still open"
                );
                prop_assert!(!m.store().is_closed(*request));
            }
            NegotiatedPhase::Bidding {
                request, deadline, ..
            } => {
                prop_assert_ne!(m.store().requester(*request), Some(ME));
                if m.is_online() {
                    prop_assert!(m.now() < *deadline, "bid kept past its deadline");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

// regressions beside this file (proptest's default would look for them in
// tests/proptest-regressions/, since this binary's directory has a main.rs)
proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::cases::cases(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_machine_keeps_its_promises(
        inputs in proptest::collection::vec(arb_input(), 1..120),
        start_searching in proptest::bool::weighted(0.8),
    ) {
        let mut world = World::new();
        // most cases start searching right away
        let preamble = if start_searching {
            vec![Input::Online, Input::Search, Input::Synced(1), Input::Synced(0)]
        } else {
            Vec::new()
        };
        for input in preamble.into_iter().chain(inputs) {
            let Some((out, cause)) = world.feed(input) else { continue };
            world.check_outputs(out, &cause)?;
            world.check_phase()?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// a crowd over a simulated network

proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::cases::cases(48),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Everyone pairs, pairs are mutual and nobody is in two, whatever the delays (up
    /// to 80 ms each way, per-link order kept), start times (within 3 s) and clock errors
    /// (±150 ms after estimation).
    #[test]
    fn crowds_pair_up_over_a_jittery_network(
        pairs in 1usize..7,
        seed in any::<u64>(),
        max_delay_ms in 0u64..80,
        spread_ms in 0u64..3000,
    ) {
        let n = pairs * 2;
        let frame_ms = 2000;
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut sim = Sim::new(frame_ms, seed, max_delay_ms * 1000);
        let start = 50_000_000u64; // relay time 50 s
        let mut starts = BTreeMap::new();
        for id in 1..=n as PlayerId {
            let error = rng.i64(-150_000..=150_000);
            sim.add(machine(id, frame_ms, 1000, seed.wrapping_add(id)), error, start);
            starts.insert(id, start + rng.u64(0..=spread_ms * 1000));
        }
        let step = 5_000u64;
        let mut now = start;
        let deadline = start + 30_000_000;
        while now < deadline && sim.matches.len() < n {
            for (id, at) in &starts {
                if *at >= now && *at < now + step {
                    sim.call(*id, now, |m, t| m.search(CATEGORY, t));
                }
            }
            sim.step(now);
            now += step;
        }
        // let stragglers settle, then check nothing changed
        for _ in 0..400 {
            sim.step(now);
            now += step;
        }
        prop_assert_eq!(sim.matches.len(), n, "only {:?} of {} matched", sim.matches.keys().collect::<Vec<_>>(), n);
        prop_assert_eq!(check_mutual(&sim.matches)?, pairs);
        prop_assert_eq!(requests(&sim.matches).len(), pairs, "one request per pair");
    }
}
