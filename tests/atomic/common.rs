//! Helpers the atomic tests share.

use bevy_atomic_matchmaking::atomic::core::protocol::AtomicServerMessage;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;
use bevy_atomic_matchmaking::testing::harness::finish_plugins;

/// A harness around a server with the default settings.
pub fn harness() -> AtomicTestHarness {
    AtomicTestHarness::new(AtomicServerSettings::default())
}

/// The kinds of the error messages among `messages`, in order.
pub fn errors(messages: &[AtomicServerMessage]) -> Vec<AtomicErrorKind> {
    messages
        .iter()
        .filter_map(|m| match m {
            AtomicServerMessage::Error { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect()
}

/// A server with the default settings on 127.0.0.1 (a free port) over renet_netcode, checking
/// connect tokens with `key`, on manual time of `step` a frame.
pub fn secure_udp_server(
    key: &bevy_atomic_matchmaking::transport::MatchmakingPrivateKey,
    step: std::time::Duration,
) -> (bevy::prelude::App, std::net::SocketAddr) {
    use bevy::prelude::*;
    let channel = AtomicChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(bevy::time::TimeUpdateStrategy::ManualDuration(step))
        .add_plugins(AtomicServerPlugin {
            channel,
            ..default()
        });
    let addr = bevy_atomic_matchmaking::transport::insert_secure_netcode_server(
        &mut app,
        "127.0.0.1:0".parse().unwrap(),
        8,
        channel.connection_config(),
        key,
    )
    .expect("bind 127.0.0.1:0");
    finish_plugins(&mut app);
    (app, addr)
}
