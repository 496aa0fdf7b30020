//! The server's settings and live statistics.

use std::collections::BTreeMap;
use std::time::Duration;

use bevy::prelude::*;

use crate::atomic::core::commit::{AtomicCommitTimings, AtomicMatchStatus};
use crate::atomic::core::protocol::ATOMIC_MAX_PLAYERS_PER_MATCH;
use crate::atomic::core::queue::AtomicQueue;
use crate::atomic::core::stats::DurationWindow;
use crate::shared::gate::{GatePolicy, MatchmakingRateLimit};
use crate::shared::player::PlayerId;

use super::state::AtomicServerState;

/// Server settings. Change the resource at run time: new matches use the new values,
/// matches already forming keep the timings they started with.
///
/// [`AtomicServerSettings::validate`] says what is wrong with a set of values; the
/// plugin checks the resource whenever it changes and replaces values below the minimums
/// with the minimums (with a warning), so a `ping_timeout` of zero never drops everyone.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct AtomicServerSettings {
    /// How long a player has to answer the health ping (seed: 2 s; at least 100 ms).
    pub ping_timeout: Duration,
    /// Highest acceptable health-ping round trip (seed: 500 ms; at least 10 ms, at most
    /// `ping_timeout`).
    pub max_latency: Duration,
    /// How long to wait for each proposal acknowledgement (seed: 2 s; at least 100 ms).
    pub notification_timeout: Duration,
    /// Proposal attempts per player (seed: 3; at least 1).
    pub notification_attempts: u32,
    /// Pause between a timed-out proposal and the next attempt (seed: 100 ms).
    pub notification_backoff: Duration,
    /// Players per match, 2..=16 (default 2). Values outside are clamped.
    pub players_per_match: usize,
    /// Most tickets one category holds (at least 1); joins beyond it get `QueueFull`.
    /// Priority re-queues after a rollback always fit.
    pub queue_capacity: usize,
    /// Most categories with tickets at once (at least 1, default 1 000): a join that
    /// would open one more gets `QueueFull`. With `queue_capacity` it bounds the queues'
    /// memory whatever names clients send. Priority re-queues always fit.
    pub max_categories: usize,
    /// Bad messages (undecodable, oversized, before hello) and refused requests a
    /// connection may send before it is disconnected (at least 1; one strike is forgiven
    /// per minute without a new one).
    pub max_strikes: u32,
    /// How long a connection refused for a version mismatch or abuse stays open so that
    /// the error reaches it.
    pub disconnect_grace: Duration,
    /// How fast one connection may send (default 30 messages a second, 60 at once); a
    /// message past it is dropped and earns a strike.
    pub rate_limit: MatchmakingRateLimit,
    /// How long a player refused for abuse (strikes) is refused again, at its first
    /// message, when it connects anew under the same id (default 60 s; zero: not at all).
    /// A refusal outlives the connection, so reconnecting does not buy a fresh budget.
    pub abuse_cooldown: Duration,
    /// A server frame longer than this is a stall (at least 20 ms, default 200 ms): a
    /// health ping whose answer or timeout it may have delayed is sent again instead of
    /// failing the player.
    pub stall_threshold: Duration,
}

impl Default for AtomicServerSettings {
    fn default() -> Self {
        let timings = AtomicCommitTimings::default();
        Self {
            ping_timeout: timings.ping_timeout,
            max_latency: timings.max_latency,
            notification_timeout: timings.notification_timeout,
            notification_attempts: timings.notification_attempts,
            notification_backoff: timings.notification_backoff,
            players_per_match: 2,
            queue_capacity: 10_000,
            max_categories: 1_000,
            max_strikes: 3,
            disconnect_grace: Duration::from_millis(250),
            rate_limit: MatchmakingRateLimit::default(),
            abuse_cooldown: Duration::from_secs(60),
            stall_threshold: timings.stall_threshold,
        }
    }
}

impl AtomicServerSettings {
    /// The smallest health-ping timeout the server accepts.
    pub const MIN_PING_TIMEOUT: Duration = Duration::from_millis(100);
    /// The smallest maximum latency the server accepts.
    pub const MIN_MAX_LATENCY: Duration = Duration::from_millis(10);
    /// The smallest proposal timeout the server accepts.
    pub const MIN_NOTIFICATION_TIMEOUT: Duration = Duration::from_millis(100);
    /// The smallest stall threshold the server accepts.
    pub const MIN_STALL_THRESHOLD: Duration = Duration::from_millis(20);

