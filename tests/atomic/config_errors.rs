//! Connection configs that disagree reach the game as clear errors, over real UDP on
//! 127.0.0.1, never as a renet panic or a silent match: another channel id, a dedicated
//! config against a shared one, and a config that lacks the plugin's channel.

use std::time::Duration;

use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::harness::{Recorded, finish_plugins, record_messages};
use bevy_atomic_matchmaking::transport::{
    insert_insecure_netcode_client, insert_insecure_netcode_server,
};
use bevy_renet::renet::ConnectionConfig;

const STEP: Duration = Duration::from_millis(10);

fn server(channel: AtomicChannel, config: ConnectionConfig) -> (App, std::net::SocketAddr) {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP))
        .add_plugins(AtomicServerPlugin {
            channel,
            ..default()
        });
    let addr = insert_insecure_netcode_server(&mut app, "127.0.0.1:0".parse().unwrap(), 8, config)
        .expect("bind 127.0.0.1:0");
    finish_plugins(&mut app);
    (app, addr)
}

fn game(channel: AtomicChannel, addr: std::net::SocketAddr, config: ConnectionConfig) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP))
        .add_plugins(AtomicClientPlugin { channel });
    record_messages::<AtomicClientError>(&mut app);
    insert_insecure_netcode_client(&mut app, addr, 40, config).expect("client socket");
    finish_plugins(&mut app);
    app
}

/// Steps both apps until the game saw an error of `kind`; returns it and the steps taken.
fn first_error(
    server: &mut App,
    game: &mut App,
    kind: AtomicErrorKind,
    limit: u32,
) -> (AtomicClientError, u32) {
    for step in 1..=limit {
        server.update();
        game.update();
        let seen = &game
            .world()
            .resource::<Recorded<AtomicClientError>>()
            .messages();
        if let Some(error) = seen.iter().find(|e| e.kind == kind) {
            return (error.clone(), step);
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    panic!(
        "no {kind:?} error in {limit} steps: {:?}",
        game.world()
            .resource::<Recorded<AtomicClientError>>()
            .messages()
    );
}

fn refused(server: &App) -> u64 {
    server
        .world()
        .resource::<AtomicServerStats>()
        .connections_refused
}

#[test]
fn a_client_on_another_channel_id_is_told_the_configs_likely_differ() {
    let (mut server, addr) = server(
        AtomicChannel::default(),
        AtomicChannel::default().connection_config(),
    );
    let channel = AtomicChannel::new(7);
    let mut game = game(channel, addr, channel.connection_config());
    let (error, steps) = first_error(&mut server, &mut game, AtomicErrorKind::Connection, 300);
    assert!(steps < 300, "bounded: {steps} steps");
    assert!(
        error.message.contains("before answering the hello") && error.message.contains("channel 7"),
        "names the likely cause and the client's channel: {}",
        error.message
    );
    assert_eq!(refused(&server), 1, "the server counts the refusal");
    assert_ne!(
        *game.world().resource::<State<AtomicClientState>>().get(),
        AtomicClientState::Matched
    );
}

#[test]
fn a_dedicated_server_and_a_shared_client_refuse_each_other() {
    let channel = AtomicChannel::default();
    let (mut server, addr) = server(channel, channel.dedicated_connection_config());
    let mut game = game(channel, addr, channel.connection_config());
    game.world_mut().write_message(AtomicJoinQueue {
        category: "duel".into(),
    });
    let (error, steps) = first_error(&mut server, &mut game, AtomicErrorKind::ConfigMismatch, 300);
    assert!(steps < 300, "bounded: {steps} steps");
    let fingerprint =
        |c: &ConnectionConfig| format!("{:016x}", MatchmakingConnectionConfig::new(c).fingerprint);
    let (ours, theirs) = (
        fingerprint(&channel.connection_config()),
        fingerprint(&channel.dedicated_connection_config()),
    );
    assert!(
        error.message.contains(&ours) && error.message.contains(&theirs),
        "names both configs: {}",
        error.message
    );
    assert!(
        error.message.contains("dedicated_connection_config"),
        "{}",
        error.message
    );
    assert_eq!(refused(&server), 1, "the server refuses it too");
    assert_eq!(
        game.world().resource::<AtomicClientStatus>().player,
        None,
        "never welcomed, never queued"
    );
}

#[test]
fn a_config_without_the_plugin_channel_is_refused_by_the_helper() {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(AtomicServerPlugin::default());
    let negotiated_only = {
        let mut config = ConnectionConfig {
            server_channels_config: Vec::new(),
            client_channels_config: Vec::new(),
            ..default()
        };
        AtomicChannel::new(4).add_to(&mut config);
        config
    };
    let err = insert_insecure_netcode_server(
        &mut app,
        "127.0.0.1:0".parse().unwrap(),
        8,
        negotiated_only,
    )
    .expect_err("channel 3 is missing");
    let text = err.to_string();
    assert!(
        text.contains("uses channel 3") && text.contains("4 (reliable ordered)"),
        "{text}"
    );
    assert!(
        !app.world().contains_resource::<bevy_renet::RenetServer>(),
        "nothing inserted"
    );
}

#[test]
fn a_client_whose_config_lacks_its_channel_reports_it_and_renet_is_left_alone() {
    let (mut server, addr) = server(
        AtomicChannel::default(),
        AtomicChannel::default().connection_config(),
    );
    // the transport first (nothing to check against yet), then the plugin on channel 9
    let mut game = App::new();
    game.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP));
    insert_insecure_netcode_client(
        &mut game,
        addr,
        41,
        AtomicChannel::default().connection_config(),
    )
    .expect("client socket");
    game.add_plugins(AtomicClientPlugin {
        channel: AtomicChannel::new(9),
    });
    record_messages::<AtomicClientError>(&mut game);
    finish_plugins(&mut game);
    for _ in 0..50 {
        server.update();
        game.update();
        std::thread::sleep(Duration::from_micros(300));
    }
    let seen = &game
        .world()
        .resource::<Recorded<AtomicClientError>>()
        .messages();
    let mismatch: Vec<_> = seen
        .iter()
        .filter(|e| e.kind == AtomicErrorKind::ConfigMismatch)
        .collect();
    assert_eq!(mismatch.len(), 1, "once: {seen:?}");
    assert!(
        mismatch[0]
            .message
            .contains("AtomicClientPlugin uses channel 9"),
        "{mismatch:?}"
    );
}
