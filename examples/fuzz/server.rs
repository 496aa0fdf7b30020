//! The atomic server's message paths, in process: the real server plugin and clients on
//! renet local connections ([`AtomicTestHarness`]). Raw connections send
//! structure-aware messages that name what the server sent them (nonces, proposals,
//! lobbies) or anything, mutated encodings and oversized bytes; clients with the plugin
//! queue, leave and misbehave; connections drop and come back, links lose and delay
//! packets and the server takes long frames. The server's bookkeeping is checked after
//! every step, and at the end every player leaves and nothing may be left behind.

use std::time::Duration;

use bevy::prelude::*;
use bevy_atomic_matchmaking::atomic::client::{AtomicLeaveLobby, AtomicLeaveQueue};
use bevy_atomic_matchmaking::atomic::core::commit::AtomicCommitTimings;
use bevy_atomic_matchmaking::atomic::core::protocol::{
    ATOMIC_PROTOCOL_VERSION, AtomicClientMessage, AtomicServerMessage,
};
use bevy_atomic_matchmaking::atomic::server::{
    AtomicLobby, AtomicMatch, AtomicPlayerLocation, AtomicServerSettings,
};
use bevy_atomic_matchmaking::shared::gate::MatchmakingGatePolicy;
use bevy_atomic_matchmaking::shared::player::PlayerId;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;
use bevy_atomic_matchmaking::testing::local_link::{DirectionFaults, LinkFaults};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::decode::{BytesShape, bytes_shape, encode_unbounded, make_bytes};
use crate::inputs::{Draw, category, edge_u32, edge_u64};
use crate::target::{Target, count};

/// An id the connection was sent (by index, wrapping), or any.
#[derive(Debug, Clone)]
pub enum Pick {
    Seen(usize),
    Raw(u64),
}

fn pick() -> impl Strategy<Value = Pick> + Clone {
    prop_oneof![5 => any::<usize>().prop_map(Pick::Seen), 1 => edge_u64().prop_map(Pick::Raw)]
}

/// A message of a raw connection, naming what it was sent.
#[derive(Debug, Clone)]
pub enum ClientShape {
    Hello(u32),
    Join(String),
    LeaveQueue,
    Pong(Pick),
    Acknowledge(Pick, Option<u64>),
    LeaveLobby(Pick),
}

fn client_shape() -> impl Strategy<Value = ClientShape> + Clone {
    prop_oneof![
        1 => prop_oneof![3 => Just(ATOMIC_PROTOCOL_VERSION), 1 => edge_u32()].prop_map(ClientShape::Hello),
        5 => category().prop_map(ClientShape::Join),
        2 => Just(ClientShape::LeaveQueue),
        5 => pick().prop_map(ClientShape::Pong),
        5 => (pick(), proptest::option::weighted(0.1, edge_u64()))
            .prop_map(|(p, lobby)| ClientShape::Acknowledge(p, lobby)),
        2 => pick().prop_map(ClientShape::LeaveLobby),
    ]
}

