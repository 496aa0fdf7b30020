//! Helpers the atomic tests share.

use bevy_atomic_matchmaking::atomic::testing::MatchmakingTestHarness;
use bevy_atomic_matchmaking::prelude::*;

/// A harness around a server with the default settings.
pub fn harness() -> MatchmakingTestHarness {
    MatchmakingTestHarness::new(MatchmakingServerSettings::default())
}