    /// `Ok` if every value is usable, otherwise what is wrong with each bad one.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut below = |name: &str, value: Duration, min: Duration| {
            if value < min {
                problems.push(format!("{name} {value:?} is below the minimum {min:?}"));
            }
        };
        below("ping_timeout", self.ping_timeout, Self::MIN_PING_TIMEOUT);
        below("max_latency", self.max_latency, Self::MIN_MAX_LATENCY);
        below(
            "notification_timeout",
            self.notification_timeout,
            Self::MIN_NOTIFICATION_TIMEOUT,
        );
        below(
            "stall_threshold",
            self.stall_threshold,
            Self::MIN_STALL_THRESHOLD,
        );
        if self.max_latency > self.ping_timeout.max(Self::MIN_PING_TIMEOUT) {
            problems.push(format!(
                "max_latency {:?} is above ping_timeout {:?}: no answer can be that late",
                self.max_latency, self.ping_timeout
            ));
        }
        let counts = [
            (
                "notification_attempts",
                self.notification_attempts as usize,
                1,
                usize::MAX,
            ),
            (
                "players_per_match",
                self.players_per_match,
                2,
                ATOMIC_MAX_PLAYERS_PER_MATCH,
            ),
            ("queue_capacity", self.queue_capacity, 1, usize::MAX),
            ("max_categories", self.max_categories, 1, usize::MAX),
            ("max_strikes", self.max_strikes as usize, 1, usize::MAX),
            (
                "rate_limit.messages_per_second",
                self.rate_limit.messages_per_second as usize,
                1,
                usize::MAX,
            ),
            (
                "rate_limit.burst",
                self.rate_limit.burst as usize,
                1,
                usize::MAX,
            ),
        ];
        for (name, value, min, max) in counts {
            if !(min..=max).contains(&value) {
                problems.push(format!("{name} {value} is outside {min}..={max}"));
            }
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(problems.join("; ")),
        }
    }

    /// These settings with every value brought within its bounds (what the server runs
    /// with).
    pub fn clamped(&self) -> Self {
        let ping_timeout = self.ping_timeout.max(Self::MIN_PING_TIMEOUT);
        Self {
            ping_timeout,
            max_latency: self.max_latency.clamp(Self::MIN_MAX_LATENCY, ping_timeout),
            notification_timeout: self
                .notification_timeout
                .max(Self::MIN_NOTIFICATION_TIMEOUT),
            notification_attempts: self.notification_attempts.max(1),
            notification_backoff: self.notification_backoff,
            players_per_match: self
                .players_per_match
                .clamp(2, ATOMIC_MAX_PLAYERS_PER_MATCH),
            queue_capacity: self.queue_capacity.max(1),
            max_categories: self.max_categories.max(1),
            max_strikes: self.max_strikes.max(1),
            disconnect_grace: self.disconnect_grace,
            rate_limit: MatchmakingRateLimit {
                messages_per_second: self.rate_limit.messages_per_second.max(1),
                burst: self.rate_limit.burst.max(1),
            },
            abuse_cooldown: self.abuse_cooldown,
            stall_threshold: self.stall_threshold.max(Self::MIN_STALL_THRESHOLD),
        }
    }

    /// The commit timings a new match snapshots (within bounds).
    pub fn timings(&self) -> AtomicCommitTimings {
        let s = self.clamped();
        AtomicCommitTimings {
            ping_timeout: s.ping_timeout,
            max_latency: s.max_latency,
            notification_timeout: s.notification_timeout,
            notification_attempts: s.notification_attempts,
            notification_backoff: s.notification_backoff,
            stall_threshold: s.stall_threshold,
        }
    }

    /// Players per match, clamped to 2..=16.
    pub fn group_size(&self) -> usize {
        self.players_per_match
            .clamp(2, ATOMIC_MAX_PLAYERS_PER_MATCH)
    }

    /// The limits the connection gate enforces (within bounds).
    pub(super) fn gate_policy(&self) -> GatePolicy {
        let s = self.clamped();
        GatePolicy {
            max_strikes: s.max_strikes,
            disconnect_grace: s.disconnect_grace,
            rate_limit: s.rate_limit,
            abuse_cooldown: s.abuse_cooldown,
        }
    }
}

