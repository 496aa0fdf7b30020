//! The negotiated relay's message paths, in process: the real relay plugin and clients on
//! renet local connections ([`NegotiatedTestHarness`]). Raw connections post facts that
//! name what they saw (requests and bids of others, their own) or anything, subscribe to
//! frames near the relay's or anywhere, and send mutated and oversized bytes; clients
//! with the plugin search and cancel; connections drop and come back, links misbehave
//! and the relay takes long frames (its frames expire). The relay's bookkeeping is
//! checked after every update. A connection never gets more verdicts than it posted,
//! and one that was never refused (nor posted before its hello) gets exactly one per
//! post; at the end everyone leaves and no connection or subscription is left.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::client::NegotiatedClientSettings;
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NEGOTIATED_PROTOCOL_VERSION, NegotiatedClientMessage, NegotiatedErrorKind,
    NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::negotiated::core::relay_core::NegotiatedRelayLimits;
use bevy_atomic_matchmaking::negotiated::relay::NegotiatedRelaySettings;
use bevy_atomic_matchmaking::shared::codec;
use bevy_atomic_matchmaking::shared::gate::MatchmakingGatePolicy;
use bevy_atomic_matchmaking::shared::player::PlayerId;
use bevy_atomic_matchmaking::testing::local_link::{DirectionFaults, LinkFaults};
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::decode::{BytesShape, bytes_shape, encode_unbounded, make_bytes};
use crate::inputs::{Draw, category, edge_u32, edge_u64};
use crate::negotiated_cores::{FactShape, FrameRef, Known, fact_shape, frame_ref, offset};
use crate::target::{Target, count};

/// A message of a raw connection.
#[derive(Debug, Clone)]
pub enum RelayShape {
    Hello(u32),
    Time(u64),
    Subscribe {
        category: String,
        frames: Vec<FrameRef>,
    },
    Unsubscribe,
    Post(FactShape),
}

fn relay_shape() -> impl Strategy<Value = RelayShape> + Clone {
    let cat = prop_oneof![4 => Just("duel".to_owned()), 1 => category()];
    prop_oneof![
        1 => prop_oneof![3 => Just(NEGOTIATED_PROTOCOL_VERSION), 1 => edge_u32()].prop_map(RelayShape::Hello),
        1 => edge_u64().prop_map(RelayShape::Time),
        3 => (cat, vec(frame_ref(), 0..6))
            .prop_map(|(category, frames)| RelayShape::Subscribe { category, frames }),
        1 => Just(RelayShape::Unsubscribe),
        10 => fact_shape().prop_map(RelayShape::Post),
    ]
}

/// One step of a case. Connections by index: raw ones first, then plugin clients.
#[derive(Debug, Clone)]
pub enum RelayOp {
    Send {
        raw: u8,
        message: RelayShape,
    },
    Bytes {
        raw: u8,
        message: RelayShape,
        bytes: BytesShape,
    },
    Search {
        client: u8,
        category: String,
    },
    Cancel {
        client: u8,
    },
    Disconnect {
        who: u8,
    },
    Reconnect {
        who: u8,
    },
    Faults {
        who: u8,
        loss: f64,
        delay_ms: u16,
        duplicate: f64,
    },
    Run(u8),
    Stall(Duration),
}

fn relay_op() -> impl Strategy<Value = RelayOp> {
    let who = 0u8..16;
    let cat = prop_oneof![4 => Just("duel".to_owned()), 1 => category()];
    prop_oneof![
        14 => (who.clone(), relay_shape()).prop_map(|(raw, message)| RelayOp::Send { raw, message }),
        3 => (who.clone(), relay_shape(), bytes_shape())
            .prop_map(|(raw, message, bytes)| RelayOp::Bytes { raw, message, bytes }),
        3 => (who.clone(), cat).prop_map(|(client, category)| RelayOp::Search { client, category }),
        1 => who.clone().prop_map(|client| RelayOp::Cancel { client }),
        1 => who.clone().prop_map(|who| RelayOp::Disconnect { who }),
        2 => who.clone().prop_map(|who| RelayOp::Reconnect { who }),
        1 => (who, prop_oneof![Just(0.0), 0.0..0.5], 0u16..300, prop_oneof![Just(0.0), 0.0..0.3])
            .prop_map(|(who, loss, delay_ms, duplicate)| RelayOp::Faults { who, loss, delay_ms, duplicate }),
        10 => (1u8..30).prop_map(RelayOp::Run),
        1 => prop_oneof![
            4 => (100u64..5_000).prop_map(Duration::from_millis),
            1 => select(vec![Duration::from_secs(60), Duration::from_secs(3600)]),
        ].prop_map(RelayOp::Stall),
    ]
}

