//! Wire messages of atomic matchmaking, carried on the matchmaking channel.
//!
//! Clients never name a player: the server knows who sent a message from its connection.
//! Match and lobby ids a client sends are checked against that connection.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::commit::AtomicMatchStatus;
#[cfg(test)]
use crate::shared::player::MAX_CATEGORY_LEN;
use crate::shared::player::PlayerId;

/// Version of the atomic matchmaking protocol; a client with another version is refused.
///
/// 3: the server rate-limits connections ([`AtomicErrorKind::RateLimited`]).
/// 4: the server drains ([`AtomicServerMessage::ServerClosing`],
/// [`AtomicErrorKind::ServerClosing`]).
/// 5: the hello carries the connection config's fingerprint
/// ([`AtomicErrorKind::ConfigMismatch`]).
pub const ATOMIC_PROTOCOL_VERSION: u32 = 5;

/// Largest match the protocol carries.
pub const ATOMIC_MAX_PLAYERS_PER_MATCH: usize = 16;

/// Client to server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AtomicClientMessage {
    /// First message of a connection.
    Hello {
        /// The client's [`ATOMIC_PROTOCOL_VERSION`].
        protocol_version: u32,
        /// The fingerprint of the client's connection config (0: unknown); see
        /// `MatchmakingConnectionConfig`.
        config_fingerprint: u64,
    },
    /// Take a ticket in a category's queue.
    JoinQueue {
        /// The category.
        category: String,
    },
    /// Give up the ticket (or withdraw from a match still forming).
    LeaveQueue,
    /// Answer to [`AtomicServerMessage::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Acknowledge a [`AtomicServerMessage::MatchProposed`].
    Acknowledge {
        /// The proposed match.
        match_id: u64,
        /// The proposed lobby.
        lobby_id: u64,
    },
    /// Leave a committed lobby.
    LeaveLobby {
        /// The lobby.
        lobby_id: u64,
    },
}

/// Why a client left the queue without a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AtomicQueueLeftReason {
    /// The client asked to leave.
    Requested,
}

/// Why a match in progress was cancelled, from the receiving player's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AtomicMatchCancelReason {
    /// Another player failed the health check (disconnected, did not answer, too slow).
    OtherPlayerUnavailable,
    /// Another player did not acknowledge the proposal, or left during phase 2.
    OtherPlayerDidNotConfirm,
    /// This player's round trip was above the maximum latency.
    YourLatencyTooHigh {
        /// Measured round trip.
        latency: Duration,
        /// The limit.
        max: Duration,
    },
    /// This player did not answer the health ping in time.
    YouDidNotAnswer,
    /// This player did not acknowledge the proposal after every attempt.
    YouDidNotAcknowledge,
    /// This player left the queue while the match was forming.
    YouWithdrew,
    /// The server called the match off (its app removed the match or the lobby).
    MatchAborted,
}

impl std::fmt::Display for AtomicMatchCancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AtomicMatchCancelReason::OtherPlayerUnavailable => {
                write!(f, "another player failed the connection check")
            }
            AtomicMatchCancelReason::OtherPlayerDidNotConfirm => {
                write!(f, "another player did not confirm the match")
            }
            AtomicMatchCancelReason::YourLatencyTooHigh { latency, max } => write!(
                f,
                "your latency {} ms is above the {} ms limit",
                latency.as_millis(),
                max.as_millis()
            ),
            AtomicMatchCancelReason::YouDidNotAnswer => {
                write!(f, "you did not answer the health check")
            }
            AtomicMatchCancelReason::YouDidNotAcknowledge => {
                write!(f, "you did not acknowledge the match")
            }
            AtomicMatchCancelReason::YouWithdrew => write!(f, "you left the queue"),
            AtomicMatchCancelReason::MatchAborted => write!(f, "the server called the match off"),
        }
    }
}

