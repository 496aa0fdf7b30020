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

/// A server with the default settings on 127.0.0.1 (a free port) over renet_netcode, checking
/// connect tokens with `key`, on manual time of `step` a frame.
pub fn secure_udp_server(
    key: &bevy_atomic_matchmaking::shared::transport::MatchmakingPrivateKey,
    step: std::time::Duration,
) -> (bevy::prelude::App, std::net::SocketAddr) {
    use bevy::prelude::*;
    let channel = MatchmakingChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(bevy::time::TimeUpdateStrategy::ManualDuration(step))
        .add_plugins(MatchmakingServerPlugin {
            channel,
            ..default()
        });
    let addr = bevy_atomic_matchmaking::shared::transport::insert_secure_netcode_server(
        &mut app,
        "127.0.0.1:0".parse().unwrap(),
        8,
        channel.connection_config(),
        key,
    )
    .expect("bind 127.0.0.1:0");
    (app, addr)
}
