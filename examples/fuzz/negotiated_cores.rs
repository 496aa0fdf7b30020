//! The negotiated mode's pure cores: the relay core fed posts, subscriptions and
//! connections from any author at any time, and the client machine fed anything a relay
//! could send. Facts are drawn as shapes that name ids the case has seen, so that bids,
//! accepts and withdrawals reach the deep rules, and as raw ids.

use std::collections::BTreeSet;
use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::clock::as_us;
use bevy_atomic_matchmaking::negotiated::core::fact::{
    NegotiatedAccept, NegotiatedBid, NegotiatedCancel, NegotiatedFact, NegotiatedFactId,
    NegotiatedReject, NegotiatedRequest, NegotiatedSignedFact,
};
use bevy_atomic_matchmaking::negotiated::core::frame::NegotiatedFrames;
use bevy_atomic_matchmaking::negotiated::core::protocol::NegotiatedRelayMessage;
use bevy_atomic_matchmaking::negotiated::core::relay_core::{
    NegotiatedRelayCore, NegotiatedRelayLimits,
};
use bevy_atomic_matchmaking::shared::codec;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::inputs::{Draw, category, edge_duration, edge_u64};
use crate::target::{Target, count};

/// Authors of the cases, by index: small ids, the varint edges and the largest.
pub const AUTHORS: [u64; 6] = [1, 2, 3, 250, 251, u64::MAX];

/// A fact id: one the case has seen (by index, wrapping), or any.
#[derive(Debug, Clone)]
pub enum IdRef {
    Seen(usize),
    Raw(u64),
}

/// A frame: relative to the current one, or any.
#[derive(Debug, Clone)]
pub enum FrameRef {
    Now(i8),
    Raw(u64),
}

/// A bid's deadline: this long after now, or any.
#[derive(Debug, Clone)]
pub enum DeadlineRef {
    After(Duration),
    Raw(u64),
}

/// A fact to build against what the case has seen. `request: None` is the bid's own
/// request.
#[derive(Debug, Clone)]
pub enum FactShape {
    Request {
        category: String,
        frame: FrameRef,
        created_us: u64,
    },
    Bid {
        request: IdRef,
        created_us: u64,
        deadline: DeadlineRef,
    },
    Accept {
        bid: IdRef,
        request: Option<IdRef>,
    },
    Reject {
        bid: IdRef,
        request: Option<IdRef>,
    },
    Cancel {
        request: IdRef,
    },
    Withdraw {
        bid: IdRef,
        request: Option<IdRef>,
    },
}

fn id_ref() -> impl Strategy<Value = IdRef> + Clone {
    prop_oneof![5 => any::<usize>().prop_map(IdRef::Seen), 1 => edge_u64().prop_map(IdRef::Raw)]
}

/// Frames near the current one mostly.
pub fn frame_ref() -> impl Strategy<Value = FrameRef> + Clone {
    prop_oneof![6 => (-3i8..=3).prop_map(FrameRef::Now), 1 => edge_u64().prop_map(FrameRef::Raw)]
}

/// Any fact shape.
pub fn fact_shape() -> impl Strategy<Value = FactShape> + Clone {
    let deadline = prop_oneof![
        4 => (0u64..5_000).prop_map(|ms| DeadlineRef::After(Duration::from_millis(ms))),
        1 => edge_u64().prop_map(DeadlineRef::Raw),
    ];
    let of_bid = proptest::option::weighted(0.2, id_ref());
    prop_oneof![
        4 => (category(), frame_ref(), edge_u64()).prop_map(|(category, frame, created_us)| {
            FactShape::Request { category, frame, created_us }
        }),
        4 => (id_ref(), edge_u64(), deadline).prop_map(|(request, created_us, deadline)| {
            FactShape::Bid { request, created_us, deadline }
        }),
        3 => (id_ref(), of_bid.clone()).prop_map(|(bid, request)| FactShape::Accept { bid, request }),
        2 => (id_ref(), of_bid.clone()).prop_map(|(bid, request)| FactShape::Reject { bid, request }),
        2 => id_ref().prop_map(|request| FactShape::Cancel { request }),
        2 => (id_ref(), of_bid).prop_map(|(bid, request)| FactShape::Withdraw { bid, request }),
    ]
}