/// Kinds of errors the server reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AtomicErrorKind {
    /// The client speaks another protocol version; the connection is closed.
    VersionMismatch,
    /// A message came before the hello.
    HelloRequired,
    /// Bytes that do not decode; repeated offences close the connection.
    Malformed,
    /// A message over the size limit; repeated offences close the connection.
    TooLarge,
    /// The category name is not valid.
    InvalidCategory,
    /// The category's queue is at capacity.
    QueueFull,
    /// The player already holds a ticket.
    AlreadyQueued,
    /// The player is in a match that is forming.
    AlreadyMatching,
    /// The player is in a lobby and must leave it first.
    AlreadyInLobby,
    /// The player has no ticket to give up.
    NotQueued,
    /// The id names a match or lobby the player is not part of.
    NotAMember,
    /// The message does not fit the current state (a stale acknowledgement, a second hello).
    Unexpected,
    /// Too many bad messages: the connection is closed.
    Abuse,
    /// The client lost or could not keep its connection (reported locally by the client).
    Connection,
    /// A message over the connection's rate limit was dropped (a strike).
    RateLimited,
    /// The connection never opened: a wrong address, a server that is down, a refused,
    /// expired or wrong-key token, or secure against insecure (reported locally by the
    /// client, once per attempt, after `AtomicClientSettings::connect_timeout` or as
    /// soon as netcode gives up). A connection lost after it opened is
    /// [`Connection`](Self::Connection).
    ConnectFailed,
    /// The server is draining (closing): it takes no new tickets. Reconnect elsewhere.
    ServerClosing,
    /// The client's connection config differs from the server's (another channel id, the
    /// other mode's config, a dedicated config against a shared one): the connection is
    /// closed. Also reported locally when the client's own config lacks its channel.
    ConfigMismatch,
    /// The matchmaking store of a cluster (its Redis) cannot be reached: the ticket was
    /// refused and nothing is queued. Try again shortly.
    StoreUnavailable,
}

/// Another player of a match, as the confirmation tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtomicMatchedPlayer {
    /// The player.
    pub player: PlayerId,
    /// Its round trip measured in the health check.
    pub latency: Duration,
    /// Whether it hosts the lobby.
    pub host: bool,
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AtomicServerMessage {
    /// The hello was accepted.
    Welcome {
        /// The server's protocol version.
        protocol_version: u32,
        /// The id the server knows this player by.
        player: PlayerId,
    },
    /// The player holds a ticket.
    QueueJoined {
        /// The category.
        category: String,
        /// 1-based position in the queue.
        position: u32,
        /// Whether this is a priority re-queue after a rollback.
        requeued: bool,
    },
    /// The ticket is gone without a match.
    QueueLeft {
        /// The category.
        category: String,
        /// Why.
        reason: AtomicQueueLeftReason,
    },
    /// The player was taken from the queue into a forming match: phase 1, the health
    /// check, starts (the client reports `AtomicMatchChecking`).
    MatchChecking {
        /// The match.
        match_id: u64,
        /// Its category.
        category: String,
        /// How many players it has.
        players: u8,
    },
    /// Health check: answer with [`AtomicClientMessage::Pong`] at once.
    Ping {
        /// Echo this.
        nonce: u64,
    },
    /// Phase 2: the lobby exists; acknowledge with [`AtomicClientMessage::Acknowledge`].
    MatchProposed {
        /// The match.
        match_id: u64,
        /// The lobby.
        lobby_id: u64,
        /// The lobby's short code.
        lobby_code: String,
        /// 1-based attempt number.
        attempt: u32,
    },
    /// Every player acknowledged: the match is committed (the client reports
    /// `AtomicMatchFound`, the server app `AtomicMatchCommitted`).
    MatchFound {
        /// The match.
        match_id: u64,
        /// The lobby.
        lobby_id: u64,
        /// The lobby's short code.
        lobby_code: String,
        /// The category.
        category: String,
        /// Every player including the receiver, in match order (the first hosts).
        players: Vec<AtomicMatchedPlayer>,
    },
    /// The match was rolled back.
    MatchCancelled {
        /// The match.
        match_id: u64,
        /// The rollback status.
        status: AtomicMatchStatus,
        /// Why, for this player.
        reason: AtomicMatchCancelReason,
        /// Whether this player is back at the front of the queue.
        requeued: bool,
    },
    /// The player left the lobby (it asked to).
    LobbyLeft {
        /// The lobby.
        lobby_id: u64,
    },
    /// The server is closing (draining): the player's ticket is gone, a match in flight
    /// finishes or is cancelled first, a lobby stays until the connection closes. Sent once
    /// per connection.
    ServerClosing {
        /// Another server of the same game takes players: reconnect there (a connect token
        /// can list several server addresses) and queue again.
        retry_elsewhere: bool,
    },
    /// Something the client sent was refused.
    Error {
        /// What went wrong.
        kind: AtomicErrorKind,
        /// A message for humans.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::codec::{MAX_MESSAGE_BYTES, decode, encode};

    #[test]
    fn largest_confirmation_fits_the_codec() {
        let m = AtomicServerMessage::MatchFound {
            match_id: u64::MAX,
            lobby_id: u64::MAX,
            lobby_code: "ABCDEFGH".into(),
            category: "x".repeat(MAX_CATEGORY_LEN),
            players: (0..ATOMIC_MAX_PLAYERS_PER_MATCH as u64)
                .map(|p| AtomicMatchedPlayer {
                    player: u64::MAX - p,
                    latency: Duration::new(u64::MAX, 999_999_999),
                    host: p == 0,
                })
                .collect(),
        };
        let bytes = encode(&m);
        assert!(bytes.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(decode::<AtomicServerMessage>(&bytes).unwrap(), m);
    }
}
