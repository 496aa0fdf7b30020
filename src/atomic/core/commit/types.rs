//! The commit machine's types: its timings, what it finds out about each player, how a
//! match ends, and the actions it asks its caller for.

use std::time::Duration;

use crate::atomic::core::protocol::AtomicMatchCancelReason;

/// Timings of one commit, snapshotted when the match forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicCommitTimings {
    /// How long a player has to answer the health ping.
    pub ping_timeout: Duration,
    /// Highest acceptable round trip for the health ping.
    pub max_latency: Duration,
    /// How long to wait for an acknowledgement of one proposal attempt.
    pub notification_timeout: Duration,
    /// How many proposal attempts a player gets.
    pub notification_attempts: u32,
    /// Pause between a timed-out attempt and the next.
    pub notification_backoff: Duration,
    /// A gap between two polls longer than this is a stall of the caller (a frame that took
    /// too long): health answers and timeouts it may have delayed are measured again.
    pub stall_threshold: Duration,
}

/// Health pings a player gets at most: the first, and new ones after stalls of the caller.
/// The answer to the last is judged whatever happened.
pub const ATOMIC_MAX_HEALTH_PINGS: u32 = 4;

impl Default for AtomicCommitTimings {
    /// The design's numbers (`docs/design.md`, "Two-phase commit"): 2 s ping timeout, 500 ms latency, 2 s per attempt, 3 attempts,
    /// 100 ms apart; a poll gap over 200 ms is a stall.
    fn default() -> Self {
        Self {
            ping_timeout: Duration::from_secs(2),
            max_latency: Duration::from_millis(500),
            notification_timeout: Duration::from_secs(2),
            notification_attempts: 3,
            notification_backoff: Duration::from_millis(100),
            stall_threshold: Duration::from_millis(200),
        }
    }
}

/// What phase 1 found out about one player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AtomicHealthCheck {
    /// Still waiting for the pong.
    Pending,
    /// Connected and answered in time.
    Healthy {
        /// Measured round trip.
        latency: Duration,
    },
    /// Answered, but the round trip was above the maximum latency.
    TooSlow {
        /// Measured round trip.
        latency: Duration,
    },
    /// Did not answer within the ping timeout.
    NoAnswer,
    /// The connection was lost.
    Disconnected,
    /// The player left the queue while its match was forming.
    Withdrew,
}

impl AtomicHealthCheck {
    /// Whether the player passed the health check.
    pub fn is_healthy(&self) -> bool {
        matches!(self, AtomicHealthCheck::Healthy { .. })
    }

    /// The measured round trip, when there was one.
    pub fn latency(&self) -> Option<Duration> {
        match self {
            AtomicHealthCheck::Healthy { latency } | AtomicHealthCheck::TooSlow { latency } => {
                Some(*latency)
            }
            _ => None,
        }
    }
}

/// The result of a match attempt. For a pair it is exactly one of the five statuses of
/// `docs/design.md` ("Match statuses").
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AtomicMatchStatus {
    /// Every player was healthy and acknowledged: the match is committed.
    Success,
    /// Pair only: the first player failed the health check, the second passed.
    Player1Disconnected,
    /// Pair only: the second player failed the health check, the first passed.
    Player2Disconnected,
    /// Pair only: both players failed the health check.
    BothDisconnected,
    /// Three or more players: these players (0-based indices in match order) failed the
    /// health check and the others passed.
    PlayersDisconnected {
        /// Indices of the unhealthy players.
        indices: Vec<u8>,
    },
    /// Three or more players: every player failed the health check.
    AllDisconnected,
    /// Phase 2 failed: a player did not acknowledge the proposal in time, or disconnected
    /// or withdrew after passing the health check.
    NotificationFailed,
    /// The match was called off from outside (the server app removed the match or its
    /// lobby before the commit): every player still in it goes back to the queue.
    Aborted,
}

impl AtomicMatchStatus {
    /// The status for a failed health check, given each player's health in match order.
    pub fn from_health(healthy: &[bool]) -> AtomicMatchStatus {
        let unhealthy: Vec<u8> = healthy
            .iter()
            .enumerate()
            .filter(|(_, ok)| !**ok)
            .map(|(i, _)| i as u8)
            .collect();
        match (healthy.len(), unhealthy.as_slice()) {
            (_, []) => AtomicMatchStatus::Success,
            (2, [0]) => AtomicMatchStatus::Player1Disconnected,
            (2, [1]) => AtomicMatchStatus::Player2Disconnected,
            (2, _) => AtomicMatchStatus::BothDisconnected,
            (n, u) if u.len() == n => AtomicMatchStatus::AllDisconnected,
            _ => AtomicMatchStatus::PlayersDisconnected { indices: unhealthy },
        }
    }