/// The ids a case has seen, to build facts that name them.
#[derive(Debug, Default, Clone)]
pub struct Known {
    requests: Vec<NegotiatedFactId>,
    /// Bids with their request.
    bids: Vec<(NegotiatedFactId, NegotiatedFactId)>,
}

impl Known {
    /// Remembers a fact's id (requests and bids are what others name).
    pub fn learn(&mut self, author: u64, fact: &NegotiatedFact) {
        let id = NegotiatedSignedFact::new(author, fact.clone()).id();
        match fact {
            NegotiatedFact::Request(_) if !self.requests.contains(&id) => self.requests.push(id),
            NegotiatedFact::Bid(b) if !self.bids.iter().any(|(i, _)| *i == id) => {
                self.bids.push((id, b.request));
            }
            _ => {}
        }
    }

    fn request(&self, r: &IdRef) -> NegotiatedFactId {
        match r {
            IdRef::Seen(i) if !self.requests.is_empty() => self.requests[i % self.requests.len()],
            IdRef::Seen(i) => NegotiatedFactId(*i as u64),
            IdRef::Raw(id) => NegotiatedFactId(*id),
        }
    }

    /// A bid and the request it names (or another).
    fn bid(&self, b: &IdRef, request: &Option<IdRef>) -> (NegotiatedFactId, NegotiatedFactId) {
        let (bid, of) = match b {
            IdRef::Seen(i) if !self.bids.is_empty() => self.bids[i % self.bids.len()],
            IdRef::Seen(i) => (NegotiatedFactId(*i as u64), self.request(&IdRef::Seen(*i))),
            IdRef::Raw(id) => (NegotiatedFactId(*id), self.request(&IdRef::Seen(0))),
        };
        (bid, request.as_ref().map_or(of, |r| self.request(r)))
    }

    /// The fact a shape names at relay time `now` on this frame grid.
    pub fn fact(
        &self,
        shape: &FactShape,
        frames: NegotiatedFrames,
        now: Duration,
    ) -> NegotiatedFact {
        match shape {
            FactShape::Request {
                category,
                frame,
                created_us,
            } => {
                let frame = match frame {
                    FrameRef::Now(d) => offset(frames.frame_of(now), *d),
                    FrameRef::Raw(f) => *f,
                };
                NegotiatedFact::Request(NegotiatedRequest {
                    category: category.clone(),
                    frame,
                    created_us: *created_us,
                })
            }
            FactShape::Bid {
                request,
                created_us,
                deadline,
            } => NegotiatedFact::Bid(NegotiatedBid {
                request: self.request(request),
                created_us: *created_us,
                deadline_us: match deadline {
                    DeadlineRef::After(d) => as_us(now.saturating_add(*d)),
                    DeadlineRef::Raw(us) => *us,
                },
            }),
            FactShape::Accept { bid, request } => {
                let (bid, request) = self.bid(bid, request);
                NegotiatedFact::Accept(NegotiatedAccept { request, bid })
            }
            FactShape::Reject { bid, request } => {
                let (bid, request) = self.bid(bid, request);
                NegotiatedFact::Reject(NegotiatedReject { request, bid })
            }
            FactShape::Cancel { request } => {
                NegotiatedFact::Cancel(NegotiatedCancel::request(self.request(request)))
            }
            FactShape::Withdraw { bid, request } => {
                let (bid, request) = self.bid(bid, request);
                NegotiatedFact::Cancel(NegotiatedCancel::withdraw(request, bid))
            }
        }
    }
}

/// `frame + d`, saturating.
pub fn offset(frame: u64, d: i8) -> u64 {
    if d < 0 {
        frame.saturating_sub(u64::from(d.unsigned_abs()))
    } else {
        frame.saturating_add(d as u64)
    }
}