/// One case: settings, connections and steps.
#[derive(Debug)]
pub struct RelayInput {
    settings: NegotiatedRelaySettings,
    client: NegotiatedClientSettings,
    /// The plugin clients' clock skew, in milliseconds, sometimes at the edges.
    skew_ms: i64,
    /// Per raw connection: whether it says hello first.
    raw_hello: Vec<bool>,
    plugin_clients: usize,
    link_seed: u64,
    ops: Vec<RelayOp>,
}

/// Relay settings: short frames, small limits, and sometimes the edges (settings have
/// no upper bounds; the epoch is any relay time).
fn relay_settings(rng: &mut fastrand::Rng) -> NegotiatedRelaySettings {
    let small = |rng: &mut fastrand::Rng, default: usize| match rng.u8(..3) {
        0 => rng.usize(1..6),
        _ => default,
    };
    let mut settings = NegotiatedRelaySettings {
        frame_duration: Duration::from_millis(rng.u64(10..3_000)),
        limits: NegotiatedRelayLimits {
            max_facts_per_frame: small(rng, 256),
            max_facts: small(rng, 100_000),
            max_departed: small(rng, 10_000),
        },
        gate: MatchmakingGatePolicy {
            max_strikes: [1, 3, 3, 1000][rng.usize(..4)],
            ..MatchmakingGatePolicy::default()
        },
        ..NegotiatedRelaySettings::default()
    };
    match rng.u8(..16) {
        0 => settings.frame_duration = Duration::ZERO,
        1 => settings.frame_duration = Duration::MAX,
        2 => settings.gate.disconnect_grace = Duration::MAX,
        3 => settings.epoch = Some(Duration::ZERO),
        4 => settings.epoch = Some(Duration::from_micros(u64::MAX)),
        5 => settings.epoch = Some(Duration::MAX),
        _ => {}
    }
    settings
}

/// Settings of the clients with the plugin, sometimes at the edges.
fn client_settings(rng: &mut fastrand::Rng) -> NegotiatedClientSettings {
    let mut settings = NegotiatedClientSettings {
        bid_timeout: Duration::from_millis(rng.u64(50..2_000)),
        time_sync_interval: Duration::from_secs(1),
        ..NegotiatedClientSettings::default()
    };
    match rng.u8(..16) {
        0 => settings.bid_timeout = Duration::MAX,
        1 => settings.bid_timeout = Duration::ZERO,
        2 => settings.time_sync_interval = Duration::ZERO,
        3 => settings.time_sync_interval = Duration::MAX,
        _ => {}
    }
    settings
}

/// A clock skew for the plugin clients: none, the edges, or a few seconds.
fn clock_skew_ms(rng: &mut fastrand::Rng) -> i64 {
    match rng.u8(..16) {
        4 => i64::MAX,
        5 => i64::MIN,
        6 => rng.i64(-5_000..5_000),
        _ => 0,
    }
}

/// The negotiated relay in process.
pub struct Relay;

impl Target for Relay {
    type Input = RelayInput;
    const NAME: &'static str = "relay";

    fn generate(draw: &mut Draw) -> RelayInput {
        let raw = draw.rng.usize(1..5);
        RelayInput {
            settings: relay_settings(&mut draw.rng),
            client: client_settings(&mut draw.rng),
            skew_ms: clock_skew_ms(&mut draw.rng),
            raw_hello: (0..raw).map(|_| draw.rng.u8(..8) != 0).collect(),
            plugin_clients: draw.rng.usize(1..5),
            link_seed: draw.rng.u64(..),
            ops: draw.value(vec(relay_op(), 10..120)),
        }
    }

    fn execute(input: &RelayInput) {
        let mut run = RelayRun::new(input);
        for op in &input.ops {
            run.step(op);
        }
        run.finish();
    }
}

