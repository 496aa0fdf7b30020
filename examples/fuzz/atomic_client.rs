//! The atomic client plugin fed a hostile server: a bare renet server in process sends
//! each client messages that follow the protocol (naming a few match and lobby ids, the
//! client's own id among the players), any messages, and mutated or oversized bytes,
//! while the game joins, leaves and misbehaves. Every client must keep running and send
//! only valid messages, the hello first on every connection.

use std::time::Duration;

use bevy::prelude::*;
use bevy_atomic_matchmaking::atomic::AtomicChannel;
use bevy_atomic_matchmaking::atomic::client::{
    AtomicClientFaults, AtomicClientPlugin, AtomicJoinQueue, AtomicLeaveLobby, AtomicLeaveQueue,
};
use bevy_atomic_matchmaking::atomic::core::commit::AtomicMatchStatus;
use bevy_atomic_matchmaking::atomic::core::protocol::{
    ATOMIC_PROTOCOL_VERSION, AtomicClientMessage, AtomicMatchCancelReason, AtomicMatchedPlayer,
    AtomicQueueLeftReason, AtomicServerMessage,
};
use bevy_atomic_matchmaking::shared::codec;
use bevy_atomic_matchmaking::shared::connection_config::MatchmakingConnectionConfig;
use bevy_atomic_matchmaking::shared::player::{MAX_CATEGORY_LEN, PlayerId};
use bevy_atomic_matchmaking::testing::atomic::AtomicHarnessMode;
use bevy_atomic_matchmaking::testing::harness::{DEFAULT_STEP, TestHarness, server_app};
use bevy_renet::{RenetServer, RenetServerPlugin};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::decode::{BytesShape, bytes_shape, encode_unbounded, make_bytes};
use crate::inputs::{Draw, category, server_message};
use crate::target::{Target, count};

/// A message from the server: one that follows the protocol (kind 0..8, match and lobby
/// ids among a few), or any.
#[derive(Debug, Clone)]
pub enum ServerShape {
    Coherent {
        kind: u8,
        m: u8,
        lobby: u8,
        flag: bool,
    },
    Any(AtomicServerMessage),
}

fn server_shape() -> impl Strategy<Value = ServerShape> + Clone {
    prop_oneof![
        4 => (0u8..8, 0u8..3, 0u8..3, any::<bool>())
            .prop_map(|(kind, m, lobby, flag)| ServerShape::Coherent { kind, m, lobby, flag }),
        1 => server_message().prop_map(ServerShape::Any),
    ]
}

/// One step of a case (clients by index, wrapping).
#[derive(Debug, Clone)]
pub enum ClientOp {
    Send {
        to: u8,
        message: ServerShape,
    },
    Bytes {
        to: u8,
        message: ServerShape,
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
        ignore_pings: bool,
        acknowledge: bool,
    },
    Reconnect {
        client: u8,
    },
    Run(u8),
}

fn client_op() -> impl Strategy<Value = ClientOp> {
    let who = 0u8..8;
    let cat = prop_oneof![4 => Just("duel".to_owned()), 1 => category()];
    prop_oneof![
        12 => (who.clone(), server_shape()).prop_map(|(to, message)| ClientOp::Send { to, message }),
        3 => (who.clone(), server_shape(), bytes_shape())
            .prop_map(|(to, message, bytes)| ClientOp::Bytes { to, message, bytes }),
        3 => (who.clone(), cat).prop_map(|(client, category)| ClientOp::Join { client, category }),
        1 => who.clone().prop_map(|client| ClientOp::Leave { client }),
        1 => who.clone().prop_map(|client| ClientOp::LeaveLobby { client }),
        1 => (who.clone(), any::<bool>(), prop::bool::weighted(0.8))
            .prop_map(|(client, ignore_pings, acknowledge)| ClientOp::Misbehave {
                client, ignore_pings, acknowledge,
            }),
        1 => who.prop_map(|client| ClientOp::Reconnect { client }),
        6 => (1u8..20).prop_map(ClientOp::Run),
    ]
}