/// Frame durations: short, the default minute, and the edges.
pub fn frame_duration() -> impl Strategy<Value = Duration> + Clone {
    prop_oneof![
        6 => (10u64..3_000).prop_map(Duration::from_millis),
        1 => Just(Duration::from_secs(60)),
        1 => edge_duration(),
    ]
}

/// Relay times: near zero, a Unix-time epoch, and far out.
pub fn relay_time() -> impl Strategy<Value = Duration> + Clone {
    prop_oneof![
        2 => (0u64..10_000).prop_map(Duration::from_millis),
        4 => (1_700_000_000u64..1_800_000_000).prop_map(Duration::from_secs),
        1 => edge_duration(),
    ]
}

/// How far time moves: a frame's worth mostly, sometimes hours or years.
pub fn time_step() -> impl Strategy<Value = Duration> + Clone {
    prop_oneof![
        8 => (0u64..500).prop_map(Duration::from_millis),
        3 => (0u64..10_000).prop_map(Duration::from_millis),
        1 => select(vec![Duration::from_secs(3600), Duration::from_secs(86_400 * 365)]),
        1 => edge_duration(),
    ]
}

/// One call into the relay core (clients by index into [`AUTHORS`]).
#[derive(Debug, Clone)]
pub enum RelayOp {
    Post {
        who: u8,
        fact: FactShape,
    },
    Subscribe {
        who: u8,
        category: String,
        frames: Vec<FrameRef>,
    },
    Unsubscribe(u8),
    Connect(u8),
    Disconnect(u8),
    Advance(Duration),
    Expire,
}

fn relay_op() -> impl Strategy<Value = RelayOp> {
    let who = 0u8..AUTHORS.len() as u8;
    prop_oneof![
        12 => (who.clone(), fact_shape()).prop_map(|(who, fact)| RelayOp::Post { who, fact }),
        4 => (who.clone(), category(), vec(frame_ref(), 0..6))
            .prop_map(|(who, category, frames)| RelayOp::Subscribe { who, category, frames }),
        1 => who.clone().prop_map(RelayOp::Unsubscribe),
        2 => who.clone().prop_map(RelayOp::Connect),
        2 => who.prop_map(RelayOp::Disconnect),
        3 => time_step().prop_map(RelayOp::Advance),
        1 => Just(RelayOp::Expire),
    ]
}

/// The relay core's input.
#[derive(Debug)]
pub struct RelayCoreInput {
    frame: Duration,
    limits: NegotiatedRelayLimits,
    start: Duration,
    ops: Vec<RelayOp>,
}

/// The relay core.
pub struct RelayCore;

impl Target for RelayCore {
    type Input = RelayCoreInput;
    const NAME: &'static str = "relay_core";

    fn generate(draw: &mut Draw) -> RelayCoreInput {
        let limit = prop_oneof![2 => 0usize..6, 1 => Just(1_000usize)];
        let (a, b, c) = draw.value((limit.clone(), limit.clone(), limit));
        RelayCoreInput {
            frame: draw.value(frame_duration()),
            limits: NegotiatedRelayLimits {
                max_facts_per_frame: a,
                max_facts: b,
                max_departed: c,
            },
            start: draw.value(relay_time()),
            ops: draw.value(vec(relay_op(), 1..120)),
        }
    }

    fn execute(input: &RelayCoreInput) {
        let frames = NegotiatedFrames::new(input.frame);
        let mut core = NegotiatedRelayCore::with_limits(frames, input.limits);
        let mut known = Known::default();
        let mut now = input.start;
        for op in &input.ops {
            relay_step(&mut core, &mut known, &mut now, op);
            check_relay_core(&core);
        }
        count("relay_core_facts_stored", core.stats().facts_stored);
    }
}

