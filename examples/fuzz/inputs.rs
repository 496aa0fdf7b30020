//! Structure-aware inputs: proptest strategies for numbers at their edges, category names
//! and every wire message, drawn from a runner seeded per case (no shrinking: a failing
//! case is replayed from its seed instead).

use std::time::Duration;

use bevy_atomic_matchmaking::atomic::core::commit::AtomicMatchStatus;
use bevy_atomic_matchmaking::atomic::core::protocol::{
    ATOMIC_PROTOCOL_VERSION, AtomicClientMessage, AtomicErrorKind, AtomicMatchCancelReason,
    AtomicMatchedPlayer, AtomicQueueLeftReason, AtomicServerMessage,
};
use bevy_atomic_matchmaking::negotiated::core::fact::{
    NegotiatedAccept, NegotiatedBid, NegotiatedCancel, NegotiatedFact, NegotiatedFactId,
    NegotiatedReject, NegotiatedRequest, NegotiatedSignedFact,
};
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NEGOTIATED_PROTOCOL_VERSION, NegotiatedClientMessage, NegotiatedErrorKind,
    NegotiatedRelayMessage,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// The random sources of one case: a proptest runner for structured values and a fast
/// generator for bytes and choices, both from the case's seed.
pub struct Draw {
    runner: TestRunner,
    /// Bytes, mutations and small choices.
    pub rng: fastrand::Rng,
}

impl Draw {
    /// The sources of the case with this seed.
    pub fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8..].copy_from_slice(&(!seed).rotate_left(29).to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::XorShift, &bytes);
        Self {
            runner: TestRunner::new_with_rng(Config::default(), rng),
            rng: fastrand::Rng::with_seed(seed ^ 0x5DEE_CE66_D1CE_4E5B),
        }
    }

    /// One value of a strategy.
    pub fn value<S: Strategy>(&mut self, strategy: S) -> S::Value {
        strategy
            .new_tree(&mut self.runner)
            .expect("the fuzz strategies never reject")
            .current()
    }
}

/// The edges of the wire encoding (bincode varints switch width at 251, 2^16, 2^32)
/// and of arithmetic.
const U64_EDGES: [u64; 12] = [
    0,
    1,
    250,
    251,
    u16::MAX as u64,
    1 << 16,
    u32::MAX as u64,
    1 << 32,
    i64::MAX as u64,
    1 << 63,
    u64::MAX - 1,
    u64::MAX,
];

/// Any u64, often small or at an edge.
pub fn edge_u64() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        3 => 0u64..16,
        2 => select(&U64_EDGES[..]),
        2 => any::<u64>(),
    ]
}

/// Any u32, often small or at an edge.
pub fn edge_u32() -> impl Strategy<Value = u32> + Clone {
    prop_oneof![
        3 => 0u32..16,
        1 => select(vec![250, 251, u16::MAX as u32, 1 << 16, u32::MAX - 1, u32::MAX]),
        2 => any::<u32>(),
    ]
}

/// Any duration the wire can carry, often zero, short or at an edge.
pub fn edge_duration() -> impl Strategy<Value = Duration> + Clone {
    let nanos = prop_oneof![Just(0u32), Just(999_999_999u32), 0u32..1_000_000_000];
    prop_oneof![
        2 => (0u64..5_000).prop_map(Duration::from_millis),
        1 => (edge_u64(), nanos).prop_map(|(s, n)| Duration::new(s, n)),
        1 => Just(Duration::MAX),
    ]
}

/// Category names: the few a run shares (so that players meet), valid ones, and every
/// way to be invalid, up to names that fill a message.
pub fn category() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        6 => select(vec!["duel", "a", "b"]).prop_map(String::from),
        2 => "[A-Za-z0-9._-]{1,32}",
        1 => "[A-Za-z0-9._-]{33,40}",
        1 => ".{0,6}",
        1 => Just(String::new()),
        1 => (900usize..1024).prop_map(|n| "x".repeat(n)),
    ]
}

/// Free text (error messages, lobby codes), sometimes past the codec limit.
pub fn text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => ".{0,24}",
        1 => (200usize..1100).prop_map(|n| "é".repeat(n / 2)),
    ]
}

fn matchmaking_error_kind() -> impl Strategy<Value = AtomicErrorKind> + Clone {
    use AtomicErrorKind::*;
    select(vec![
        VersionMismatch,
        HelloRequired,
        Malformed,
        TooLarge,
        InvalidCategory,
        QueueFull,
        AlreadyQueued,
        AlreadyMatching,
        AlreadyInLobby,
        NotQueued,
        NotAMember,
        Unexpected,
        Abuse,
        Connection,
        RateLimited,
        ConnectFailed,
        ServerClosing,
        ConfigMismatch,
    ])
}

