//! Connecting when the player clicks: a game starts with no connection, writes
//! `MatchmakingConnect` from a system, plays, writes `MatchmakingDisconnect`, and connects
//! again, over real UDP on 127.0.0.1, without naming bevy_renet.

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::harness::{Recorded, finish_plugins, record_messages};
use bevy_atomic_matchmaking::transport::{
    MatchmakingConnect, MatchmakingDisconnect, MatchmakingPrivateKey, MatchmakingTokenIssuer,
};

use crate::common::secure_udp_server;

const STEP: Duration = Duration::from_millis(10);

/// A game with the client plugin and no connection: what a game is at its main menu.
fn game() -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(AtomicClientPlugin::default());
    record_messages::<AtomicClientError>(&mut app);
    finish_plugins(&mut app);
    app
}

fn state(app: &App) -> AtomicClientState {
    *app.world().resource::<State<AtomicClientState>>().get()
}

/// What the Find match button does: connect with the backend's token, and join.
fn click_find_match(
    app: &mut App,
    issuer: &MatchmakingTokenIssuer,
    player: u64,
    server: std::net::SocketAddr,
) {
    let token = issuer
        .issue(player, Duration::from_secs(60), &[server], &[])
        .expect("mint");
    let config = AtomicChannel::default().connection_config();
    app.world_mut()
        .write_message(MatchmakingConnect::secure(token, config));
    app.world_mut().write_message(AtomicJoinQueue {
        category: "click".into(),
    });
}

fn run_until(server: &mut App, games: &mut [App], what: &str, done: impl Fn(&[App]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(games) {
        assert!(
            Instant::now() < deadline,
            "{what} not reached in 20 s: {:?}",
            games.iter().map(state).collect::<Vec<_>>()
        );
        server.update();
        games.iter_mut().for_each(App::update);
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_game_connects_on_click_leaves_and_connects_again() {
    let key = MatchmakingPrivateKey::generate();
    let (mut server, addr) = secure_udp_server(&key, STEP);
    let issuer = MatchmakingTokenIssuer::new(&key);
    let mut games = [game(), game()];
    // the main menu: no connection, no error
    for _ in 0..20 {
        server.update();
        games.iter_mut().for_each(App::update);
    }
    assert!(
        games
            .iter()
            .all(|g| state(g) == AtomicClientState::Disconnected)
    );
    assert!(games.iter().all(|g| {
        g.world()
            .resource::<Recorded<AtomicClientError>>()
            .messages()
            .is_empty()
    }));
    assert!(
        !games[0]
            .world()
            .contains_resource::<bevy_renet::RenetClient>()
    );

    for (game, player) in games.iter_mut().zip([61, 62]) {
        click_find_match(game, &issuer, player, addr);
    }
    run_until(&mut server, &mut games, "matched", |g| {
        g.iter().all(|g| state(g) == AtomicClientState::Matched)
    });

    // quit to the menu: the connection closes without an error
    for game in &mut games {
        game.world_mut().write_message(MatchmakingDisconnect);
    }
    run_until(&mut server, &mut games, "disconnected", |g| {
        g.iter()
            .all(|g| state(g) == AtomicClientState::Disconnected)
    });
    for game in &games {
        let errors = &game
            .world()
            .resource::<Recorded<AtomicClientError>>()
            .messages();
        assert!(errors.is_empty(), "leaving is no error: {errors:?}");
    }

    // click again: a new connection, a new match
    for (game, player) in games.iter_mut().zip([61, 62]) {
        click_find_match(game, &issuer, player, addr);
    }
    run_until(&mut server, &mut games, "matched again", |g| {
        g.iter().all(|g| state(g) == AtomicClientState::Matched)
    });
    assert_eq!(
        server
            .world()
            .resource::<AtomicServerStats>()
            .matches_committed,
        2
    );
}

#[test]
fn a_connect_request_that_cannot_be_carried_out_is_a_connect_failed_error() {
    let mut game = game();
    let mut dedicated_negotiated = bevy_renet::renet::ConnectionConfig {
        server_channels_config: Vec::new(),
        client_channels_config: Vec::new(),
        ..default()
    };
    AtomicChannel::new(4).add_to(&mut dedicated_negotiated);
    game.world_mut().write_message(MatchmakingConnect::insecure(
        "127.0.0.1:9".parse().unwrap(),
        5,
        dedicated_negotiated,
    ));
    game.update();
    game.update();
    let errors = &game
        .world()
        .resource::<Recorded<AtomicClientError>>()
        .messages();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, AtomicErrorKind::ConnectFailed);
    assert!(errors[0].message.contains("uses channel 3"), "{errors:?}");
    assert!(!game.world().contains_resource::<bevy_renet::RenetClient>());
}
