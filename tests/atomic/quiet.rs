//! The quiet transports over real UDP on 127.0.0.1 (port 0), on manual time: a match
//! commits between a quiet client and a renet_netcode client (the protocol is netcode's),
//! idle connections stop the ack ping-pong that renet keeps up every frame, and acks ride
//! along with messages between quiet ends only.

use bevy_atomic_matchmaking::testing::harness::finish_plugins;
use std::time::Duration;

use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy::time::TimeUpdateStrategy;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{
    MatchmakingAckPolicy, MatchmakingPrivateKey, MatchmakingQuietClientTransport,
    MatchmakingQuietServerTransport, MatchmakingTokenIssuer, insert_quiet_secure_client,
    insert_quiet_secure_server, insert_secure_netcode_client,
};

const STEP: Duration = Duration::from_millis(16);

fn manual(app: &mut App) {
    app.insert_resource(TimeUpdateStrategy::ManualDuration(STEP));
}

/// A quiet server with `policy`, a quiet client (600) and a renet_netcode client (601),
/// both queued in "duel".
fn setup(policy: MatchmakingAckPolicy) -> (App, Vec<App>) {
    let channel = AtomicChannel::default();
    let key = MatchmakingPrivateKey::generate();
    let issuer = MatchmakingTokenIssuer::new(key.clone());
    let mut server = App::new();
    server
        .add_plugins(MinimalPlugins)
        .add_plugins(AtomicServerPlugin {
            channel,
            ..default()
        });
    manual(&mut server);
    let any = "127.0.0.1:0".parse().unwrap();
    server.insert_resource(policy);
    let addr = insert_quiet_secure_server(&mut server, any, 8, channel.connection_config(), &key)
        .expect("bind 127.0.0.1:0");
    finish_plugins(&mut server);
    let clients = (600..602u64)
        .map(|id| {
            let mut app = App::new();
            app.add_plugins(MinimalPlugins).add_plugins(StatesPlugin);
            manual(&mut app);
            let token = issuer
                .issue(id, Duration::from_secs(60), &[addr], &[])
                .expect("mint");
            let config = channel.connection_config();
            if id == 600 {
                app.insert_resource(policy);
                insert_quiet_secure_client(&mut app, token, config)
            } else {
                insert_secure_netcode_client(&mut app, token, config)
            }
            .expect("client socket");
            app.add_plugins(AtomicClientPlugin { channel });
            finish_plugins(&mut app);
            app.world_mut().write_message(AtomicJoinQueue {
                category: "duel".into(),
            });
            app
        })
        .collect();
    (server, clients)
}

fn update(server: &mut App, clients: &mut [App]) {
    server.update();
    for c in clients.iter_mut() {
        c.update();
    }
    std::thread::sleep(Duration::from_millis(1));
}

fn state(app: &App) -> AtomicClientState {
    *app.world().resource::<State<AtomicClientState>>().get()
}

/// How long the idle window lasts.
const IDLE: Duration = Duration::from_secs(3);

/// Matches the two clients, then counts the server's sent packets over [`IDLE`].
fn idle_window(policy: MatchmakingAckPolicy) -> Idle {
    let (mut server, mut clients) = setup(policy);
    for _ in 0..2_000 {
        if clients
            .iter()
            .all(|c| state(c) == AtomicClientState::Matched)
        {
            break;
        }
        update(&mut server, &mut clients);
    }
    assert!(
        clients
            .iter()
            .all(|c| state(c) == AtomicClientState::Matched),
        "both matched: {:?}",
        clients.iter().map(state).collect::<Vec<_>>()
    );
    let server_stats = |s: &App| {
        s.world()
            .resource::<MatchmakingQuietServerTransport>()
            .stats()
    };
    let client_stats = |c: &App| {
        c.world()
            .resource::<MatchmakingQuietClientTransport>()
            .stats()
    };
    // acks rode along with messages between the quiet ends, never to renet_netcode's client
    // (which reads only the first packet of a datagram: it still got matched)
    let quiet = server.world().resource::<MatchmakingQuietServerTransport>();
    assert!(quiet.bundles_acks_to(600) && !quiet.bundles_acks_to(601));
    assert!(server_stats(&server).acks_bundled > 0);
    assert!(client_stats(&clients[0]).acks_bundled > 0);
    let before = (server_stats(&server), client_stats(&clients[0]));
    for _ in 0..(IDLE.as_millis() / STEP.as_millis()) {
        update(&mut server, &mut clients);
    }
    let after = (server_stats(&server), client_stats(&clients[0]));
    let connected = server
        .world()
        .resource::<bevy_renet::RenetServer>()
        .connected_clients();
    assert_eq!(connected, 2, "both still connected");
    Idle {
        server_sent: after.0.packets_sent - before.0.packets_sent,
        client_sent: after.1.packets_sent - before.1.packets_sent,
        client_damped: after.1.acks_damped - before.1.acks_damped + after.1.keep_alives_damped
            - before.1.keep_alives_damped,
    }
}

/// What went out in the idle window.
struct Idle {
    /// Datagrams the server sent to both clients.
    server_sent: u64,
    /// Datagrams the quiet client sent.
    client_sent: u64,
    /// Ack-only packets and keep-alives the quiet client did not send.
    client_damped: u64,
}

#[test]
fn a_quiet_and_a_netcode_client_are_matched_and_idle_connections_go_quiet() {
    let idle = idle_window(MatchmakingAckPolicy::default());
    // two idle connections: an ack or a keep-alive each second each, not one a frame
    let sent = idle.server_sent;
    assert!(
        (4..=8).contains(&sent),
        "server: {sent} packets in 3 idle s"
    );
    let sent = idle.client_sent;
    assert!(
        (2..=4).contains(&sent),
        "quiet client: {sent} packets in 3 idle s"
    );
    assert!(idle.client_damped > 0);
}

#[test]
fn without_damping_renet_acks_every_frame() {
    let idle = idle_window(MatchmakingAckPolicy {
        idle_interval: Duration::ZERO,
    });
    assert_eq!(idle.client_damped, 0);
    // about 180 frames, two connections
    let sent = idle.server_sent;
    assert!(sent >= 300, "server: {sent} packets in 3 idle s");
    let sent = idle.client_sent;
    assert!(sent >= 150, "quiet client: {sent} packets in 3 idle s");
}