/// Every negotiated error kind.
pub fn negotiated_error_kind() -> impl Strategy<Value = NegotiatedErrorKind> + Clone {
    use NegotiatedErrorKind::*;
    select(vec![
        Malformed,
        TooLarge,
        HelloRequired,
        VersionMismatch,
        Abuse,
        InvalidCategory,
        InvalidSubscription,
        FrameOutOfRange,
        UnknownRequest,
        UnknownBid,
        RequestClosed,
        BidWithdrawn,
        BidAnswered,
        BidExpired,
        BidderDeparted,
        TooManyFacts,
        RelayFull,
        NotEntitled,
        Connection,
        Unexpected,
        RateLimited,
        ConnectFailed,
        ConfigMismatch,
        RelayClosing,
    ])
}

/// A protocol version: the right one mostly.
pub fn version(right: u32) -> impl Strategy<Value = u32> + Clone {
    prop_oneof![3 => Just(right), 1 => edge_u32()]
}

/// Any atomic client message.
pub fn client_message() -> impl Strategy<Value = AtomicClientMessage> + Clone {
    prop_oneof![
        (version(ATOMIC_PROTOCOL_VERSION), edge_u64()).prop_map(|(v, config_fingerprint)| {
            AtomicClientMessage::Hello {
                protocol_version: v,
                config_fingerprint,
            }
        }),
        category().prop_map(|category| AtomicClientMessage::JoinQueue { category }),
        Just(AtomicClientMessage::LeaveQueue),
        edge_u64().prop_map(|nonce| AtomicClientMessage::Pong { nonce }),
        (edge_u64(), edge_u64()).prop_map(|(match_id, lobby_id)| {
            AtomicClientMessage::Acknowledge { match_id, lobby_id }
        }),
        edge_u64().prop_map(|lobby_id| AtomicClientMessage::LeaveLobby { lobby_id }),
    ]
}

fn match_status() -> impl Strategy<Value = AtomicMatchStatus> + Clone {
    use AtomicMatchStatus::*;
    prop_oneof![
        6 => select(vec![
            Success,
            Player1Disconnected,
            Player2Disconnected,
            BothDisconnected,
            AllDisconnected,
            NotificationFailed,
            Aborted,
        ]),
        1 => vec(any::<u8>(), 0..20).prop_map(|indices| PlayersDisconnected { indices }),
    ]
}

fn cancel_reason() -> impl Strategy<Value = AtomicMatchCancelReason> + Clone {
    use AtomicMatchCancelReason::*;
    prop_oneof![
        6 => select(vec![
            OtherPlayerUnavailable,
            OtherPlayerDidNotConfirm,
            YouDidNotAnswer,
            YouDidNotAcknowledge,
            YouWithdrew,
            MatchAborted,
        ]),
        1 => (edge_duration(), edge_duration())
            .prop_map(|(latency, max)| YourLatencyTooHigh { latency, max }),
    ]
}

fn matched_player() -> impl Strategy<Value = AtomicMatchedPlayer> + Clone {
    (edge_u64(), edge_duration(), any::<bool>()).prop_map(|(player, latency, host)| {
        AtomicMatchedPlayer {
            player,
            latency,
            host,
        }
    })
}

/// Any atomic server message.
pub fn server_message() -> impl Strategy<Value = AtomicServerMessage> + Clone {
    prop_oneof![
        (version(ATOMIC_PROTOCOL_VERSION), edge_u64()).prop_map(|(protocol_version, player)| {
            AtomicServerMessage::Welcome {
                protocol_version,
                player,
            }
        }),
        (category(), edge_u32(), any::<bool>()).prop_map(|(category, position, requeued)| {
            AtomicServerMessage::QueueJoined {
                category,
                position,
                requeued,
            }
        }),
        category().prop_map(|category| AtomicServerMessage::QueueLeft {
            category,
            reason: AtomicQueueLeftReason::Requested
        }),
        (edge_u64(), category(), any::<u8>()).prop_map(|(match_id, category, players)| {
            AtomicServerMessage::MatchChecking {
                match_id,
                category,
                players,
            }
        }),
        edge_u64().prop_map(|nonce| AtomicServerMessage::Ping { nonce }),
        (edge_u64(), edge_u64(), text(), edge_u32()).prop_map(
            |(match_id, lobby_id, lobby_code, attempt)| AtomicServerMessage::MatchProposed {
                match_id,
                lobby_id,
                lobby_code,
                attempt,
            }
        ),
        (
            edge_u64(),
            edge_u64(),
            text(),
            category(),
            vec(matched_player(), 0..20)
        )
            .prop_map(|(match_id, lobby_id, lobby_code, category, players)| {
                AtomicServerMessage::MatchFound {
                    match_id,
                    lobby_id,
                    lobby_code,
                    category,
                    players,
                }
            }),
        (edge_u64(), match_status(), cancel_reason(), any::<bool>()).prop_map(
            |(match_id, status, reason, requeued)| AtomicServerMessage::MatchCancelled {
                match_id,
                status,
                reason,
                requeued,
            }
        ),
        edge_u64().prop_map(|lobby_id| AtomicServerMessage::LobbyLeft { lobby_id }),
        any::<bool>()
            .prop_map(|retry_elsewhere| AtomicServerMessage::ServerClosing { retry_elsewhere }),
        (matchmaking_error_kind(), text())
            .prop_map(|(kind, message)| AtomicServerMessage::Error { kind, message }),
    ]
}

