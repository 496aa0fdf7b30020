//! The negotiated client machine fed anything a relay could send: facts by any author
//! (its own id included) naming what it posted or saw, verdicts on its posts or on
//! nothing, departures, sync markers of any frame, connection changes and time jumps.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::fact::{NegotiatedFact, NegotiatedFactId};
use bevy_atomic_matchmaking::negotiated::core::frame::NegotiatedFrames;
use bevy_atomic_matchmaking::negotiated::core::machine::{
    NegotiatedEvent, NegotiatedMachine, NegotiatedMachineConfig, NegotiatedOutput, NegotiatedPhase,
};
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NegotiatedClientMessage, NegotiatedErrorKind,
};
use bevy_atomic_matchmaking::shared::codec;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::inputs::{Draw, category, edge_duration, edge_u64, negotiated_error_kind};
use crate::negotiated_cores::{
    AUTHORS, FactShape, Known, fact_shape, frame_duration, relay_time, time_step,
};
use crate::target::{Target, count};

/// One input to the machine. `ingest`: the batch form, decided at the next tick.
#[derive(Debug, Clone)]
pub enum MachineOp {
    Search(String),
    Cancel,
    Online,
    Offline,
    Tick(Duration),
    PassTime(Duration),
    /// A fact by `AUTHORS[who]`, or by the machine itself past the list.
    Fact {
        who: u8,
        fact: FactShape,
        ingest: bool,
    },
    /// A verdict on the `pending`-th post awaiting one, or on any id.
    Verdict {
        pending: Option<usize>,
        raw: u64,
        stored: bool,
        kind: NegotiatedErrorKind,
        ingest: bool,
    },
    Departed {
        who: u8,
        ingest: bool,
    },
    /// A sync marker of the `frame`-th subscribed frame (or any frame), in the subscribed
    /// category or another.
    Synced {
        frame: Option<usize>,
        raw: u64,
        category: Option<String>,
        ingest: bool,
    },
}

fn machine_op() -> impl Strategy<Value = MachineOp> {
    let who = 0u8..=AUTHORS.len() as u8;
    let ingest = any::<bool>();
    prop_oneof![
        2 => category().prop_map(MachineOp::Search),
        1 => Just(MachineOp::Cancel),
        1 => Just(MachineOp::Online),
        1 => Just(MachineOp::Offline),
        4 => time_step().prop_map(MachineOp::Tick),
        1 => time_step().prop_map(MachineOp::PassTime),
        8 => (who.clone(), fact_shape(), ingest)
            .prop_map(|(who, fact, ingest)| MachineOp::Fact { who, fact, ingest }),
        5 => (
            proptest::option::weighted(0.9, any::<usize>()),
            edge_u64(),
            prop::bool::weighted(0.7),
            negotiated_error_kind(),
            ingest,
        )
            .prop_map(|(pending, raw, stored, kind, ingest)| MachineOp::Verdict {
                pending, raw, stored, kind, ingest,
            }),
        1 => (who, ingest).prop_map(|(who, ingest)| MachineOp::Departed { who, ingest }),
        5 => (
            proptest::option::weighted(0.9, any::<usize>()),
            edge_u64(),
            proptest::option::weighted(0.1, category()),
            ingest,
        )
            .prop_map(|(frame, raw, category, ingest)| MachineOp::Synced {
                frame, raw, category, ingest,
            }),
    ]
}

/// The machine's input.
#[derive(Debug)]
pub struct MachineInput {
    me: u64,
    frame: Duration,
    bid_timeout: Duration,
    seed: u64,
    start: Duration,
    ops: Vec<MachineOp>,
}

/// The client machine.
pub struct Machine;

impl Target for Machine {
    type Input = MachineInput;
    const NAME: &'static str = "machine";

    fn generate(draw: &mut Draw) -> MachineInput {
        MachineInput {
            me: draw.value(prop_oneof![4 => Just(7u64), 1 => edge_u64()]),
            frame: draw.value(frame_duration()),
            bid_timeout: draw.value(prop_oneof![
                4 => (0u64..3_000).prop_map(Duration::from_millis),
                1 => edge_duration(),
            ]),
            seed: draw.rng.u64(..),
            start: draw.value(relay_time()),
            ops: draw.value(vec(machine_op(), 1..120)),
        }
    }

    fn execute(input: &MachineInput) {
        let mut run = MachineRun {
            m: NegotiatedMachine::new(NegotiatedMachineConfig {
                me: input.me,
                frames: NegotiatedFrames::new(input.frame),
                bid_timeout: input.bid_timeout,
                seed: input.seed,
            }),
            me: input.me,
            now: input.start,
            known: Known::default(),
            subscribed: None,
        };
        // most cases start the way the plugin does: online, then searching
        run.apply(&MachineOp::Online);
        run.apply(&MachineOp::Search("duel".into()));
        for op in &input.ops {
            run.apply(op);
        }
    }
}

