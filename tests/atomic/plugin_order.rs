//! Plugin order does not matter: bevy_renet's plugins, Bevy's `StatesPlugin` and
//! `MinimalPlugins` may come before or after the matchmaking plugins, or not at all (the
//! plugins add what is still missing in `Plugin::finish`).

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::harness::finish_plugins;
use bevy_atomic_matchmaking::transport::{
    insert_insecure_netcode_client, insert_insecure_netcode_server,
};
use bevy_renet::{RenetClientPlugin, RenetServerPlugin};

/// A server whose dependencies come after its plugin (bevy_renet's usual set-up order).
fn server_with_dependencies_after(channel: AtomicChannel) -> (App, std::net::SocketAddr) {
    let mut server = App::new();
    server
        .add_plugins(AtomicServerPlugin {
            channel,
            ..default()
        })
        .add_plugins(MinimalPlugins)
        .add_plugins(RenetServerPlugin);
    let addr = insert_insecure_netcode_server(
        &mut server,
        "127.0.0.1:0".parse().unwrap(),
        8,
        channel.connection_config(),
    )
    .expect("bind 127.0.0.1:0");
    finish_plugins(&mut server);
    (server, addr)
}

/// A game: the matchmaking plugin first, then whatever `later` adds.
fn game(channel: AtomicChannel, addr: std::net::SocketAddr, id: u64, later: fn(&mut App)) -> App {
    let mut app = App::new();
    app.add_plugins(AtomicClientPlugin { channel });
    later(&mut app);
    insert_insecure_netcode_client(&mut app, addr, id, channel.connection_config())
        .expect("client socket");
    finish_plugins(&mut app);
    app.world_mut().write_message(AtomicJoinQueue {
        category: "order".into(),
    });
    app
}

fn state(app: &App) -> AtomicClientState {
    *app.world().resource::<State<AtomicClientState>>().get()
}

#[test]
fn dependencies_added_after_the_plugins_do_not_panic_and_the_pair_is_matched() {
    let channel = AtomicChannel::default();
    let (mut server, addr) = server_with_dependencies_after(channel);
    let mut clients = [
        // bevy_renet's and Bevy's plugins after ours
        game(channel, addr, 700, |app| {
            app.add_plugins((MinimalPlugins, StatesPlugin, RenetClientPlugin));
        }),
        // only MinimalPlugins after ours: the plugin adds the rest at finish
        game(channel, addr, 701, |app| {
            app.add_plugins(MinimalPlugins);
        }),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !clients
        .iter()
        .all(|c| state(c) == AtomicClientState::Matched)
    {
        assert!(
            Instant::now() < deadline,
            "not matched in 20 s: {:?}",
            clients.iter().map(state).collect::<Vec<_>>()
        );
        server.update();
        clients.iter_mut().for_each(App::update);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        server
            .world()
            .resource::<AtomicServerStats>()
            .matches_committed,
        1
    );
}

#[test]
fn an_app_updated_before_finish_does_not_panic_and_works_once_finished() {
    let mut game = App::new();
    game.add_plugins(MinimalPlugins)
        .add_plugins(AtomicClientPlugin::default());
    // not finished: the plugin waits (and logs an error once) instead of panicking
    for _ in 0..3 {
        game.update();
    }
    assert!(
        !game.world().contains_resource::<State<AtomicClientState>>(),
        "the state waits for App::finish"
    );
    finish_plugins(&mut game);
    game.update();
    assert_eq!(state(&game), AtomicClientState::Disconnected);
}

#[test]
fn a_transport_inserted_after_finish_works_or_is_an_error_not_a_panic() {
    // a client: the plugin added renet_netcode's client plugin at finish, so a transport
    // inserted later (a reconnection with a new token) works
    let mut game = App::new();
    game.add_plugins(MinimalPlugins)
        .add_plugins(AtomicClientPlugin::default());
    finish_plugins(&mut game);
    insert_insecure_netcode_client(
        &mut game,
        "127.0.0.1:9".parse().unwrap(),
        1,
        AtomicChannel::default().connection_config(),
    )
    .expect("the client's transport plugin is there");
    game.update();

    // a server finished without its transport plugin: an error naming it, not a panic
    let mut server = App::new();
    server
        .add_plugins(MinimalPlugins)
        .add_plugins(AtomicServerPlugin::default());
    finish_plugins(&mut server);
    let err = insert_insecure_netcode_server(
        &mut server,
        "127.0.0.1:0".parse().unwrap(),
        8,
        AtomicChannel::default().connection_config(),
    )
    .expect_err("NetcodeServerPlugin cannot be added to a finished app");
    assert!(err.to_string().contains("NetcodeServerPlugin"), "{err}");
    assert!(err.to_string().contains("App::finish"), "{err}");
}