/// A raw connection: what it saw, and its posts and verdicts while nothing of it was
/// refused.
#[derive(Debug, Default)]
struct Raw {
    id: PlayerId,
    known: Known,
    posts: usize,
    verdicts: usize,
    /// It was sent an error that may have cost a post its verdict (it posted before its
    /// hello, or was refused), or it reconnected: its verdicts are not counted.
    spoiled: bool,
    /// It reconnected: posts may have been lost with the old connection.
    reconnected: bool,
}

struct RelayRun {
    h: NegotiatedTestHarness,
    raw: Vec<Raw>,
    plugins: Vec<PlayerId>,
    max_facts: usize,
    max_departed: usize,
}

impl RelayRun {
    fn new(input: &RelayInput) -> Self {
        let mut h = NegotiatedTestHarness::new(input.settings.clone(), input.client.clone());
        h.seed_links(input.link_seed);
        let raw = input
            .raw_hello
            .iter()
            .map(|_| Raw {
                id: h.add_raw_client(),
                ..Raw::default()
            })
            .collect();
        let plugins = (0..input.plugin_clients)
            .map(|_| h.add_skewed_client(input.skew_ms))
            .collect();
        let mut run = Self {
            h,
            raw,
            plugins,
            max_facts: input.settings.limits.max_facts,
            max_departed: input.settings.limits.max_departed,
        };
        for (i, hello) in input.raw_hello.iter().enumerate() {
            match hello {
                true => run.send(i, &RelayShape::Hello(NEGOTIATED_PROTOCOL_VERSION)),
                false => run.raw[i].spoiled = true,
            }
        }
        run.advance(3);
        run
    }

    fn everyone(&self) -> Vec<PlayerId> {
        self.raw
            .iter()
            .map(|r| r.id)
            .chain(self.plugins.iter().copied())
            .collect()
    }

    fn who(&self, i: u8) -> PlayerId {
        let all = self.everyone();
        all[i as usize % all.len()]
    }

    fn plugin(&self, i: u8) -> Option<PlayerId> {
        (!self.plugins.is_empty()).then(|| self.plugins[i as usize % self.plugins.len()])
    }

    /// A raw connection's message, naming what it saw, at the relay's time now.
    fn message(&self, raw: usize, shape: &RelayShape) -> NegotiatedClientMessage {
        let frames = self.h.relay_state().frames();
        let now = self.h.relay_now();
        match shape {
            RelayShape::Hello(v) => NegotiatedClientMessage::Hello {
                protocol_version: *v,
                config_fingerprint: 0,
            },
            RelayShape::Time(t) => NegotiatedClientMessage::TimeRequest { client_sent_us: *t },
            RelayShape::Subscribe {
                category,
                frames: wanted,
            } => {
                let current = frames.frame_of(now);
                let frames = wanted
                    .iter()
                    .map(|f| match f {
                        FrameRef::Now(d) => offset(current, *d),
                        FrameRef::Raw(f) => *f,
                    })
                    .collect();
                NegotiatedClientMessage::Subscribe {
                    category: category.clone(),
                    frames,
                }
            }
            RelayShape::Unsubscribe => NegotiatedClientMessage::Unsubscribe,
            RelayShape::Post(shape) => NegotiatedClientMessage::Post {
                fact: self.raw[raw].known.fact(shape, frames, now),
            },
        }
    }

    fn send(&mut self, raw: usize, shape: &RelayShape) {
        let message = self.message(raw, shape);
        self.send_bytes(raw, encode_unbounded(&message));
    }

    /// Sends bytes from a raw connection, counting them as a post if they decode as one.
    fn send_bytes(&mut self, raw: usize, bytes: Vec<u8>) {
        let r = &mut self.raw[raw];
        if !self.h.is_connected(r.id) {
            return;
        }
        if let Ok(NegotiatedClientMessage::Post { fact }) = codec::decode(&bytes) {
            r.posts += 1;
            r.known.learn(r.id, &fact);
        }
        self.h.send_raw(r.id, bytes);
    }