/// A machine under test and what the case knows.
struct MachineRun {
    m: NegotiatedMachine,
    me: u64,
    now: Duration,
    known: Known,
    subscribed: Option<(String, Vec<u64>)>,
}

impl MachineRun {
    fn apply(&mut self, op: &MachineOp) {
        let out = self.call(op);
        self.check(&out);
    }

    fn call(&mut self, op: &MachineOp) -> Vec<NegotiatedOutput> {
        let now = self.now;
        match op {
            MachineOp::Search(category) => self.m.search(category, now),
            MachineOp::Cancel => self.m.cancel(now),
            MachineOp::Online => self.m.online(now),
            MachineOp::Offline => self.m.offline(),
            MachineOp::Tick(dt) => {
                self.now = self.now.saturating_add(*dt);
                self.m.tick(self.now)
            }
            MachineOp::PassTime(dt) => {
                self.now = self.now.saturating_add(*dt);
                self.m.pass_time(self.now)
            }
            MachineOp::Fact { who, fact, ingest } => {
                let author = AUTHORS.get(*who as usize).copied().unwrap_or(self.me);
                let fact = self.known.fact(fact, self.m.config().frames, now);
                self.known.learn(author, &fact);
                match ingest {
                    true => self.m.ingest(author, fact),
                    false => self.m.receive(author, fact, now),
                }
            }
            MachineOp::Verdict {
                pending,
                raw,
                stored,
                kind,
                ingest,
            } => {
                let ids: Vec<NegotiatedFactId> = self.m.pending().map(|(id, _)| *id).collect();
                let id = match pending {
                    Some(i) if !ids.is_empty() => ids[i % ids.len()],
                    _ => NegotiatedFactId(*raw),
                };
                match (stored, ingest) {
                    (true, true) => self.m.ingest_stored(id),
                    (true, false) => self.m.stored(id, now),
                    (false, true) => self.m.ingest_refused(id, *kind),
                    (false, false) => self.m.refused(id, *kind, now),
                }
            }
            MachineOp::Departed { who, ingest } => {
                let author = AUTHORS.get(*who as usize).copied().unwrap_or(self.me);
                match ingest {
                    true => self.m.ingest_departed(author),
                    false => self.m.departed(author, now),
                }
            }
            MachineOp::Synced {
                frame,
                raw,
                category,
                ingest,
            } => {
                let (watched, frames) = self.subscribed.clone().unwrap_or_default();
                let frame = match frame {
                    Some(i) if !frames.is_empty() => frames[i % frames.len()],
                    _ => *raw,
                };
                let category = category.clone().unwrap_or(watched);
                if *ingest {
                    self.m.ingest_synced(&category, frame);
                    Vec::new()
                } else {
                    self.m.synced(&category, frame, now)
                }
            }
        }
    }

    /// Every message fits the codec; the machine's own posts are learned; events agree
    /// with the phase.
    fn check(&mut self, out: &[NegotiatedOutput]) {
        let mut matched = false;
        for o in out {
            match o {
                NegotiatedOutput::Send(message) => {
                    let bytes = codec::encode(message);
                    assert_eq!(
                        codec::decode::<NegotiatedClientMessage>(&bytes).as_ref(),
                        Ok(message)
                    );
                    match message {
                        NegotiatedClientMessage::Post { fact } => self.learn_own(fact),
                        NegotiatedClientMessage::Subscribe { category, frames } => {
                            self.subscribed = Some((category.clone(), frames.clone()));
                        }
                        _ => {}
                    }
                }
                NegotiatedOutput::Event(NegotiatedEvent::Matched(found)) => {
                    assert_ne!(found.other, self.me, "matched with itself: {found:?}");
                    count("machine_matches", 1);
                    matched = true;
                }
                NegotiatedOutput::Event(NegotiatedEvent::RequestPosted { frame, .. }) => {
                    let current = self.m.config().frames.frame_of(self.m.now());
                    assert_eq!(*frame, current, "a request outside the current frame");
                }
                NegotiatedOutput::Event(_) => {}
            }
        }
        if matched {
            assert!(
                matches!(self.m.phase(), NegotiatedPhase::Matched(_)),
                "reported a match but is {:?}",
                self.m.phase()
            );
        }
        let idle = matches!(
            self.m.phase(),
            NegotiatedPhase::Idle | NegotiatedPhase::Matched(_)
        );
        assert_eq!(self.m.is_searching(), !idle);
    }

    fn learn_own(&mut self, fact: &NegotiatedFact) {
        self.known.learn(self.me, fact);
    }
}