fn fact_id() -> impl Strategy<Value = NegotiatedFactId> + Clone {
    edge_u64().prop_map(NegotiatedFactId)
}

/// Any fact.
pub fn fact() -> impl Strategy<Value = NegotiatedFact> + Clone {
    prop_oneof![
        (category(), edge_u64(), edge_u64()).prop_map(|(category, frame, created_us)| {
            NegotiatedFact::Request(NegotiatedRequest {
                category,
                frame,
                created_us,
            })
        }),
        (fact_id(), edge_u64(), edge_u64()).prop_map(|(request, created_us, deadline_us)| {
            NegotiatedFact::Bid(NegotiatedBid {
                request,
                created_us,
                deadline_us,
            })
        }),
        (fact_id(), fact_id())
            .prop_map(|(request, bid)| NegotiatedFact::Accept(NegotiatedAccept { request, bid })),
        (fact_id(), fact_id())
            .prop_map(|(request, bid)| NegotiatedFact::Reject(NegotiatedReject { request, bid })),
        (fact_id(), proptest::option::of(fact_id()))
            .prop_map(|(request, bid)| NegotiatedFact::Cancel(NegotiatedCancel { request, bid })),
    ]
}

/// Any fact with any author.
pub fn signed_fact() -> impl Strategy<Value = NegotiatedSignedFact> + Clone {
    (edge_u64(), fact()).prop_map(|(author, fact)| NegotiatedSignedFact::new(author, fact))
}

/// Any negotiated client message.
pub fn negotiated_client_message() -> impl Strategy<Value = NegotiatedClientMessage> + Clone {
    prop_oneof![
        (version(NEGOTIATED_PROTOCOL_VERSION), edge_u64()).prop_map(|(v, config_fingerprint)| {
            NegotiatedClientMessage::Hello {
                protocol_version: v,
                config_fingerprint,
            }
        }),
        edge_u64()
            .prop_map(|client_sent_us| NegotiatedClientMessage::TimeRequest { client_sent_us }),
        (category(), vec(edge_u64(), 0..8))
            .prop_map(|(category, frames)| NegotiatedClientMessage::Subscribe { category, frames }),
        Just(NegotiatedClientMessage::Unsubscribe),
        fact().prop_map(|fact| NegotiatedClientMessage::Post { fact }),
    ]
}

/// Any negotiated relay message.
pub fn negotiated_relay_message() -> impl Strategy<Value = NegotiatedRelayMessage> + Clone {
    use NegotiatedRelayMessage as M;
    prop_oneof![
        (version(NEGOTIATED_PROTOCOL_VERSION), edge_u64(), edge_u64()).prop_map(|(v, c, f)| {
            M::Welcome {
                protocol_version: v,
                client_id: c,
                frame_duration_us: f,
            }
        }),
        (edge_u64(), edge_u64(), edge_u64()).prop_map(|(a, b, c)| M::Time {
            client_sent_us: a,
            relay_received_us: b,
            relay_sent_us: c,
        }),
        (edge_u64(), fact()).prop_map(|(author, fact)| M::Fact { author, fact }),
        edge_u64().prop_map(|author| M::Departed { author }),
        any::<bool>().prop_map(|retry_elsewhere| M::RelayClosing { retry_elsewhere }),
        fact_id().prop_map(|fact| M::Stored { fact }),
        (fact_id(), negotiated_error_kind(), text()).prop_map(|(fact, kind, message)| M::Refused {
            fact,
            kind,
            message
        }),
        (category(), edge_u64()).prop_map(|(category, frame)| M::Synced { category, frame }),
        (negotiated_error_kind(), text()).prop_map(|(kind, message)| M::Error { kind, message }),
    ]
}