    /// The design's snake-case name (`"success"`, `"player1_disconnected"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            AtomicMatchStatus::Success => "success",
            AtomicMatchStatus::Player1Disconnected => "player1_disconnected",
            AtomicMatchStatus::Player2Disconnected => "player2_disconnected",
            AtomicMatchStatus::BothDisconnected => "both_disconnected",
            AtomicMatchStatus::PlayersDisconnected { .. } => "players_disconnected",
            AtomicMatchStatus::AllDisconnected => "all_disconnected",
            AtomicMatchStatus::NotificationFailed => "notification_failed",
            AtomicMatchStatus::Aborted => "aborted",
        }
    }

    /// Whether the match was committed.
    pub fn is_success(&self) -> bool {
        *self == AtomicMatchStatus::Success
    }
}

impl std::fmt::Display for AtomicMatchStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a player's proposal stands in phase 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicAckState {
    /// Phase 2 has not started.
    NotProposed,
    /// Proposal `attempt` was sent; waiting for the acknowledgement until `deadline`.
    Waiting {
        /// 1-based attempt number.
        attempt: u32,
        /// When this attempt times out.
        deadline: Duration,
    },
    /// Attempt `attempt` timed out; the next goes out at `at`.
    Backoff {
        /// The attempt to send next.
        attempt: u32,
        /// When to send it.
        at: Duration,
    },
    /// The player acknowledged.
    Acknowledged,
    /// Every attempt timed out.
    Failed,
}

/// One player's final report in a [`AtomicCommitOutcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicPlayerReport<P> {
    /// The player.
    pub player: P,
    /// Its health as phase 1 (or a later disconnect) left it.
    pub health: AtomicHealthCheck,
    /// Whether it acknowledged the proposal.
    pub acknowledged: bool,
    /// Whether it goes back to the front of the queue.
    pub requeued: bool,
}

/// How a match attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicCommitOutcome<P> {
    /// Success or the reason for the rollback.
    pub status: AtomicMatchStatus,
    /// Every player, in match order.
    pub players: Vec<AtomicPlayerReport<P>>,
}

impl AtomicCommitOutcome<crate::shared::player::PlayerId> {
    /// The players of a committed match in match order with their latency (the first
    /// hosts), as the match-found message lists them.
    pub fn matched_players(&self) -> Vec<crate::atomic::core::protocol::AtomicMatchedPlayer> {
        self.players
            .iter()
            .enumerate()
            .map(
                |(i, r)| crate::atomic::core::protocol::AtomicMatchedPlayer {
                    player: r.player,
                    latency: r.health.latency().unwrap_or_default(),
                    host: i == 0,
                },
            )
            .collect()
    }
}

impl<P: Copy> AtomicCommitOutcome<P> {
    /// Players to put back at the front of the queue, in match order.
    pub fn requeue(&self) -> Vec<P> {
        self.players
            .iter()
            .filter(|r| r.requeued)
            .map(|r| r.player)
            .collect()
    }
}

/// Something the caller must do for the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtomicCommitAction<P> {
    /// Send the health ping with this nonce to the player (phase 1 start).
    Ping {
        /// Who to ping.
        player: P,
        /// The nonce the pong must echo.
        nonce: u64,
    },
    /// Every player is healthy: create the lobby now (before the proposals that follow).
    CreateLobby,
    /// Send (or resend) the proposal to the player.
    Propose {
        /// Who to notify.
        player: P,
        /// 1-based attempt number.
        attempt: u32,
    },
    /// The match is over: commit on success, otherwise roll back (delete the lobby if
    /// one was created, re-queue the players marked `requeued`).
    Finish(AtomicCommitOutcome<P>),
}

/// Why an event from a player was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AtomicCommitEventError {
    /// The player is not part of this match.
    #[error("the player is not part of this match")]
    NotAMember,
    /// The pong's nonce is not the one this player was sent.
    #[error("the pong's nonce is not the one this player was sent")]
    WrongNonce,
    /// The event does not fit the current phase (a late or duplicate pong or acknowledgement).
    #[error("the event does not fit the match's phase (late or duplicate)")]
    Unexpected,
}

/// Why the match was cancelled, from this player's point of view.
pub fn cancel_reason<P>(
    status: &AtomicMatchStatus,
    report: &AtomicPlayerReport<P>,
    max_latency: Duration,
) -> AtomicMatchCancelReason {
    if *status == AtomicMatchStatus::Aborted && report.requeued {
        return AtomicMatchCancelReason::MatchAborted;
    }
    match report.health {
        AtomicHealthCheck::TooSlow { latency } => AtomicMatchCancelReason::YourLatencyTooHigh {
            latency,
            max: max_latency,
        },
        AtomicHealthCheck::NoAnswer => AtomicMatchCancelReason::YouDidNotAnswer,
        AtomicHealthCheck::Withdrew => AtomicMatchCancelReason::YouWithdrew,
        AtomicHealthCheck::Healthy { .. } if !report.requeued => {
            AtomicMatchCancelReason::YouDidNotAcknowledge
        }
        _ if *status == AtomicMatchStatus::NotificationFailed => {
            AtomicMatchCancelReason::OtherPlayerDidNotConfirm
        }
        _ => AtomicMatchCancelReason::OtherPlayerUnavailable,
    }
}