    fn step(&mut self, op: &RelayOp) {
        match *op {
            RelayOp::Send { raw, ref message } => self.send(raw as usize % self.raw.len(), message),
            RelayOp::Bytes {
                raw,
                ref message,
                ref bytes,
            } => {
                let raw = raw as usize % self.raw.len();
                let valid = encode_unbounded(&self.message(raw, message));
                self.send_bytes(raw, make_bytes(bytes, &valid));
            }
            RelayOp::Search {
                client,
                ref category,
            } => {
                if let Some(id) = self.plugin(client) {
                    self.h.search(id, category);
                }
            }
            RelayOp::Cancel { client } => {
                if let Some(id) = self.plugin(client) {
                    self.h.cancel(id);
                }
            }
            RelayOp::Disconnect { who } => self.h.disconnect(self.who(who)),
            RelayOp::Reconnect { who } => self.reconnect(self.who(who)),
            RelayOp::Faults {
                who,
                loss,
                delay_ms,
                duplicate,
            } => {
                let faults = DirectionFaults {
                    loss,
                    delay: Duration::from_millis(delay_ms.into()),
                    duplicate,
                    ..DirectionFaults::default()
                };
                self.h.set_faults(self.who(who), LinkFaults::both(faults));
            }
            RelayOp::Run(n) => self.advance(n as usize),
            RelayOp::Stall(gap) => {
                self.h.stall_server(gap);
                self.after_update();
            }
        }
    }

    /// Drops a connection and opens it again; a raw one says hello again.
    fn reconnect(&mut self, id: PlayerId) {
        self.h.reconnect(id);
        self.advance(3);
        if let Some(i) = self.raw.iter().position(|r| r.id == id) {
            self.raw[i].spoiled = true;
            self.raw[i].reconnected = true;
            self.send(i, &RelayShape::Hello(NEGOTIATED_PROTOCOL_VERSION));
        }
    }

    fn advance(&mut self, updates: usize) {
        for _ in 0..updates {
            self.h.update();
            self.after_update();
        }
    }

    /// Reads what raw connections were sent (every message must decode) and checks the
    /// relay.
    fn after_update(&mut self) {
        for r in &mut self.raw {
            for message in self.h.take_messages(r.id) {
                match message {
                    NegotiatedRelayMessage::Fact { author, fact } => r.known.learn(author, &fact),
                    NegotiatedRelayMessage::Stored { .. }
                    | NegotiatedRelayMessage::Refused { .. } => {
                        r.verdicts += 1;
                    }
                    // errors about other messages leave every post its verdict
                    NegotiatedRelayMessage::Error { kind, .. } => {
                        r.spoiled |= !matches!(
                            kind,
                            NegotiatedErrorKind::Malformed
                                | NegotiatedErrorKind::TooLarge
                                | NegotiatedErrorKind::InvalidCategory
                                | NegotiatedErrorKind::InvalidSubscription
                                | NegotiatedErrorKind::Unexpected
                        );
                    }
                    _ => {}
                }
            }
        }
        let state = self.h.relay_state();
        let stats = state.stats();
        let held = state.store().len();
        assert_eq!(
            stats.facts_stored - stats.facts_expired,
            held as u64,
            "{stats:?}"
        );
        assert!(held <= 2 * self.max_facts.max(1), "{held} facts held");
        assert!(state.core().departed().len() <= self.max_departed.max(1));
        assert!(
            state.core().watching() <= state.connected(),
            "a watch without a connection"
        );
    }

    /// The links heal and every post gets its verdict; then everyone leaves and nothing
    /// is left but facts (which expire with their frames).
    fn finish(&mut self) {
        for id in self.everyone() {
            self.h.set_faults(id, LinkFaults::default());
        }
        self.advance(60);
        for r in &self.raw {
            if !r.reconnected {
                assert!(
                    r.verdicts <= r.posts,
                    "client {}: more verdicts than posts",
                    r.id
                );
            }
            if !r.spoiled && self.h.is_connected(r.id) {
                assert_eq!(
                    r.verdicts, r.posts,
                    "client {}: verdicts for its posts",
                    r.id
                );
                count("relay_posts_with_verdicts_checked", r.posts as u64);
            }
        }
        let stats = self.h.relay_state().stats();
        count("relay_facts_stored", stats.facts_stored);
        count("relay_facts_refused", stats.facts_refused);
        count("relay_facts_expired", stats.facts_expired);
        let found = self
            .plugins
            .iter()
            .filter(|id| self.h.found(**id).is_some())
            .count();
        count("relay_plugin_clients_matched", found as u64);
        for id in self.everyone() {
            self.h.disconnect(id);
        }
        self.advance(5);
        let state = self.h.relay_state();
        assert_eq!(state.connected(), 0, "connections left");
        assert_eq!(state.core().watching(), 0, "subscriptions left");
    }
}