/// One case: how many clients, and the steps.
#[derive(Debug)]
pub struct AtomicClientInput {
    clients: usize,
    ops: Vec<ClientOp>,
}

/// The atomic client plugin against a hostile server.
pub struct AtomicClient;

impl Target for AtomicClient {
    type Input = AtomicClientInput;
    const NAME: &'static str = "atomic_client";

    fn generate(draw: &mut Draw) -> AtomicClientInput {
        AtomicClientInput {
            clients: draw.rng.usize(1..4),
            ops: draw.value(vec(client_op(), 10..100)),
        }
    }

    fn execute(input: &AtomicClientInput) {
        let channel = AtomicChannel::default();
        let mut server = server_app(DEFAULT_STEP, channel.connection_config());
        server.add_plugins(RenetServerPlugin);
        server.update();
        let mode = AtomicHarnessMode { channel };
        let mut h = TestHarness::from_server(mode, server, channel.id, DEFAULT_STEP);
        let ids: Vec<PlayerId> = (0..input.clients)
            .map(|_| {
                h.add_local_client(|app, _| {
                    app.add_plugins(AtomicClientPlugin { channel });
                })
            })
            .collect();
        let mut run = ClientRun {
            h,
            ids: ids.clone(),
            greeted: vec![false; ids.len()],
            sent: 0,
        };
        for op in &input.ops {
            run.step(op);
        }
        count("atomic_client_messages_from_server", run.sent);
    }
}

struct ClientRun {
    h: TestHarness<AtomicHarnessMode>,
    ids: Vec<PlayerId>,
    /// Whether each client's current connection said hello.
    greeted: Vec<bool>,
    sent: u64,
}

impl ClientRun {
    fn client(&self, i: u8) -> (usize, PlayerId) {
        let i = i as usize % self.ids.len();
        (i, self.ids[i])
    }

    /// The message a shape names for this client.
    fn message(&self, me: PlayerId, shape: &ServerShape) -> AtomicServerMessage {
        let ServerShape::Coherent {
            kind,
            m,
            lobby,
            flag,
        } = *shape
        else {
            let ServerShape::Any(message) = shape else {
                unreachable!()
            };
            return message.clone();
        };
        let (match_id, lobby_id) = (u64::from(m) + 1, u64::from(lobby) + 100);
        let category = "duel".to_owned();
        match kind {
            0 => AtomicServerMessage::Welcome {
                protocol_version: ATOMIC_PROTOCOL_VERSION,
                player: me,
            },
            1 => AtomicServerMessage::QueueJoined {
                category,
                position: 1,
                requeued: flag,
            },
            2 => AtomicServerMessage::MatchChecking {
                match_id,
                category,
                players: 2,
            },
            3 => AtomicServerMessage::Ping {
                nonce: u64::from(m),
            },
            4 => AtomicServerMessage::MatchProposed {
                match_id,
                lobby_id,
                lobby_code: "K7QX2M".into(),
                attempt: 1 + u32::from(lobby),
            },
            5 => AtomicServerMessage::MatchFound {
                match_id,
                lobby_id,
                lobby_code: "K7QX2M".into(),
                category,
                players: [me, me ^ 1]
                    .iter()
                    .map(|p| AtomicMatchedPlayer {
                        player: *p,
                        latency: Duration::from_millis(5),
                        host: flag,
                    })
                    .collect(),
            },
            6 => AtomicServerMessage::MatchCancelled {
                match_id,
                status: AtomicMatchStatus::Player2Disconnected,
                reason: AtomicMatchCancelReason::OtherPlayerUnavailable,
                requeued: flag,
            },
            _ => match flag {
                true => AtomicServerMessage::LobbyLeft { lobby_id },
                false => AtomicServerMessage::QueueLeft {
                    category,
                    reason: AtomicQueueLeftReason::Requested,
                },
            },
        }
    }

    fn send(&mut self, to: PlayerId, bytes: Vec<u8>) {
        let channel = self.h.channel_id;
        let mut server = self.h.server.world_mut().resource_mut::<RenetServer>();
        if server.is_connected(to) {
            server.send_message(to, channel, bytes);
            self.sent += 1;
        }
    }