fn relay_step(core: &mut NegotiatedRelayCore, known: &mut Known, now: &mut Duration, op: &RelayOp) {
    let who = |i: &u8| AUTHORS[*i as usize % AUTHORS.len()];
    match op {
        RelayOp::Post { who: w, fact } => {
            let author = who(w);
            let fact = known.fact(fact, core.frames(), *now);
            known.learn(author, &fact);
            let id = NegotiatedSignedFact::new(author, fact.clone()).id();
            let out = core.post(author, fact, *now);
            check_post(core, author, id, &out);
        }
        RelayOp::Subscribe {
            who: w,
            category,
            frames,
        } => {
            let current = core.frames().frame_of(*now);
            let frames: Vec<u64> = frames
                .iter()
                .map(|f| match f {
                    FrameRef::Now(d) => offset(current, *d),
                    FrameRef::Raw(f) => *f,
                })
                .collect();
            let client = who(w);
            let before = core.watch(client).cloned();
            if let Ok(out) = core.subscribe(client, category.clone(), frames.clone()) {
                let distinct: BTreeSet<u64> = frames.into_iter().collect();
                let kept = before.filter(|w| w.category == *category).map(|w| w.frames);
                let new = distinct.difference(&kept.unwrap_or_default()).count();
                let synced = out
                    .iter()
                    .filter(|(_, m)| matches!(m, NegotiatedRelayMessage::Synced { .. }))
                    .count();
                assert_eq!(synced, new, "one sync per newly watched frame");
                check_outbox(&out);
                assert!(out.iter().all(|(to, _)| *to == client));
            }
        }
        RelayOp::Unsubscribe(w) => core.unsubscribe(who(w)),
        RelayOp::Connect(w) => core.connect(who(w)),
        RelayOp::Disconnect(w) => {
            let out = core.disconnect(who(w));
            check_outbox(&out);
        }
        RelayOp::Advance(dt) => *now = now.saturating_add(*dt),
        RelayOp::Expire => {
            core.expire(*now);
        }
    }
}

/// Every message fits the codec and decodes to itself.
pub fn check_outbox(out: &[(u64, NegotiatedRelayMessage)]) {
    for (_, message) in out {
        let bytes = codec::encode(message);
        assert_eq!(
            codec::decode::<NegotiatedRelayMessage>(&bytes).as_ref(),
            Ok(message)
        );
    }
}

/// A post gets exactly one verdict, to its author, about its id; forwards go to others
/// (only the winning accept goes back to the author, before its refusal).
fn check_post(
    core: &NegotiatedRelayCore,
    author: u64,
    id: NegotiatedFactId,
    out: &[(u64, NegotiatedRelayMessage)],
) {
    check_outbox(out);
    let verdicts: Vec<&NegotiatedRelayMessage> = out
        .iter()
        .filter(|(_, m)| {
            matches!(
                m,
                NegotiatedRelayMessage::Stored { .. } | NegotiatedRelayMessage::Refused { .. }
            )
        })
        .map(|(to, m)| {
            assert_eq!(*to, author, "a verdict to another client");
            m
        })
        .collect();
    match verdicts[..] {
        [NegotiatedRelayMessage::Stored { fact }] => {
            assert_eq!(*fact, id);
            assert!(core.store().contains(id), "stored but not held");
            assert!(
                out.iter().skip(1).all(|(to, _)| *to != author),
                "a forward to the author"
            );
        }
        [NegotiatedRelayMessage::Refused { fact, .. }] => {
            assert_eq!(*fact, id);
            assert!(!core.store().contains(id), "refused but held");
            assert!(out.len() <= 2, "a refusal with forwards: {out:?}");
        }
        _ => panic!("a post got {} verdicts: {out:?}", verdicts.len()),
    }
}

/// What the relay core holds agrees with its counters and limits.
fn check_relay_core(core: &NegotiatedRelayCore) {
    let stats = core.stats();
    let limits = core.limits();
    let held = core.store().len() as u64;
    assert_eq!(stats.facts_stored - stats.facts_expired, held, "{stats:?}");
    assert!(held <= 2 * limits.max_facts as u64, "{held} facts held");
    assert!(core.departed().len() <= limits.max_departed);
    for author in core.departed() {
        assert!(
            core.store()
                .by_author(*author)
                .any(|f| f.as_request().is_some()),
            "departed {author} has no request held"
        );
    }
    for (frame, _) in core.store().frames() {
        for fact in core.store().facts_in(frame) {
            assert!(core.store().count_by(fact.author, frame) <= limits.max_facts_per_frame);
        }
    }
}
