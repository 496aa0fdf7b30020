//! The Bevy messages between the game and the plugin: the requests the game writes
//! ([`MatchmakingJoinQueue`], [`MatchmakingLeaveQueue`], [`MatchmakingLeaveLobby`]) and
//! the reports it reads.

use bevy::prelude::*;

use crate::atomic::core::commit::MatchStatus;
use crate::atomic::core::protocol::{MatchCancelReason, MatchedPlayer, MatchmakingErrorKind};
use crate::shared::player::PlayerId;

/// Game → plugin: take a ticket in this category (sent once the server welcomed us).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingJoinQueue {
    /// The category.
    pub category: String,
}

/// Game → plugin: give up the ticket, or withdraw from a match still forming.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatchmakingLeaveQueue;

/// Game → plugin: leave the lobby of the committed match.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatchmakingLeaveLobby;

/// The server accepted our hello.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingConnected {
    /// Our player id.
    pub player: PlayerId,
}

/// We hold a ticket.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingQueueJoined {
    /// The category.
    pub category: String,
    /// 1-based position.
    pub position: u32,
    /// Whether this is a priority re-queue after a cancelled match.
    pub requeued: bool,
}

/// Our ticket is gone without a match (we asked).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingQueueLeft {
    /// The category.
    pub category: String,
}

/// We were taken into a forming match: the server is checking every player.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingMatchChecking {
    /// The match.
    pub match_id: u64,
    /// The category.
    pub category: String,
    /// Players in the match.
    pub players: u8,
}

/// Phase 2: the server proposed the match (the plugin acknowledges it).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingMatchProposed {
    /// The match.
    pub match_id: u64,
    /// The lobby.
    pub lobby_id: u64,
    /// The lobby code.
    pub lobby_code: String,
    /// 1-based attempt.
    pub attempt: u32,
}

/// The match is committed: every player acknowledged.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingMatchFound {
    /// The match.
    pub match_id: u64,
    /// The lobby.
    pub lobby_id: u64,
    /// The lobby code.
    pub lobby_code: String,
    /// The category.
    pub category: String,
    /// Our own entry (with our measured latency).
    pub me: MatchedPlayer,
    /// The other players, in match order.
    pub others: Vec<MatchedPlayer>,
}

/// The match was rolled back.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingMatchCancelled {
    /// The match.
    pub match_id: u64,
    /// The rollback status.
    pub status: MatchStatus,
    /// Why, for us.
    pub reason: MatchCancelReason,
    /// Whether we are back at the front of the queue.
    pub requeued: bool,
}

/// We left the lobby.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingLobbyLeft {
    /// The lobby.
    pub lobby_id: u64,
}

/// Something went wrong: refused by the server, or a local problem.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingClientError {
    /// What.
    pub kind: MatchmakingErrorKind,
    /// For humans.
    pub message: String,
}
