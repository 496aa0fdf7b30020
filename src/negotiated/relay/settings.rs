//! The relay's settings, and applying them when they change.

use std::time::Duration;

use bevy::prelude::*;

use crate::negotiated::core::journal::NegotiatedRelayJournal;
use crate::negotiated::core::relay_core::NegotiatedRelayLimits;
use crate::shared::gate::MatchmakingGatePolicy;

use super::shared::NegotiatedSharedFacts;
use super::state::NegotiatedRelayState;

/// Relay settings. The frame duration and the epoch are read when the plugin is built
/// (clients learn the frame duration from the welcome); the other fields may change at
/// run time.
///
/// ```
/// use std::time::Duration;
/// use bevy_atomic_matchmaking::prelude::*;
///
/// let settings = NegotiatedRelaySettings {
///     frame_duration: Duration::from_secs(30),
///     limits: NegotiatedRelayLimits {
///         max_facts: 10_000,
///         ..Default::default()
///     },
///     gate: MatchmakingGatePolicy {
///         max_strikes: 5,
///         ..Default::default()
///     },
///     ..Default::default()
/// };
/// let plugin = NegotiatedRelayPlugin {
///     settings,
///     ..Default::default()
/// };
/// # let _ = plugin;
/// ```
#[derive(Resource, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Resource, Debug, Clone, PartialEq, Default)]
pub struct NegotiatedRelaySettings {
    /// Length of one frame of the rolling queue: requests expire one to two frames after
    /// they were posted (the design's example is 15 minutes: `docs/design.md`, "Time
    /// frames"). Default 60 s.
    pub frame_duration: Duration,
    /// What the relay keeps at most: facts per connection and frame (default 256; its
    /// rejects of bids and withdrawals of its bids, at most one per bid, not counted),
    /// facts in all (default 100 000; past it posts are refused with `RelayFull` until
    /// frames expire, and a bidder's withdrawal of a stored bid always fits) and departed
    /// players remembered for later subscribers (default 10 000).
    pub limits: NegotiatedRelayLimits,
    /// The connection gate: strikes for bad messages (undecodable, oversized, before
    /// hello), the grace a refused connection gets so that the error reaches it, the rate
    /// limit (default 30 messages a second, 60 at once) and the abuse cooldown (default 60
    /// s; zero: none).
    pub gate: MatchmakingGatePolicy,
    /// Relay time = epoch + time since the app started. `None`: the Unix time when the
    /// plugin was built, so relay time is wall-clock time and frames survive restarts.
    /// Tests set a fixed epoch.
    pub epoch: Option<Duration>,
    /// Where the relay records every fact before it reports it stored, and reads them
    /// back when it starts, so that a restart keeps every match mutual (see
    /// [`NegotiatedRelayJournal`]). `None` (the default): facts live in memory only, and
    /// a restart between storing an accept and telling the bidder can leave the bidder
    /// unaware of its match. Read when the plugin is built. Not reflected (a handle to
    /// storage).
    #[reflect(ignore)]
    pub journal: Option<NegotiatedRelayJournal>,
    /// A fact store this relay shares with other relays, so that no relay is a single
    /// point of failure (see [`NegotiatedSharedFacts`]): the store decides every verdict,
    /// and the relay routes what the store's log says. `None` (the default): the relay
    /// keeps its own facts. Read when the plugin is built, with the frame duration and the
    /// limits (which every relay sharing the store must share too); a `journal` is then
    /// not used (the shared store is the record). Not reflected (a handle to storage).
    #[reflect(ignore)]
    pub shared: Option<NegotiatedSharedFacts>,
}

impl Default for NegotiatedRelaySettings {
    fn default() -> Self {
        Self {
            frame_duration: Duration::from_secs(60),
            limits: NegotiatedRelayLimits::default(),
            gate: MatchmakingGatePolicy::default(),
            epoch: None,
            journal: None,
            shared: None,
        }
    }
}

/// Applies changed limits to the relay's core (runs only when the settings changed).
pub(super) fn apply_settings(
    settings: Res<NegotiatedRelaySettings>,
    mut state: ResMut<NegotiatedRelayState>,
) {
    state.core.set_limits(settings.limits);
}
