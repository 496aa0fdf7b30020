//! The server's settings and live statistics.

use std::collections::BTreeMap;
use std::time::Duration;

use bevy::prelude::*;

use crate::atomic::core::commit::{AtomicCommitTimings, AtomicMatchStatus};
use crate::atomic::core::protocol::ATOMIC_MAX_PLAYERS_PER_MATCH;
use crate::atomic::core::queue::AtomicQueue;
use crate::atomic::core::stats::DurationWindow;
use crate::shared::gate::MatchmakingGatePolicy;
use crate::shared::player::PlayerId;

use super::state::AtomicServerState;

/// Server settings. Change the resource at run time: new matches use the new values,
/// matches already forming keep the timings they started with.
///
/// [`AtomicServerSettings::validate`] says what is wrong with a set of values; the
/// plugin checks the resource once whenever it changes, replaces values out of bounds with
/// the bounds (with a warning), so a `ping_timeout` of zero never drops everyone, and runs
/// on that validated copy.
///
/// ```
/// use std::time::Duration;
/// use bevy_atomic_matchmaking::prelude::*;
///
/// let settings = AtomicServerSettings {
///     players_per_match: 4,
///     commit: AtomicCommitTimings {
///         ping_timeout: Duration::from_secs(1),
///         ..Default::default()
///     },
///     gate: MatchmakingGatePolicy {
///         max_strikes: 5,
///         ..Default::default()
///     },
///     ..Default::default()
/// };
/// assert!(settings.validate().is_ok());
/// let plugin = AtomicServerPlugin {
///     settings,
///     ..Default::default()
/// };
/// # let _ = plugin;
/// ```
#[derive(Resource, Reflect, Debug, Clone, PartialEq)]
#[reflect(Resource, Debug, Clone, PartialEq, Default)]
pub struct AtomicServerSettings {
    /// The two-phase commit's timings (the design's numbers by default: a 2 s ping timeout
    /// of at least 100 ms, a 500 ms round trip of at least 10 ms and at most the ping
    /// timeout, proposals of 2 s (at least 100 ms), 3 attempts (at least 1) 100 ms apart,
    /// and a stall threshold of 200 ms, at least 20 ms).
    pub commit: AtomicCommitTimings,
    /// Players per match, 2..=16 (default 2). Values outside are clamped.
    pub players_per_match: usize,
    /// Most tickets one category holds (at least 1); joins beyond it get `QueueFull`.
    /// Priority re-queues after a rollback always fit.
    pub queue_capacity: usize,
    /// Most categories with tickets at once (at least 1, default 1 000): a join that
    /// would open one more gets `QueueFull`. With `queue_capacity` it bounds the queues'
    /// memory whatever names clients send. Priority re-queues always fit.
    pub max_categories: usize,
    /// The connection gate: strikes (bad messages and refused requests, at least 1; one
    /// is forgiven per minute without a new one), the grace a refused connection gets, the
    /// rate limit (at least 1 a second and a burst of 1) and the abuse cooldown (a refusal
    /// outlives the connection, so reconnecting does not buy a fresh budget).
    pub gate: MatchmakingGatePolicy,
}

impl Default for AtomicServerSettings {
    fn default() -> Self {
        Self {
            commit: AtomicCommitTimings::default(),
            players_per_match: 2,
            queue_capacity: 10_000,
            max_categories: 1_000,
            gate: MatchmakingGatePolicy::default(),
        }
    }
}