    fn step(&mut self, op: &ClientOp) {
        match *op {
            ClientOp::Send { to, ref message } => {
                let (_, id) = self.client(to);
                let bytes = encode_unbounded(&self.message(id, message));
                self.send(id, bytes);
            }
            ClientOp::Bytes {
                to,
                ref message,
                ref bytes,
            } => {
                let (_, id) = self.client(to);
                let valid = encode_unbounded(&self.message(id, message));
                self.send(id, make_bytes(bytes, &valid));
            }
            ClientOp::Join {
                client,
                ref category,
            } => {
                let (_, id) = self.client(client);
                self.h.send(
                    id,
                    AtomicJoinQueue {
                        category: category.clone(),
                    },
                );
            }
            ClientOp::Leave { client } => self.h.send(self.client(client).1, AtomicLeaveQueue),
            ClientOp::LeaveLobby { client } => {
                self.h.send(self.client(client).1, AtomicLeaveLobby);
            }
            ClientOp::Misbehave {
                client,
                ignore_pings,
                acknowledge,
            } => {
                let (_, id) = self.client(client);
                let mut faults = self
                    .h
                    .client(id)
                    .world_mut()
                    .resource_mut::<AtomicClientFaults>();
                faults.ignore_pings = ignore_pings;
                faults.acknowledge_proposals = acknowledge;
            }
            ClientOp::Reconnect { client } => {
                let (i, id) = self.client(client);
                self.h.reconnect(id);
                self.greeted[i] = false;
            }
            ClientOp::Run(n) => {
                for _ in 0..n {
                    self.h.update();
                    self.read_clients();
                }
            }
        }
    }

    /// What the clients sent: messages that decode (but for the game's own invalid
    /// category, see [`client_message`]), the hello first on each connection.
    fn read_clients(&mut self) {
        let channel = self.h.channel_id;
        // the clients run on the server's config, and say so in their hello
        let fingerprint = self
            .h
            .server
            .world()
            .resource::<MatchmakingConnectionConfig>()
            .fingerprint;
        for (i, id) in self.ids.iter().enumerate() {
            let mut server = self.h.server.world_mut().resource_mut::<RenetServer>();
            while let Some(bytes) = server.receive_message(*id, channel) {
                let message = client_message(&bytes);
                count("atomic_client_messages_to_server", 1);
                if matches!(
                    message,
                    AtomicClientMessage::Pong { .. } | AtomicClientMessage::Acknowledge { .. }
                ) {
                    count("atomic_client_answers", 1);
                }
                let hello = message
                    == AtomicClientMessage::Hello {
                        protocol_version: ATOMIC_PROTOCOL_VERSION,
                        config_fingerprint: fingerprint,
                    };
                assert!(
                    self.greeted[i] || hello,
                    "client {id} sent {message:?} before its hello"
                );
                assert!(!(self.greeted[i] && hello), "client {id} said hello twice");
                self.greeted[i] = true;
            }
        }
    }
}

/// A message a client sent. The plugin passes the game's category on unchecked (the
/// server refuses an invalid one): a category long enough to fill the message is
/// refused by the codec itself (too large, or past bincode's allocation limit), which is
/// no fault of the client's encoding.
fn client_message(bytes: &[u8]) -> AtomicClientMessage {
    match codec::decode::<AtomicClientMessage>(bytes) {
        Ok(message) => message,
        Err(error) => {
            let unlimited = bincode::serde::decode_from_slice(bytes, bincode::config::standard());
            match unlimited {
                Ok((AtomicClientMessage::JoinQueue { category }, _))
                    if category.len() > MAX_CATEGORY_LEN =>
                {
                    count("atomic_client_joins_past_the_codec", 1);
                    AtomicClientMessage::JoinQueue { category }
                }
                _ => panic!("a client sent undecodable bytes ({error}): {bytes:?}"),
            }
        }
    }
}
