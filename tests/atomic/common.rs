//! Helpers the atomic tests share.

use bevy_atomic_matchmaking::atomic::core::protocol::ServerMessage;
use bevy_atomic_matchmaking::atomic::testing::MatchmakingTestHarness;
use bevy_atomic_matchmaking::prelude::*;

/// A harness around a server with the default settings.
pub fn harness() -> MatchmakingTestHarness {
    MatchmakingTestHarness::new(MatchmakingServerSettings::default())
}

/// The kinds of the error messages among `messages`, in order.
pub fn errors(messages: &[ServerMessage]) -> Vec<MatchmakingErrorKind> {
    messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect()
}
