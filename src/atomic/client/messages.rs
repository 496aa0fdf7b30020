//! The Bevy messages between the game and the plugin: the requests the game writes
//! ([`AtomicJoinQueue`], [`AtomicLeaveQueue`], [`AtomicLeaveLobby`]) and
//! the reports it reads.

use bevy::prelude::*;

use crate::atomic::core::commit::AtomicMatchStatus;
use crate::atomic::core::protocol::{
    AtomicErrorKind, AtomicMatchCancelReason, AtomicMatchedPlayer,
};
use crate::shared::player::PlayerId;

/// Game → plugin: take a ticket in this category (sent once the server welcomed us).
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicJoinQueue {
    /// The category.
    pub category: String,
}

/// Game → plugin: give up the ticket, or withdraw from a match still forming.
#[derive(Message, Reflect, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[reflect(Message, Debug, Clone, PartialEq, Default)]
pub struct AtomicLeaveQueue;

/// Game → plugin: leave the lobby of the committed match.
#[derive(Message, Reflect, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[reflect(Message, Debug, Clone, PartialEq, Default)]
pub struct AtomicLeaveLobby;

/// The server accepted our hello.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicConnected {
    /// Our player id.
    pub player: PlayerId,
}

/// We hold a ticket.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicQueueJoined {
    /// The category.
    pub category: String,
    /// 1-based position.
    pub position: u32,
    /// Whether this is a priority re-queue after a cancelled match.
    pub requeued: bool,
}

/// Our ticket is gone without a match (we asked).
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicQueueLeft {
    /// The category.
    pub category: String,
}

/// We were taken into a forming match: the server is checking every player.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicMatchChecking {
    /// The match.
    pub match_id: u64,
    /// The category.
    pub category: String,
    /// Players in the match.
    pub players: u8,
}

/// Phase 2: the server proposed the match (the plugin acknowledges it).
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicMatchProposed {
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
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicMatchFound {
    /// The match.
    pub match_id: u64,
    /// The lobby.
    pub lobby_id: u64,
    /// The lobby code.
    pub lobby_code: String,
    /// The category.
    pub category: String,
    /// Our own entry (with our measured latency).
    pub me: AtomicMatchedPlayer,
    /// The other players, in match order.
    pub others: Vec<AtomicMatchedPlayer>,
}

/// The match was rolled back.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicMatchCancelled {
    /// The match.
    pub match_id: u64,
    /// The rollback status.
    pub status: AtomicMatchStatus,
    /// Why, for us.
    pub reason: AtomicMatchCancelReason,
    /// Whether we are back at the front of the queue.
    pub requeued: bool,
}

/// We left the lobby.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicLobbyLeft {
    /// The lobby.
    pub lobby_id: u64,
}

/// The server is closing (draining): our ticket is gone, a lobby we are in stays until the
/// connection closes. Reconnect to another server (a connect token may list several) and
/// queue again.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicServerClosing {
    /// Another server of the same game takes players.
    pub retry_elsewhere: bool,
}

/// Something went wrong: refused by the server, or a local problem.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicClientError {
    /// What.
    pub kind: AtomicErrorKind,
    /// For humans.
    pub message: String,
}
