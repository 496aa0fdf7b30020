//! The negotiated client plugin fed a hostile relay: a bare renet server in process
//! answers each client's hello, time requests, subscriptions and posts (when the case
//! says so: welcomes, times, sync markers and verdicts of any kind), and sends facts by
//! others naming what it saw, departures, errors, any relay message and mutated or
//! oversized bytes, with relay time jumping; the game searches and cancels. Every client
//! must keep running and send only valid messages, the hello first on every connection.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::NegotiatedChannel;
use bevy_atomic_matchmaking::negotiated::client::{
    NegotiatedCancelSearch, NegotiatedClientPlugin, NegotiatedClientSettings, NegotiatedSearch,
};
use bevy_atomic_matchmaking::negotiated::core::clock::as_us;
use bevy_atomic_matchmaking::negotiated::core::fact::NegotiatedSignedFact;
use bevy_atomic_matchmaking::negotiated::core::frame::NegotiatedFrames;
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NEGOTIATED_PROTOCOL_VERSION, NegotiatedClientMessage, NegotiatedErrorKind,
    NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::negotiated::relay::NegotiatedRelaySettings;
use bevy_atomic_matchmaking::shared::codec;
use bevy_atomic_matchmaking::shared::player::PlayerId;
use bevy_atomic_matchmaking::testing::harness::{DEFAULT_STEP, TestHarness, server_app};
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedHarnessMode;
use bevy_renet::{RenetServer, RenetServerPlugin};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::decode::{BytesShape, bytes_shape, encode_unbounded, make_bytes};
use crate::inputs::{Draw, category, edge_u64, negotiated_error_kind, negotiated_relay_message};
use crate::negotiated_cores::{AUTHORS, FactShape, Known, fact_shape, time_step};
use crate::target::{Target, count};

/// The relay time of the fake relay at network time zero.
const EPOCH: Duration = Duration::from_secs(1_700_000_000);

/// A message from the relay.
#[derive(Debug, Clone)]
pub enum RelayShape {
    /// A fact by `AUTHORS[who]` (or by the client itself past the list).
    Fact {
        who: u8,
        fact: FactShape,
    },
    Departed {
        who: u8,
    },
    Error {
        kind: NegotiatedErrorKind,
    },
    Any(NegotiatedRelayMessage),
}

fn relay_shape() -> impl Strategy<Value = RelayShape> + Clone {
    let who = 0u8..=AUTHORS.len() as u8;
    prop_oneof![
        6 => (who.clone(), fact_shape()).prop_map(|(who, fact)| RelayShape::Fact { who, fact }),
        1 => who.prop_map(|who| RelayShape::Departed { who }),
        1 => negotiated_error_kind().prop_map(|kind| RelayShape::Error { kind }),
        2 => negotiated_relay_message().prop_map(RelayShape::Any),
    ]
}

/// How the fake relay answers what a client sends (each answer may be right or not).
#[derive(Debug, Clone)]
pub struct Answers {
    /// Welcome with this frame duration (µs), another protocol version when false.
    welcome: (u64, bool),
    /// Answers time requests, off by this much relay time.
    time_skew_us: Option<i64>,
    /// Sends sync markers for subscribed frames.
    sync: bool,
    /// Verdicts on posts: stored when true, refused with the kind otherwise.
    verdicts: Option<(bool, NegotiatedErrorKind)>,
}

fn answers() -> impl Strategy<Value = Answers> + Clone {
    let frame_us = prop_oneof![4 => 10_000u64..3_000_000, 1 => edge_u64()];
    let skew = prop_oneof![4 => Just(0i64), 1 => any::<i64>(), 1 => -5_000_000i64..5_000_000];
    (
        (frame_us, prop::bool::weighted(0.9)),
        proptest::option::weighted(0.9, skew),
        prop::bool::weighted(0.9),
        proptest::option::weighted(0.9, (prop::bool::weighted(0.7), negotiated_error_kind())),
    )
        .prop_map(|(welcome, time_skew_us, sync, verdicts)| Answers {
            welcome,
            time_skew_us,
            sync,
            verdicts,
        })
}

/// One step of a case (clients by index, wrapping).
#[derive(Debug, Clone)]
pub enum NegClientOp {
    Send {
        to: u8,
        message: RelayShape,
    },
    Bytes {
        to: u8,
        message: RelayShape,
        bytes: BytesShape,
    },
    /// The relay changes how it answers.
    Answers(Answers),
    Search {
        client: u8,
        category: String,
    },
    Cancel {
        client: u8,
    },
    Reconnect {
        client: u8,
    },
    /// Relay time jumps (its answers then carry the later time).
    Jump(Duration),
    Run(u8),
}