/// What is wrong with a set of [`AtomicServerSettings`]: one line per bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct AtomicSettingsError {
    /// Each bad value, named by its field path, with its bound.
    pub problems: Vec<String>,
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
    pub fn validate(&self) -> Result<(), AtomicSettingsError> {
        let mut problems = Vec::new();
        let c = &self.commit;
        let mut below = |name: &str, value: Duration, min: Duration| {
            if value < min {
                problems.push(format!("{name} {value:?} is below the minimum {min:?}"));
            }
        };
        below(
            "commit.ping_timeout",
            c.ping_timeout,
            Self::MIN_PING_TIMEOUT,
        );
        below("commit.max_latency", c.max_latency, Self::MIN_MAX_LATENCY);
        below(
            "commit.notification_timeout",
            c.notification_timeout,
            Self::MIN_NOTIFICATION_TIMEOUT,
        );
        below(
            "commit.stall_threshold",
            c.stall_threshold,
            Self::MIN_STALL_THRESHOLD,
        );
        if c.max_latency > c.ping_timeout.max(Self::MIN_PING_TIMEOUT) {
            problems.push(format!(
                "commit.max_latency {:?} is above ping_timeout {:?}: no answer can be that late",
                c.max_latency, c.ping_timeout
            ));
        }
        let g = &self.gate;
        let counts = [
            (
                "commit.notification_attempts",
                c.notification_attempts as usize,
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
            ("gate.max_strikes", g.max_strikes as usize, 1, usize::MAX),
            (
                "gate.rate_limit.messages_per_second",
                g.rate_limit.messages_per_second as usize,
                1,
                usize::MAX,
            ),
            (
                "gate.rate_limit.burst",
                g.rate_limit.burst as usize,
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
            false => Err(AtomicSettingsError { problems }),
        }
    }

    /// These settings with every value brought within its bounds (what the server runs
    /// with).
    pub fn clamped(&self) -> Self {
        let c = &self.commit;
        let ping_timeout = c.ping_timeout.max(Self::MIN_PING_TIMEOUT);
        Self {
            commit: AtomicCommitTimings {
                ping_timeout,
                max_latency: c.max_latency.clamp(Self::MIN_MAX_LATENCY, ping_timeout),
                notification_timeout: c.notification_timeout.max(Self::MIN_NOTIFICATION_TIMEOUT),
                notification_attempts: c.notification_attempts.max(1),
                notification_backoff: c.notification_backoff,
                stall_threshold: c.stall_threshold.max(Self::MIN_STALL_THRESHOLD),
            },
            players_per_match: self.group_size(),
            queue_capacity: self.queue_capacity.max(1),
            max_categories: self.max_categories.max(1),
            gate: self.gate.clamped(),
        }
    }

    /// Players per match, clamped to 2..=16.
    pub fn group_size(&self) -> usize {
        self.players_per_match
            .clamp(2, ATOMIC_MAX_PLAYERS_PER_MATCH)
    }
}

/// The settings the server runs on: [`AtomicServerSettings`] as last validated (within
/// bounds), refreshed only when the resource changes.
#[derive(Resource, Debug, Clone)]
pub(super) struct ActiveSettings(pub(super) AtomicServerSettings);

/// Live numbers about the server. Updated as things happen; percentiles on demand.
#[derive(Resource, Reflect, Debug, Clone, Default)]
#[reflect(Resource, Debug, Clone, Default)]
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

/// Validates changed settings once (values out of bounds are replaced by the bound in the
/// resource, with a warning), keeps the validated copy the plugin runs on and applies the
/// queue settings (group size, capacity). Runs only when the resource changed.
pub(super) fn apply_settings(
    mut settings: ResMut<AtomicServerSettings>,
    mut active: ResMut<ActiveSettings>,
    mut state: ResMut<AtomicServerState>,
) {
    if let Err(problems) = settings.validate() {
        let clamped = settings.clamped();
        warn!("matchmaking: invalid server settings ({problems}); using {clamped:?}");
        *settings = clamped;
    }
    active.0 = settings.clone();
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
            commit: AtomicCommitTimings {
                ping_timeout: Duration::ZERO,
                max_latency: Duration::from_secs(5),
                notification_timeout: Duration::ZERO,
                notification_attempts: 0,
                stall_threshold: Duration::ZERO,
                ..Default::default()
            },
            players_per_match: 40,
            queue_capacity: 0,
            gate: MatchmakingGatePolicy {
                max_strikes: 0,
                ..Default::default()
            },
            ..Default::default()
        };
        let problems = bad.validate().unwrap_err().to_string();
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
        assert_eq!(
            fixed.commit.ping_timeout,
            AtomicServerSettings::MIN_PING_TIMEOUT
        );
        assert_eq!(
            fixed.commit.max_latency,
            AtomicServerSettings::MIN_PING_TIMEOUT
        );
        assert_eq!(
            fixed.commit.notification_timeout,
            AtomicServerSettings::MIN_NOTIFICATION_TIMEOUT
        );
        assert_eq!(fixed.commit.notification_attempts, 1);
        assert_eq!(fixed.players_per_match, ATOMIC_MAX_PLAYERS_PER_MATCH);
        assert_eq!((fixed.queue_capacity, fixed.gate.max_strikes), (1, 1));
        assert_eq!(
            fixed.commit.stall_threshold,
            AtomicServerSettings::MIN_STALL_THRESHOLD
        );
        let timings = bad.clamped().commit;
        assert_eq!(timings.ping_timeout, AtomicServerSettings::MIN_PING_TIMEOUT);
        assert_eq!(bad.clamped().gate.max_strikes, 1);
    }
}