/// One step of a case. Connections by index: raw ones first, then plugin clients.
#[derive(Debug, Clone)]
pub enum ServerOp {
    Send {
        raw: u8,
        message: ClientShape,
    },
    Bytes {
        raw: u8,
        message: ClientShape,
        bytes: BytesShape,
    },
    Join {
        client: u8,
        category: String,
    },
    Leave {
        client: u8,
    },
    LeaveLobby {
        client: u8,
    },
    Misbehave {
        client: u8,
        pong_delay_ms: u16,
        ignore_pings: bool,
        acknowledge: bool,
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

fn server_op() -> impl Strategy<Value = ServerOp> {
    let who = 0u8..16;
    let cat = prop_oneof![8 => Just("duel".to_owned()), 1 => Just("a".to_owned()), 1 => category()];
    prop_oneof![
        12 => (who.clone(), client_shape()).prop_map(|(raw, message)| ServerOp::Send { raw, message }),
        4 => (who.clone(), client_shape(), bytes_shape())
            .prop_map(|(raw, message, bytes)| ServerOp::Bytes { raw, message, bytes }),
        6 => (who.clone(), cat).prop_map(|(client, category)| ServerOp::Join { client, category }),
        2 => who.clone().prop_map(|client| ServerOp::Leave { client }),
        2 => who.clone().prop_map(|client| ServerOp::LeaveLobby { client }),
        1 => (who.clone(), prop_oneof![Just(0u16), 0u16..1500], any::<bool>(), prop::bool::weighted(0.7))
            .prop_map(|(client, pong_delay_ms, ignore_pings, acknowledge)| ServerOp::Misbehave {
                client, pong_delay_ms, ignore_pings, acknowledge,
            }),
        1 => who.clone().prop_map(|who| ServerOp::Disconnect { who }),
        2 => who.clone().prop_map(|who| ServerOp::Reconnect { who }),
        1 => (who, prop_oneof![Just(0.0), 0.0..0.5], 0u16..300, prop_oneof![Just(0.0), 0.0..0.3])
            .prop_map(|(who, loss, delay_ms, duplicate)| ServerOp::Faults { who, loss, delay_ms, duplicate }),
        10 => (1u8..40).prop_map(ServerOp::Run),
        1 => prop_oneof![
            4 => (100u64..5_000).prop_map(Duration::from_millis),
            1 => select(vec![Duration::from_secs(60), Duration::from_secs(3600)]),
        ].prop_map(ServerOp::Stall),
    ]
}

/// One case: settings, connections and steps.
#[derive(Debug)]
pub struct ServerInput {
    settings: AtomicServerSettings,
    /// Per raw connection: (whether it says hello first, whether it also plays along:
    /// answers pings and proposals at once, leaves its lobby and queues again).
    raw: Vec<(bool, bool)>,
    plugin_clients: usize,
    link_seed: u64,
    ops: Vec<ServerOp>,
}

/// Settings: short timeouts, small limits, and sometimes a timeout or a grace of
/// `Duration::MAX` (settings have no upper bound).
fn draw_settings(rng: &mut fastrand::Rng) -> AtomicServerSettings {
    let ping_timeout = Duration::from_millis(rng.u64(100..2_000));
    let mut settings = AtomicServerSettings {
        players_per_match: [2, 2, 3, 4][rng.usize(..4)],
        gate: MatchmakingGatePolicy {
            max_strikes: [1, 3, 3, 1000][rng.usize(..4)],
            ..MatchmakingGatePolicy::default()
        },
        queue_capacity: [1, 3, 10_000, 10_000][rng.usize(..4)],
        commit: AtomicCommitTimings {
            ping_timeout,
            max_latency: ping_timeout.min(Duration::from_millis(500)),
            notification_timeout: Duration::from_millis(rng.u64(100..2_000)),
            notification_attempts: rng.u32(1..4),
            ..AtomicCommitTimings::default()
        },
        ..AtomicServerSettings::default()
    };
    match rng.u8(..16) {
        0 => settings.commit.ping_timeout = Duration::MAX,
        1 => settings.commit.notification_timeout = Duration::MAX,
        2 => settings.commit.notification_backoff = Duration::MAX,
        3 => settings.gate.disconnect_grace = Duration::MAX,
        4 => settings.commit.stall_threshold = Duration::MAX,
        _ => {}
    }
    settings
}

/// The atomic server in process.
pub struct Server;

impl Target for Server {
    type Input = ServerInput;
    const NAME: &'static str = "server";

    fn generate(draw: &mut Draw) -> ServerInput {
        let raw = draw.rng.usize(1..5);
        ServerInput {
            settings: draw_settings(&mut draw.rng),
            raw: (0..raw)
                .map(|_| (draw.rng.u8(..8) != 0, draw.rng.bool()))
                .collect(),
            plugin_clients: draw.rng.usize(2..6),
            link_seed: draw.rng.u64(..),
            ops: draw.value(vec(server_op(), 10..120)),
        }
    }

    fn execute(input: &ServerInput) {
        let mut run = ServerRun::new(input);
        for op in &input.ops {
            run.step(op);
        }
        run.finish();
    }
}

/// What a raw connection was sent.
#[derive(Debug, Default, Clone)]
struct Seen {
    nonces: Vec<u64>,
    proposals: Vec<(u64, u64)>,
    lobbies: Vec<u64>,
}

/// A raw connection.
struct RawConn {
    id: PlayerId,
    seen: Seen,
    /// Plays along besides the case's steps.
    responsive: bool,
}

struct ServerRun {
    h: AtomicTestHarness,
    raw: Vec<RawConn>,
    plugins: Vec<PlayerId>,
}

impl ServerRun {
    fn new(input: &ServerInput) -> Self {
        let mut h = AtomicTestHarness::new(input.settings.clone());
        h.seed_links(input.link_seed);
        let raw = input
            .raw
            .iter()
            .map(|(_, responsive)| RawConn {
                id: h.add_raw_client(),
                seen: Seen::default(),
                responsive: *responsive,
            })
            .collect();
        let plugins = (0..input.plugin_clients).map(|_| h.add_client()).collect();
        let mut run = Self { h, raw, plugins };
        for (i, (hello, responsive)) in input.raw.iter().enumerate() {
            if *hello {
                run.send(i, &ClientShape::Hello(ATOMIC_PROTOCOL_VERSION));
            }
            if *responsive {
                run.send(i, &ClientShape::Join("duel".into()));
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

    /// A raw connection's message, naming what it was sent.
    fn message(&self, raw: usize, shape: &ClientShape) -> AtomicClientMessage {
        let seen = &self.raw[raw].seen;
        let pick = |p: &Pick, from: &[u64]| match p {
            Pick::Seen(i) if !from.is_empty() => from[i % from.len()],
            Pick::Seen(i) => *i as u64,
            Pick::Raw(v) => *v,
        };
        match shape {
            ClientShape::Hello(v) => AtomicClientMessage::Hello {
                protocol_version: *v,
                config_fingerprint: 0,
            },
            ClientShape::Join(category) => AtomicClientMessage::JoinQueue {
                category: category.clone(),
            },
            ClientShape::LeaveQueue => AtomicClientMessage::LeaveQueue,
            ClientShape::Pong(p) => AtomicClientMessage::Pong {
                nonce: pick(p, &seen.nonces),
            },
            ClientShape::Acknowledge(p, lobby) => {
                let (match_id, lobby_id) = match p {
                    Pick::Seen(i) if !seen.proposals.is_empty() => {
                        seen.proposals[i % seen.proposals.len()]
                    }
                    other => (pick(other, &[]), pick(other, &seen.lobbies)),
                };
                AtomicClientMessage::Acknowledge {
                    match_id,
                    lobby_id: lobby.unwrap_or(lobby_id),
                }
            }
            ClientShape::LeaveLobby(p) => AtomicClientMessage::LeaveLobby {
                lobby_id: pick(p, &seen.lobbies),
            },
        }
    }

    fn send(&mut self, raw: usize, shape: &ClientShape) {
        let message = self.message(raw, shape);
        let bytes = encode_unbounded(&message);
        let id = self.raw[raw].id;
        if self.h.is_connected(id) {
            self.h.send_raw(id, bytes);
        }
    }

    fn step(&mut self, op: &ServerOp) {
        match op {
            ServerOp::Send { raw, message } => self.send(*raw as usize % self.raw.len(), message),
            ServerOp::Bytes {
                raw,
                message,
                bytes,
            } => {
                let raw = *raw as usize % self.raw.len();
                let valid = encode_unbounded(&self.message(raw, message));
                let id = self.raw[raw].id;
                if self.h.is_connected(id) {
                    self.h.send_raw(id, make_bytes(bytes, &valid));
                }
            }
            ServerOp::Run(n) => self.advance(*n as usize),
            ServerOp::Stall(gap) => {
                self.h.stall_server(*gap);
                self.after_update();
            }
            _ => self.client_step(op),
        }
    }

    /// The steps of plugin clients and of connections.
    fn client_step(&mut self, op: &ServerOp) {
        match *op {
            ServerOp::Join {
                client,
                ref category,
            } => {
                if let Some(id) = self.plugin(client) {
                    self.h.join(id, category);
                }
            }
            ServerOp::Leave { client } => {
                if let Some(id) = self.plugin(client) {
                    self.h.send(id, AtomicLeaveQueue);
                }
            }
            ServerOp::LeaveLobby { client } => {
                if let Some(id) = self.plugin(client) {
                    self.h.send(id, AtomicLeaveLobby);
                }
            }
            ServerOp::Misbehave {
                client,
                pong_delay_ms,
                ignore_pings,
                acknowledge,
            } => {
                if let Some(id) = self.plugin(client) {
                    let mut faults = self.h.faults(id);
                    faults.pong_delay = Duration::from_millis(pong_delay_ms.into());
                    faults.ignore_pings = ignore_pings;
                    faults.acknowledge_proposals = acknowledge;
                }
            }
            ServerOp::Disconnect { who } => self.h.disconnect(self.who(who)),
            ServerOp::Reconnect { who } => self.reconnect(self.who(who)),
            ServerOp::Faults {
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
            _ => unreachable!("handled in step"),
        }
    }

    /// Drops a connection and opens it again; a raw one says hello again.
    fn reconnect(&mut self, id: PlayerId) {
        self.h.reconnect(id);
        self.advance(3);
        if let Some(i) = self.raw.iter().position(|r| r.id == id) {
            self.raw[i].seen = Seen::default();
            self.send(i, &ClientShape::Hello(ATOMIC_PROTOCOL_VERSION));
        }
    }

    fn advance(&mut self, updates: usize) {
        for _ in 0..updates {
            self.h.update();
            self.after_update();
        }
    }

    /// Reads what raw connections were sent (every message must decode), lets the
    /// responsive ones answer, and checks the server.
    fn after_update(&mut self) {
        let mut replies = Vec::new();
        for i in 0..self.raw.len() {
            let messages = self.h.take_messages(self.raw[i].id);
            count("server_messages_to_raw_clients", messages.len() as u64);
            for message in messages {
                let r = &mut self.raw[i];
                let reply = match message {
                    AtomicServerMessage::Ping { nonce } => {
                        r.seen.nonces.push(nonce);
                        Some(AtomicClientMessage::Pong { nonce })
                    }
                    AtomicServerMessage::MatchProposed {
                        match_id, lobby_id, ..
                    } => {
                        r.seen.proposals.push((match_id, lobby_id));
                        Some(AtomicClientMessage::Acknowledge { match_id, lobby_id })
                    }
                    AtomicServerMessage::MatchFound { lobby_id, .. } => {
                        r.seen.lobbies.push(lobby_id);
                        Some(AtomicClientMessage::LeaveLobby { lobby_id })
                    }
                    AtomicServerMessage::LobbyLeft { .. }
                    | AtomicServerMessage::MatchCancelled {
                        requeued: false, ..
                    } => Some(AtomicClientMessage::JoinQueue {
                        category: "duel".into(),
                    }),
                    _ => None,
                };
                if let Some(reply) = reply.filter(|_| r.responsive) {
                    replies.push((r.id, reply));
                }
            }
        }
        for (id, reply) in replies {
            if self.h.is_connected(id) {
                self.h.send_message(id, &reply);
            }
        }
        check_server(&mut self.h);
    }

    /// Every player leaves: no ticket, match, lobby or player may be left.
    fn finish(&mut self) {
        let stats = self.h.stats();
        count("server_matches_formed", stats.matches_formed);
        count("server_matches_committed", stats.matches_committed);
        count("server_matches_rolled_back", stats.matches_rolled_back);
        count("server_connections_refused", stats.connections_refused);
        for id in self.everyone() {
            self.h.disconnect(id);
        }
        self.advance(5);
        let stats = self.h.stats().clone();
        assert_eq!(
            stats.matches_in_flight, 0,
            "matches left in flight: {stats:?}"
        );
        assert_eq!(stats.lobbies_open, 0, "lobbies left open: {stats:?}");
        assert_eq!(stats.total_queued(), 0, "tickets left: {stats:?}");
        for id in self.everyone() {
            assert_eq!(
                self.h.server_state().location(id),
                None,
                "player {id} left behind"
            );
        }
    }
}

/// The server's bookkeeping agrees with its entities: counts, tickets and locations,
/// and nobody is in two lobbies or in a lobby and a match.
fn check_server(h: &mut AtomicTestHarness) {
    let world = h.server.world_mut();
    let matches: Vec<(Entity, Vec<PlayerId>)> = world
        .query::<(Entity, &AtomicMatch)>()
        .iter(world)
        .map(|(e, m)| (e, m.players().collect()))
        .collect();
    let lobbies: Vec<(Entity, AtomicLobby)> = world
        .query::<(Entity, &AtomicLobby)>()
        .iter(world)
        .map(|(e, l)| (e, l.clone()))
        .collect();
    let stats = h.stats();
    assert_eq!(stats.matches_in_flight, matches.len(), "{stats:?}");
    assert_eq!(stats.lobbies_open, lobbies.len(), "{stats:?}");
    assert_eq!(
        stats.matches_formed,
        stats.matches_committed + stats.matches_rolled_back + stats.matches_in_flight as u64,
        "{stats:?}"
    );
    assert_eq!(stats.healthy_players_dropped, 0, "{stats:?}");
    let state = h.server_state();
    assert_eq!(state.queue().total(), stats.total_queued(), "{stats:?}");
    let mut seen_in_lobby = std::collections::HashSet::new();
    for (entity, lobby) in &lobbies {
        assert_eq!(state.lobby(lobby.lobby_id), Some(*entity));
        if lobby.committed {
            for p in &lobby.members {
                assert!(seen_in_lobby.insert(*p), "player {p} in two lobbies");
            }
        }
    }
    for c in &h.clients {
        let location = state.location(c.id);
        assert_eq!(
            state.queue().contains(&c.id),
            location == Some(AtomicPlayerLocation::Queued),
            "player {} ticket vs {location:?}",
            c.id
        );
        match location {
            Some(AtomicPlayerLocation::Matching(e)) => {
                let m = matches.iter().find(|(m, _)| *m == e);
                assert!(
                    m.is_some_and(|(_, ps)| ps.contains(&c.id)),
                    "player {} in no match",
                    c.id
                );
            }
            Some(AtomicPlayerLocation::InLobby(e)) => {
                let l = lobbies.iter().find(|(l, _)| *l == e);
                assert!(
                    l.is_some_and(|(_, l)| l.committed && l.members.contains(&c.id)),
                    "player {} in no lobby",
                    c.id
                );
            }
            _ => {}
        }
    }
}
