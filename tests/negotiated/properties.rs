//! Property tests of the pure core: the client state machine on arbitrary input, and
//! whole crowds of machines negotiating through the relay core over a simulated network
//! with random delays, start times and clock errors.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use bevy_atomic_matchmaking::negotiated::core::fact::*;
use bevy_atomic_matchmaking::negotiated::core::frame::NegotiatedFrames;
use bevy_atomic_matchmaking::negotiated::core::machine::*;
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NegotiatedClientMessage, NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::negotiated::core::relay_core::NegotiatedRelayCore;
use bevy_atomic_matchmaking::shared::codec;
use bevy_atomic_matchmaking::shared::player::PlayerId;

const CATEGORY: &str = "duel";

fn machine(me: PlayerId, frame_ms: u64, bid_timeout_ms: u64, seed: u64) -> NegotiatedMachine {
    NegotiatedMachine::new(NegotiatedMachineConfig {
        me,
        frames: NegotiatedFrames::new(Duration::from_millis(frame_ms)),
        bid_timeout: Duration::from_millis(bid_timeout_ms),
        seed,
    })
}

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
    /// A bid by `author` on the n-th request known (ours included).
    Bid {
        author: PlayerId,
        nth: usize,
    },
    /// An accept / reject / cancel by `author` of the n-th request, naming the m-th bid.
    Answer {
        author: PlayerId,
        kind: u8,
        nth: usize,
        mth: usize,
    },
    /// A bid by `author` on our open request, if we have one.
    BidOnOurs {
        author: PlayerId,
    },
    /// An answer to our outstanding bid, by its requester (or by a forger when `forged`).
    AnswerOurs {
        accept: bool,
        forged: bool,
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
        3 => (0u64..5, 0usize..8).prop_map(|(author, nth)| Input::Bid { author, nth }),
        3 => (0u64..5, 0u8..3, 0usize..8, 0usize..8).prop_map(|(author, kind, nth, mth)| Input::Answer { author, kind, nth, mth }),
        3 => (1u64..5).prop_map(|author| Input::BidOnOurs { author }),
        3 => (any::<bool>(), proptest::bool::weighted(0.2)).prop_map(|(accept, forged)| Input::AnswerOurs { accept, forged }),
    ]
}

/// What a machine did, checked against the algorithm's promises.
#[derive(Default)]
struct Audit {
    accepted: BTreeMap<NegotiatedFactId, NegotiatedFactId>,
    matches_since_search: usize,
}

