//! The match and lobby entities, and the messages the server app reads.

use std::collections::HashMap;
use std::time::Duration;

use bevy::prelude::*;

use crate::atomic::core::commit::{
    AtomicCommitMachine, AtomicCommitOutcome, AtomicHealthCheck, AtomicMatchStatus,
};
use crate::atomic::core::protocol::AtomicMatchedPlayer;
use crate::atomic::core::queue::AtomicQueueTicket;
use crate::shared::player::PlayerId;

/// A match being formed: its entity lives from formation until commit or rollback.
///
/// Reflects its id, category, sessions, formation time and lobby; the tickets and the
/// commit machine are internal and not reflected (read them with [`machine`](Self::machine)).
#[derive(Component, Reflect, Debug)]
#[reflect(Component, Debug, from_reflect = false)]
pub struct AtomicMatch {
    pub(super) match_id: u64,
    pub(super) category: String,
    #[reflect(ignore)]
    pub(super) tickets: Vec<AtomicQueueTicket<PlayerId>>,
    /// The session each player was taken in with: the match touches no other.
    pub(super) sessions: HashMap<PlayerId, u64>,
    #[reflect(ignore)]
    pub(super) machine: AtomicCommitMachine<PlayerId>,
    pub(super) formed_at: Duration,
    pub(super) lobby: Option<MatchLobby>,
}

/// The lobby phase 2 created for a match.
#[derive(Reflect, Debug, Clone)]
#[reflect(Debug, Clone)]
pub(super) struct MatchLobby {
    pub(super) entity: Entity,
    pub(super) lobby_id: u64,
    pub(super) code: String,
}

impl AtomicMatch {
    /// The match id.
    pub fn match_id(&self) -> u64 {
        self.match_id
    }

    /// The category.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The players in match order (the first hosts).
    pub fn players(&self) -> impl Iterator<Item = PlayerId> + '_ {
        self.machine.players()
    }

    /// The commit state machine (read only).
    pub fn machine(&self) -> &AtomicCommitMachine<PlayerId> {
        &self.machine
    }

    /// The lobby entity, once phase 2 created it.
    pub fn lobby(&self) -> Option<Entity> {
        self.lobby.as_ref().map(|l| l.entity)
    }

    /// The session (connection) a player was taken into the match with; compare it with
    /// [`AtomicServerState::session`](crate::atomic::server::AtomicServerState::session) to tell whether the player is still on it.
    pub fn session(&self, player: PlayerId) -> Option<u64> {
        self.sessions.get(&player).copied()
    }

    /// The ticket a player was taken out of the queue with.
    pub(super) fn ticket(&self, player: PlayerId) -> Option<&AtomicQueueTicket<PlayerId>> {
        self.tickets.iter().find(|t| t.player == player)
    }

    /// The report of the match's end for the server app.
    pub(super) fn outcome(
        &self,
        outcome: &AtomicCommitOutcome<PlayerId>,
        requeued: Vec<PlayerId>,
        elapsed: Duration,
    ) -> AtomicMatchOutcome {
        let players = outcome
            .players
            .iter()
            .map(|r| AtomicPlayerHealth {
                player: r.player,
                health: r.health,
                acknowledged: r.acknowledged,
                requeued: r.requeued && requeued.contains(&r.player),
            })
            .collect();
        AtomicMatchOutcome {
            match_id: self.match_id,
            category: self.category.clone(),
            status: outcome.status.clone(),
            lobby_id: self.lobby.as_ref().map(|l| l.lobby_id),
            lobby_code: self.lobby.as_ref().map(|l| l.code.clone()),
            players,
            requeued,
            elapsed,
        }
    }
}

/// A lobby: created in phase 2, deleted on rollback, kept after commit until its last
/// member leaves. Despawn the entity to close it: members are freed (and told with
/// `LobbyLeft`); despawning the lobby of a match still in phase 2 rolls that match back.
#[derive(Component, Reflect, Debug, Clone)]
#[reflect(Component, Debug, Clone)]
pub struct AtomicLobby {
    /// Unique id.
    pub lobby_id: u64,
    /// Short human-readable code, unique among open lobbies.
    pub code: String,
    /// The category it was formed in.
    pub category: String,
    /// The hosting player (first in match order).
    pub host: PlayerId,
    /// Players in the lobby.
    pub members: Vec<PlayerId>,
    /// The match that created it.
    pub match_id: u64,
    /// Whether the match committed (false while phase 2 runs).
    pub committed: bool,
    /// The session each member joined with.
    pub(super) sessions: HashMap<PlayerId, u64>,
}

impl AtomicLobby {
    /// Takes a member out; true if the lobby is now empty (and should be despawned).
    pub(super) fn remove_member(&mut self, player: PlayerId) -> bool {
        self.members.retain(|p| *p != player);
        self.members.is_empty()
    }
}

/// One player's part in a [`AtomicMatchOutcome`].
#[derive(Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Debug, Clone, PartialEq)]
pub struct AtomicPlayerHealth {
    /// The player.
    pub player: PlayerId,
    /// What the health check (or a later disconnect) found.
    pub health: AtomicHealthCheck,
    /// Whether it acknowledged the proposal.
    pub acknowledged: bool,
    /// Whether it went back to the front of its queue.
    pub requeued: bool,
}

/// How one match attempt ended: written once per match, on commit or rollback.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicMatchOutcome {
    /// The match.
    pub match_id: u64,
    /// The category.
    pub category: String,
    /// Success or why it rolled back (for a pair, one of the five of `docs/design.md`, "Match statuses").
    pub status: AtomicMatchStatus,
    /// The lobby id, if phase 2 created one (on rollback it no longer exists).
    pub lobby_id: Option<u64>,
    /// The lobby code, if phase 2 created one.
    pub lobby_code: Option<String>,
    /// Every player in match order.
    pub players: Vec<AtomicPlayerHealth>,
    /// Players re-queued at the front, in match order.
    pub requeued: Vec<PlayerId>,
    /// From formation to the end.
    pub elapsed: Duration,
}

/// A committed match: start the game from this.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct AtomicMatchCommitted {
    /// The match.
    pub match_id: u64,
    /// The lobby entity.
    pub lobby: Entity,
    /// The lobby id.
    pub lobby_id: u64,
    /// The lobby code.
    pub lobby_code: String,
    /// The category.
    pub category: String,
    /// The players in match order with their measured latency (the first hosts).
    pub players: Vec<AtomicMatchedPlayer>,
}

pub use crate::atomic::core::commit::cancel_reason;