/// Live numbers about the server. Updated as things happen; percentiles on demand.
#[derive(Resource, Debug, Clone, Default)]
pub struct AtomicServerStats {
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
    /// Rollbacks by [`AtomicMatchStatus::as_str`].
    pub rollbacks_by_status: BTreeMap<&'static str, u64>,
    /// Players put back at the front of a queue since start.
    pub players_requeued: u64,
    /// Players the commit machine said to re-queue, still connected on the same session,
    /// who were not re-queued. Always 0 unless the server has a bug (it is logged as an
    /// error, and debug builds panic on it).
    pub healthy_players_dropped: u64,
    /// Connections closed for a version mismatch or abuse.
    pub connections_refused: u64,
    /// From first joining the queue to being taken into a match, once per ticket (a
    /// re-queued player is not sampled again).
    pub time_in_queue: DurationWindow,
    /// From a match forming to its commit (per committed match).
    pub time_to_commit: DurationWindow,
}

impl AtomicServerStats {
    /// Tickets over all categories.
    pub fn total_queued(&self) -> usize {
        self.players_queued.values().sum()
    }

    /// Copies a category's queue length after it changed.
    pub(super) fn sync_queued(&mut self, queue: &AtomicQueue<PlayerId>, category: &str) {
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
    pub(super) fn rolled_back(&mut self, status: &AtomicMatchStatus, requeued: usize) {
        self.matches_rolled_back += 1;
        *self.rollbacks_by_status.entry(status.as_str()).or_default() += 1;
        self.players_requeued += requeued as u64;
    }
}

/// Checks changed settings (values out of bounds are replaced by the bound, with a
/// warning) and applies the queue settings (group size, capacity).
pub(super) fn apply_settings(
    mut settings: ResMut<AtomicServerSettings>,
    mut state: ResMut<AtomicServerState>,
) {
    if !settings.is_changed() {
        return;
    }
    if let Err(problems) = settings.validate() {
        let clamped = settings.clamped();
        warn!("matchmaking: invalid server settings ({problems}); using {clamped:?}");
        *settings = clamped;
    }
    state.configure_queue(
        settings.group_size(),
        settings.queue_capacity,
        settings.max_categories,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        let defaults = AtomicServerSettings::default();
        assert_eq!(defaults.validate(), Ok(()));
        assert_eq!(defaults.clamped(), defaults);
    }

    #[test]
    fn bad_values_are_named_and_clamped() {
        let bad = AtomicServerSettings {
            ping_timeout: Duration::ZERO,
            max_latency: Duration::from_secs(5),
            notification_timeout: Duration::ZERO,
            notification_attempts: 0,
            players_per_match: 40,
            queue_capacity: 0,
            max_strikes: 0,
            stall_threshold: Duration::ZERO,
            ..Default::default()
        };
        let problems = bad.validate().unwrap_err();
        for name in [
            "ping_timeout 0ns is below the minimum 100ms",
            "max_latency 5s is above ping_timeout",
            "notification_timeout",
            "notification_attempts 0",
            "players_per_match 40 is outside 2..=16",
            "queue_capacity 0",
            "max_strikes 0",
            "stall_threshold",
        ] {
            assert!(problems.contains(name), "{name} missing from: {problems}");
        }
        let fixed = bad.clamped();
        assert_eq!(fixed.validate(), Ok(()));
        assert_eq!(fixed.ping_timeout, AtomicServerSettings::MIN_PING_TIMEOUT);
        assert_eq!(fixed.max_latency, AtomicServerSettings::MIN_PING_TIMEOUT);
        assert_eq!(
            fixed.notification_timeout,
            AtomicServerSettings::MIN_NOTIFICATION_TIMEOUT
        );
        assert_eq!(fixed.notification_attempts, 1);
        assert_eq!(fixed.players_per_match, ATOMIC_MAX_PLAYERS_PER_MATCH);
        assert_eq!((fixed.queue_capacity, fixed.max_strikes), (1, 1));
        assert_eq!(
            fixed.stall_threshold,
            AtomicServerSettings::MIN_STALL_THRESHOLD
        );
        let timings = bad.timings();
        assert_eq!(timings.ping_timeout, AtomicServerSettings::MIN_PING_TIMEOUT);
        assert_eq!(bad.gate_policy().max_strikes, 1);
    }
}
