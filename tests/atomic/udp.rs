//! The real UDP transport (renet_netcode) on 127.0.0.1 with port 0: a server app and two
//! client apps in one process, wall-clock time, matched end to end.

use bevy_atomic_matchmaking::testing::harness::finish_plugins;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{
    insert_insecure_netcode_client, insert_insecure_netcode_server,
};

#[test]
fn a_pair_is_matched_over_udp_on_loopback() {
    let channel = AtomicChannel::new(7);
    let mut server = App::new();
    server
        .add_plugins(MinimalPlugins)
        .add_plugins(AtomicServerPlugin {
            channel,
            ..default()
        });
    let addr = insert_insecure_netcode_server(
        &mut server,
        "127.0.0.1:0".parse().unwrap(),
        8,
        channel.connection_config(),
    )
    .expect("bind 127.0.0.1:0");
    finish_plugins(&mut server);
    assert_ne!(addr.port(), 0);

    let mut clients: Vec<App> = (0..2u64)
        .map(|i| {
            let mut app = App::new();
            app.add_plugins(MinimalPlugins).add_plugins(StatesPlugin);
            insert_insecure_netcode_client(&mut app, addr, 500 + i, channel.connection_config())
                .expect("client socket");
            app.add_plugins(AtomicClientPlugin { channel });
            finish_plugins(&mut app);
            // ask before the connection is up: the plugin joins once welcomed
            app.world_mut().write_message(AtomicJoinQueue {
                category: "udp".into(),
            });
            app
        })
        .collect();

    let state = |app: &App| *app.world().resource::<State<AtomicClientState>>().get();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !clients
        .iter()
        .all(|c| state(c) == AtomicClientState::Matched)
    {
        assert!(
            Instant::now() < deadline,
            "not matched over UDP in 20 s: {:?}",
            clients.iter().map(state).collect::<Vec<_>>()
        );
        server.update();
        for c in &mut clients {
            c.update();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let found: Vec<AtomicMatchFound> = clients
        .iter()
        .map(|c| {
            c.world()
                .resource::<AtomicClientStatus>()
                .found
                .clone()
                .expect("found")
        })
        .collect();
    assert_eq!(found[0].lobby_code, found[1].lobby_code);
    assert_eq!(found[0].others[0].player, 501);
    assert_eq!(found[1].others[0].player, 500);
    let stats = server.world().resource::<AtomicServerStats>();
    assert_eq!(stats.matches_committed, 1);
    assert_eq!(stats.lobbies_open, 1);
}