// regressions beside this file (proptest's default would look for them in
// tests/proptest-regressions/, since this binary's directory has a main.rs)
proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_machine_keeps_its_promises(
        inputs in proptest::collection::vec(arb_input(), 1..120),
        start_searching in proptest::bool::weighted(0.8),
    ) {
        const ME: PlayerId = 0;
        let frame_ms = 1000;
        let frames = NegotiatedFrames::new(Duration::from_millis(frame_ms));
        let mut m = machine(ME, frame_ms, 400, 1);
        let mut now = Duration::from_secs(100);
        let mut requests: Vec<(PlayerId, NegotiatedFactId)> = Vec::new();
        let mut bids: Vec<(PlayerId, NegotiatedFactId, NegotiatedFactId)> = Vec::new();
        let mut audit = Audit::default();
        let mut online = false;
        // most cases start searching right away
        let preamble = if start_searching {
            vec![Input::Online, Input::Search, Input::Synced(1), Input::Synced(0)]
        } else {
            Vec::new()
        };
        for input in preamble.into_iter().chain(inputs) {
            let out = match input {
                Input::Tick(ms) => { now += Duration::from_millis(ms); m.tick(now) }
                Input::Search => {
                    if !m.is_searching() {
                        audit.matches_since_search = 0;
                    }
                    m.search(CATEGORY, now)
                }
                Input::Cancel => m.cancel(now),
                Input::Offline => { online = false; m.offline() }
                Input::Departed(author) => m.departed(author, now),
                Input::Online => { online = true; m.online(now) }
                Input::Synced(back) => {
                    let frame = frames.frame_of(now).saturating_sub(back);
                    m.synced(CATEGORY, frame, now)
                }
                Input::Request { author, frame_back, created_back } => {
                    let fact = NegotiatedFact::Request(NegotiatedRequest {
                        category: CATEGORY.into(),
                        frame: frames.frame_of(now).saturating_sub(frame_back),
                        created_us: (now.as_micros() as u64).saturating_sub(created_back * 1000),
                    });
                    requests.push((author, NegotiatedSignedFact::new(author, fact.clone()).id()));
                    m.receive(author, fact, now)
                }
                Input::Bid { author, nth } => {
                    if requests.is_empty() { continue; }
                    let (_, request) = requests[nth % requests.len()];
                    let fact = NegotiatedFact::Bid(NegotiatedBid { request, created_us: now.as_micros() as u64 });
                    bids.push((author, request, NegotiatedSignedFact::new(author, fact.clone()).id()));
                    m.receive(author, fact, now)
                }
                Input::BidOnOurs { author } => {
                    let NegotiatedPhase::Requesting { request, .. } = m.phase().clone() else { continue };
                    let fact = NegotiatedFact::Bid(NegotiatedBid { request, created_us: now.as_micros() as u64 });
                    bids.push((author, request, NegotiatedSignedFact::new(author, fact.clone()).id()));
                    m.receive(author, fact, now)
                }
                Input::AnswerOurs { accept, forged } => {
                    let NegotiatedPhase::Bidding { bid, request, requester, .. } = m.phase().clone() else { continue };
                    let author = if forged { requester + 1 } else { requester };
                    let fact = if accept {
                        NegotiatedFact::Accept(NegotiatedAccept { request, bid })
                    } else {
                        NegotiatedFact::Reject(NegotiatedReject { request, bid })
                    };
                    let out = m.receive(author, fact, now);
                    if forged {
                        let still = matches!(m.phase(), NegotiatedPhase::Bidding { bid: b, .. } if *b == bid);
                        prop_assert!(still, "a forged answer moved us");
                    }
                    out
                }
                Input::Answer { author, kind, nth, mth } => {
                    if requests.is_empty() || bids.is_empty() { continue; }
                    let (_, request) = requests[nth % requests.len()];
                    let (_, _, bid) = bids[mth % bids.len()];
                    let fact = match kind {
                        0 => NegotiatedFact::Accept(NegotiatedAccept { request, bid }),
                        1 => NegotiatedFact::Reject(NegotiatedReject { request, bid }),
                        _ => NegotiatedFact::Cancel(NegotiatedCancel { request }),
                    };
                    m.receive(author, fact, now)
                }
            };
            for o in out {
                match o {
                    NegotiatedOutput::Send(NegotiatedClientMessage::Post { fact }) => {
                        prop_assert!(online, "posted while offline: {fact:?}");
                        match &fact {
                            NegotiatedFact::Request(r) => {
                                prop_assert_eq!(r.frame, frames.frame_of(now), "requests go to the current frame");
                                requests.push((ME, NegotiatedSignedFact::new(ME, fact.clone()).id()));
                            }
                            NegotiatedFact::Bid(b) => {
                                prop_assert_ne!(m.store().requester(b.request), Some(ME), "bid on our own request");
                                let bidding = matches!(m.phase(), NegotiatedPhase::Bidding { .. });
                                prop_assert!(bidding, "a bid posted outside bidding");
                                bids.push((ME, b.request, NegotiatedSignedFact::new(ME, fact.clone()).id()));
                            }
                            NegotiatedFact::Accept(a) => {
                                prop_assert_eq!(m.store().requester(a.request), Some(ME), "accepting another's request");
                                prop_assert!(audit.accepted.insert(a.request, a.bid).is_none(), "two accepts of one request");
                                let bidder = m.store().get(a.bid).map(|b| b.author);
                                prop_assert!(bidder.is_some() && bidder != Some(ME));
                            }
                            NegotiatedFact::Reject(r) => {
                                prop_assert_eq!(m.store().requester(r.request), Some(ME));
                                prop_assert_ne!(audit.accepted.get(&r.request), Some(&r.bid), "rejecting the accepted bid");
                            }
                            NegotiatedFact::Cancel(c) => {
                                prop_assert_eq!(m.store().requester(c.request), Some(ME), "cancelling another's request");
                            }
                        }
                    }
                    NegotiatedOutput::Send(NegotiatedClientMessage::Subscribe { category, frames: watched }) => {
                        prop_assert_eq!(category, CATEGORY);
                        prop_assert_eq!(watched, frames.readable(now));
                    }
                    NegotiatedOutput::Send(_) => {}
                    NegotiatedOutput::Event(NegotiatedEvent::Matched(found)) => {
                        audit.matches_since_search += 1;
                        prop_assert_eq!(audit.matches_since_search, 1, "two matches in one search");
                        prop_assert_ne!(found.other, ME);
                        prop_assert!(matches!(m.phase(), NegotiatedPhase::Matched(_)));
                    }
                    NegotiatedOutput::Event(NegotiatedEvent::BidPlaced { bid, requester, .. }) => {
                        prop_assert_ne!(requester, ME);
                        let on_it = matches!(m.phase(), NegotiatedPhase::Bidding { bid: b, .. } if *b == bid);
                        prop_assert!(on_it, "bid placed but not bidding on it");
                    }
                    NegotiatedOutput::Event(_) => {}
                }
            }
            match m.phase() {
                NegotiatedPhase::Requesting { request, frame } => {
                    prop_assert_eq!(m.store().requester(*request), Some(ME));
                    prop_assert!(frames.is_live(*frame, m.now()), "an expired request is still open");
                    prop_assert!(!m.store().is_closed(*request));
                }
                NegotiatedPhase::Bidding { bid, request, since, .. } => {
                    prop_assert_eq!(m.store().get(*bid).map(|b| b.author), Some(ME));
                    prop_assert_ne!(m.store().requester(*request), Some(ME));
                    prop_assert!(m.now().saturating_sub(*since) < Duration::from_millis(400), "bid kept past its timeout");
                }
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// a crowd over a simulated network

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Hop {
    ToRelay(PlayerId),
    ToClient(PlayerId),
}

struct Sim {
    relay: NegotiatedRelayCore,
    machines: BTreeMap<PlayerId, NegotiatedMachine>,
    clock_error_us: HashMap<PlayerId, i64>,
    queue: BinaryHeap<Reverse<(u64, u64, Hop, Msg)>>,
    last_delivery: HashMap<Hop, u64>,
    seq: u64,
    rng: fastrand::Rng,
    max_delay_us: u64,
    matches: BTreeMap<PlayerId, Vec<NegotiatedMatch>>,
    events: u64,
}

/// Encoded bytes, as they would travel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Msg(Vec<u8>);

impl Sim {
    fn send(&mut self, now: u64, hop: Hop, msg: Msg) {
        // FIFO per link, like the reliable ordered channel
        let at = (now + self.rng.u64(0..=self.max_delay_us))
            .max(*self.last_delivery.get(&hop).unwrap_or(&0));
        self.last_delivery.insert(hop.clone(), at);
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, hop, msg)));
    }

    fn client_now(&self, id: PlayerId, now: u64) -> Duration {
        Duration::from_micros((now as i64 + self.clock_error_us[&id]).max(0) as u64)
    }

    fn absorb(&mut self, id: PlayerId, now: u64, out: Vec<NegotiatedOutput>) {
        for o in out {
            match o {
                NegotiatedOutput::Send(m) => {
                    self.send(now, Hop::ToRelay(id), Msg(codec::encode(&m)));
                }
                NegotiatedOutput::Event(NegotiatedEvent::Matched(m)) => {
                    self.matches.entry(id).or_default().push(m);
                }
                NegotiatedOutput::Event(_) => self.events += 1,
            }
        }
    }

    fn step(&mut self, now: u64) {
        while let Some(Reverse((at, _, _, _))) = self.queue.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, _, hop, msg)) = self.queue.pop().unwrap();
            match (hop, msg) {
                (Hop::ToRelay(from), Msg(bytes)) => {
                    let m: NegotiatedClientMessage = codec::decode(&bytes).unwrap();
                    let relay_now = Duration::from_micros(now);
                    let out = match m {
                        NegotiatedClientMessage::Subscribe { category, frames } => self
                            .relay
                            .subscribe(from, category, frames)
                            .unwrap_or_default(),
                        NegotiatedClientMessage::Unsubscribe => {
                            self.relay.unsubscribe(from);
                            Vec::new()
                        }
                        NegotiatedClientMessage::Post { fact } => {
                            self.relay.post(from, fact, relay_now).unwrap_or_default()
                        }
                        _ => Vec::new(),
                    };
                    for (to, m) in out {
                        self.send(now, Hop::ToClient(to), Msg(codec::encode(&m)));
                    }
                }
                (Hop::ToClient(to), Msg(bytes)) => {
                    let m: NegotiatedRelayMessage = codec::decode(&bytes).unwrap();
                    let machine = self.machines.get_mut(&to).unwrap();
                    let out = match m {
                        NegotiatedRelayMessage::Fact { author, fact } => {
                            machine.ingest(author, fact)
                        }
                        NegotiatedRelayMessage::Synced { category, frame } => {
                            machine.ingest_synced(&category, frame);
                            Vec::new()
                        }
                        _ => Vec::new(),
                    };
                    self.absorb(to, now, out);
                }
            }
        }
        self.relay.expire(Duration::from_micros(now));
        let ids: Vec<PlayerId> = self.machines.keys().copied().collect();
        for id in ids {
            let t = self.client_now(id, now);
            let out = self.machines.get_mut(&id).unwrap().tick(t);
            self.absorb(id, now, out);
        }
    }
}