fn op() -> impl Strategy<Value = NegClientOp> {
    let who = 0u8..8;
    let cat = prop_oneof![4 => Just("duel".to_owned()), 1 => category()];
    prop_oneof![
        10 => (who.clone(), relay_shape()).prop_map(|(to, message)| NegClientOp::Send { to, message }),
        2 => (who.clone(), relay_shape(), bytes_shape())
            .prop_map(|(to, message, bytes)| NegClientOp::Bytes { to, message, bytes }),
        1 => answers().prop_map(NegClientOp::Answers),
        3 => (who.clone(), cat).prop_map(|(client, category)| NegClientOp::Search { client, category }),
        1 => who.clone().prop_map(|client| NegClientOp::Cancel { client }),
        1 => who.prop_map(|client| NegClientOp::Reconnect { client }),
        1 => time_step().prop_map(NegClientOp::Jump),
        6 => (1u8..20).prop_map(NegClientOp::Run),
    ]
}

/// One case.
#[derive(Debug)]
pub struct NegClientInput {
    clients: usize,
    bid_timeout: Duration,
    answers: Answers,
    ops: Vec<NegClientOp>,
}

/// The negotiated client plugin against a hostile relay.
pub struct NegotiatedClient;

impl Target for NegotiatedClient {
    type Input = NegClientInput;
    const NAME: &'static str = "negotiated_client";

    fn generate(draw: &mut Draw) -> NegClientInput {
        NegClientInput {
            clients: draw.rng.usize(1..4),
            bid_timeout: Duration::from_millis(draw.rng.u64(0..3_000)),
            answers: draw.value(answers()),
            ops: draw.value(vec(op(), 10..100)),
        }
    }

    fn execute(input: &NegClientInput) {
        let channel = NegotiatedChannel::default();
        let mut server = server_app(DEFAULT_STEP, channel.connection_config());
        server.add_plugins(RenetServerPlugin);
        server.update();
        let settings = NegotiatedClientSettings {
            bid_timeout: input.bid_timeout,
            time_sync_interval: Duration::from_secs(1),
            epoch: Some(EPOCH),
            ..NegotiatedClientSettings::default()
        };
        let mode = NegotiatedHarnessMode {
            channel,
            relay_settings: NegotiatedRelaySettings::default(),
            client_settings: settings.clone(),
        };
        let mut h = TestHarness::from_server(mode, server, channel.id, DEFAULT_STEP);
        let ids: Vec<PlayerId> = (0..input.clients)
            .map(|_| {
                h.add_local_client(|app, id| {
                    let settings = NegotiatedClientSettings {
                        seed: Some(id),
                        ..settings.clone()
                    };
                    app.add_plugins(NegotiatedClientPlugin { channel, settings });
                })
            })
            .collect();
        let mut run = FakeRelay {
            h,
            greeted: vec![false; ids.len()],
            known: Known::default(),
            ids,
            answers: input.answers.clone(),
            jump: Duration::ZERO,
            frames: NegotiatedFrames::new(Duration::from_micros(input.answers.welcome.0)),
        };
        for op in &input.ops {
            run.step(op);
        }
    }
}

struct FakeRelay {
    h: TestHarness<NegotiatedHarnessMode>,
    ids: Vec<PlayerId>,
    /// Whether each client's current connection said hello.
    greeted: Vec<bool>,
    known: Known,
    answers: Answers,
    jump: Duration,
    frames: NegotiatedFrames,
}

impl FakeRelay {
    fn client(&self, i: u8) -> (usize, PlayerId) {
        let i = i as usize % self.ids.len();
        (i, self.ids[i])
    }

    fn now(&self) -> Duration {
        EPOCH.saturating_add(self.h.now()).saturating_add(self.jump)
    }

    fn message(&self, me: PlayerId, shape: &RelayShape) -> NegotiatedRelayMessage {
        let author = |who: u8| AUTHORS.get(who as usize).copied().unwrap_or(me);
        match shape {
            RelayShape::Fact { who, fact } => NegotiatedRelayMessage::Fact {
                author: author(*who),
                fact: self.known.fact(fact, self.frames, self.now()),
            },
            RelayShape::Departed { who } => NegotiatedRelayMessage::Departed {
                author: author(*who),
            },
            RelayShape::Error { kind } => NegotiatedRelayMessage::Error {
                kind: *kind,
                message: "fuzz".into(),
            },
            RelayShape::Any(message) => message.clone(),
        }
    }

