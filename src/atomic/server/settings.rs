//! The server's settings and live statistics.

use std::collections::BTreeMap;
use std::time::Duration;

use bevy::prelude::*;

use crate::atomic::core::commit::{CommitTimings, MatchStatus};
use crate::atomic::core::protocol::MAX_PLAYERS_PER_MATCH;
use crate::atomic::core::queue::MatchQueue;
use crate::atomic::core::stats::DurationWindow;
use crate::shared::gate::GatePolicy;
use crate::shared::player::PlayerId;

use super::state::MatchmakingServerState;

/// Server settings. Change the resource at run time: new matches use the new values,
/// matches already forming keep the timings they started with.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct MatchmakingServerSettings {
    /// How long a player has to answer the health ping (seed: 2 s).
    pub ping_timeout: Duration,
    /// Highest acceptable health-ping round trip (seed: 500 ms).
    pub max_latency: Duration,
    /// How long to wait for each proposal acknowledgement (seed: 2 s).
    pub notification_timeout: Duration,
    /// Proposal attempts per player (seed: 3).
    pub notification_attempts: u32,
    /// Pause between a timed-out proposal and the next attempt (seed: 100 ms).
    pub notification_backoff: Duration,
    /// Players per match, 2..=16 (default 2). Values outside are clamped.
    pub players_per_match: usize,
    /// Most tickets one category holds; joins beyond it get `QueueFull`. Priority
    /// re-queues after a rollback always fit.
    pub queue_capacity: usize,
    /// Bad messages (undecodable, oversized, before hello) a connection may send before
    /// it is disconnected.
    pub max_strikes: u32,
    /// How long a connection refused for a version mismatch or abuse stays open so that
    /// the error reaches it.
    pub disconnect_grace: Duration,
}

impl Default for MatchmakingServerSettings {
    fn default() -> Self {
        let timings = CommitTimings::default();
        Self {
            ping_timeout: timings.ping_timeout,
            max_latency: timings.max_latency,
            notification_timeout: timings.notification_timeout,
            notification_attempts: timings.notification_attempts,
            notification_backoff: timings.notification_backoff,
            players_per_match: 2,
            queue_capacity: 10_000,
            max_strikes: 3,
            disconnect_grace: Duration::from_millis(250),
        }
    }
}

impl MatchmakingServerSettings {
    /// The commit timings a new match snapshots.
    pub fn timings(&self) -> CommitTimings {
        CommitTimings {
            ping_timeout: self.ping_timeout,
            max_latency: self.max_latency,
            notification_timeout: self.notification_timeout,
            notification_attempts: self.notification_attempts.max(1),
            notification_backoff: self.notification_backoff,
        }
    }

    /// Players per match, clamped to 2..=16.
    pub fn group_size(&self) -> usize {
        self.players_per_match.clamp(2, MAX_PLAYERS_PER_MATCH)
    }

    /// The limits the connection gate enforces.
    pub(super) fn gate_policy(&self) -> GatePolicy {
        GatePolicy {
            max_strikes: self.max_strikes,
            disconnect_grace: self.disconnect_grace,
        }
    }
}

/// Live numbers about the server. Updated as things happen; percentiles on demand.
#[derive(Resource, Debug, Clone, Default)]
pub struct MatchmakingServerStats {
    /// Tickets per category (only non-empty categories).
    pub players_queued: BTreeMap<String, usize>,
    /// Match entities in phase 1 or 2.
    pub matches_in_flight: usize,
    /// Lobby entities alive.
    pub lobbies_open: usize,
    /// Matches formed since start.
    pub matches_formed: u64,
    /// Matches committed since start.
    pub matches_committed: u64,
    /// Matches rolled back since start.
    pub matches_rolled_back: u64,
    /// Rollbacks by [`MatchStatus::as_str`].
    pub rollbacks_by_status: BTreeMap<&'static str, u64>,
    /// Players put back at the front of a queue since start.
    pub players_requeued: u64,
    /// Connections closed for a version mismatch or abuse.
    pub connections_refused: u64,
    /// From first joining the queue to being taken into a match (per player).
    pub time_in_queue: DurationWindow,
    /// From a match forming to its commit (per committed match).
    pub time_to_commit: DurationWindow,
}

impl MatchmakingServerStats {
    /// Tickets over all categories.
    pub fn total_queued(&self) -> usize {
        self.players_queued.values().sum()
    }

    /// Copies a category's queue length after it changed.
    pub(super) fn sync_queued(&mut self, queue: &MatchQueue<PlayerId>, category: &str) {
        match queue.len(category) {
            0 => {
                self.players_queued.remove(category);
            }
            n => {
                self.players_queued.insert(category.to_owned(), n);
            }
        }
    }

    /// Counts a rollback and the players it put back in a queue.
    pub(super) fn rolled_back(&mut self, status: &MatchStatus, requeued: usize) {
        self.matches_rolled_back += 1;
        *self.rollbacks_by_status.entry(status.as_str()).or_default() += 1;
        self.players_requeued += requeued as u64;
    }
}

/// Applies changed queue settings (group size, capacity).
pub(super) fn apply_settings(
    settings: Res<MatchmakingServerSettings>,
    mut state: ResMut<MatchmakingServerState>,
) {
    if settings.is_changed() {
        state.configure_queue(settings.group_size(), settings.queue_capacity);
    }
}