fn check_pairs(matches: &BTreeMap<PlayerId, Vec<NegotiatedMatch>>) -> Result<usize, TestCaseError> {
    for (id, ms) in matches {
        prop_assert_eq!(ms.len(), 1, "client {} matched {} times", id, ms.len());
        let m = &ms[0];
        let other = matches.get(&m.other);
        prop_assert!(
            other.is_some(),
            "{} matched {} who never matched",
            id,
            m.other
        );
        let o = &other.unwrap()[0];
        prop_assert_eq!(o.other, *id);
        prop_assert_eq!((o.request, o.bid, o.accept), (m.request, m.bid, m.accept));
        prop_assert_ne!(o.role, m.role);
    }
    Ok(matches.len() / 2)
}

// regressions beside this file (proptest's default would look for them in
// tests/proptest-regressions/, since this binary's directory has a main.rs)
proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
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
        let mut sim = Sim {
            relay: NegotiatedRelayCore::new(NegotiatedFrames::new(Duration::from_millis(frame_ms)), 256),
            machines: BTreeMap::new(),
            clock_error_us: HashMap::new(),
            queue: BinaryHeap::new(),
            last_delivery: HashMap::new(),
            seq: 0,
            rng: fastrand::Rng::with_seed(seed ^ 0x5eed),
            max_delay_us: max_delay_ms * 1000,
            matches: BTreeMap::new(),
            events: 0,
        };
        let start = 50_000_000u64; // relay time 50 s
        let mut starts = BTreeMap::new();
        for id in 1..=n as PlayerId {
            sim.machines.insert(id, machine(id, frame_ms, 1000, seed.wrapping_add(id)));
            sim.clock_error_us.insert(id, rng.i64(-150_000..=150_000));
            starts.insert(id, start + rng.u64(0..=spread_ms * 1000));
        }
        let step = 5_000u64;
        let mut now = start;
        for id in 1..=n as PlayerId {
            let t = sim.client_now(id, now);
            let out = sim.machines.get_mut(&id).unwrap().online(t);
            sim.absorb(id, now, out);
        }
        let deadline = start + 30_000_000;
        while now < deadline && sim.matches.len() < n {
            for (id, at) in &starts {
                if *at >= now && *at < now + step {
                    let t = sim.client_now(*id, now);
                    let out = sim.machines.get_mut(id).unwrap().search(CATEGORY, t);
                    sim.absorb(*id, now, out);
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
        prop_assert_eq!(check_pairs(&sim.matches)?, pairs);
        let requests: BTreeSet<NegotiatedFactId> = sim.matches.values().map(|m| m[0].request).collect();
        prop_assert_eq!(requests.len(), pairs, "one request per pair");
    }
}