    fn send(&mut self, to: PlayerId, message: &NegotiatedRelayMessage) {
        if let NegotiatedRelayMessage::Fact { author, fact } = message {
            self.known.learn(*author, fact);
        }
        self.send_bytes(to, encode_unbounded(message));
    }

    fn send_bytes(&mut self, to: PlayerId, bytes: Vec<u8>) {
        let channel = self.h.channel_id;
        let mut server = self.h.server.world_mut().resource_mut::<RenetServer>();
        if server.is_connected(to) {
            server.send_message(to, channel, bytes);
            count("negotiated_client_messages_from_relay", 1);
        }
    }

    fn step(&mut self, op: &NegClientOp) {
        match op {
            NegClientOp::Send { to, message } => {
                let (_, id) = self.client(*to);
                let message = self.message(id, message);
                self.send(id, &message);
            }
            NegClientOp::Bytes { to, message, bytes } => {
                let (_, id) = self.client(*to);
                let valid = encode_unbounded(&self.message(id, message));
                self.send_bytes(id, make_bytes(bytes, &valid));
            }
            NegClientOp::Answers(answers) => self.answers = answers.clone(),
            NegClientOp::Search { client, category } => {
                let (_, id) = self.client(*client);
                self.h.send(
                    id,
                    NegotiatedSearch {
                        category: category.clone(),
                    },
                );
            }
            NegClientOp::Cancel { client } => {
                self.h.send(self.client(*client).1, NegotiatedCancelSearch)
            }
            NegClientOp::Reconnect { client } => {
                let (i, id) = self.client(*client);
                self.h.reconnect(id);
                self.greeted[i] = false;
            }
            NegClientOp::Jump(dt) => self.jump = self.jump.saturating_add(*dt),
            NegClientOp::Run(n) => {
                for _ in 0..*n {
                    self.h.update();
                    self.serve();
                }
            }
        }
    }

    /// Reads what the clients sent (valid messages, the hello first on each connection)
    /// and answers as [`Answers`] says.
    fn serve(&mut self) {
        let channel = self.h.channel_id;
        for i in 0..self.ids.len() {
            let id = self.ids[i];
            let mut received = Vec::new();
            let mut server = self.h.server.world_mut().resource_mut::<RenetServer>();
            while let Some(bytes) = server.receive_message(id, channel) {
                let message: NegotiatedClientMessage =
                    codec::decode(&bytes).expect("a client sends valid messages");
                received.push(message);
            }
            for message in received {
                let hello = matches!(message, NegotiatedClientMessage::Hello { .. });
                assert!(
                    self.greeted[i] || hello,
                    "client {id} sent {message:?} before its hello"
                );
                assert!(!(self.greeted[i] && hello), "client {id} said hello twice");
                self.greeted[i] = true;
                for answer in self.answer(id, message) {
                    self.send(id, &answer);
                }
            }
        }
    }

    fn answer(
        &mut self,
        id: PlayerId,
        message: NegotiatedClientMessage,
    ) -> Vec<NegotiatedRelayMessage> {
        let now = as_us(self.now());
        let a = &self.answers;
        match message {
            NegotiatedClientMessage::Hello { .. } => vec![NegotiatedRelayMessage::Welcome {
                protocol_version: if a.welcome.1 {
                    NEGOTIATED_PROTOCOL_VERSION
                } else {
                    1
                },
                client_id: id,
                frame_duration_us: a.welcome.0,
            }],
            NegotiatedClientMessage::TimeRequest { client_sent_us } => a
                .time_skew_us
                .map(|skew| {
                    let t = now.saturating_add_signed(skew);
                    NegotiatedRelayMessage::Time {
                        client_sent_us,
                        relay_received_us: t,
                        relay_sent_us: t,
                    }
                })
                .into_iter()
                .collect(),
            NegotiatedClientMessage::Subscribe { category, frames } if a.sync => frames
                .into_iter()
                .map(|frame| NegotiatedRelayMessage::Synced {
                    category: category.clone(),
                    frame,
                })
                .collect(),
            NegotiatedClientMessage::Post { fact } => {
                count("negotiated_client_posts", 1);
                self.known.learn(id, &fact);
                let fact_id = NegotiatedSignedFact::new(id, fact).id();
                match a.verdicts {
                    Some((true, _)) => vec![NegotiatedRelayMessage::Stored { fact: fact_id }],
                    Some((false, kind)) => vec![NegotiatedRelayMessage::Refused {
                        fact: fact_id,
                        kind,
                        message: "fuzz".into(),
                    }],
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }
}
