//! Set-up mistakes reach the game as client errors, over real UDP on 127.0.0.1: a
//! connection that never opens is one `ConnectFailed` error per attempt, naming the address
//! and the likely cause, at the connect timeout (or as soon as netcode gives up); a
//! connection lost after it opened stays `Connection`.
//!
//! The apps run on manual time (10 ms a step), so the time to each error is counted in
//! steps, not measured on the wall clock.

use bevy_atomic_matchmaking::testing::harness::{Recorded, finish_plugins, record_messages};
use std::net::UdpSocket;
use std::time::Duration;

use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{
    MatchmakingPrivateKey, MatchmakingTokenIssuer, insert_insecure_netcode_client,
    insert_secure_netcode_client,
};

use crate::common::secure_udp_server;

const STEP: Duration = Duration::from_millis(10);
const VALID: Duration = Duration::from_secs(60);

/// A game with the client plugin and no connection yet.
fn game() -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP))
        .add_plugins(AtomicClientPlugin::default());
    record_messages::<AtomicClientError>(&mut app);
    app
}

fn errors_of(app: &App, kind: AtomicErrorKind) -> Vec<AtomicClientError> {
    let seen = &app
        .world()
        .resource::<Recorded<AtomicClientError>>()
        .messages();
    seen.iter().filter(|e| e.kind == kind).cloned().collect()
}

/// Steps the apps until the game saw a `ConnectFailed` error; returns the steps taken.
fn steps_to_connect_failed(game: &mut App, server: Option<&mut App>, limit: u32) -> u32 {
    let mut server = server;
    for step in 1..=limit {
        if let Some(server) = server.as_deref_mut() {
            server.update();
        }
        game.update();
        if !errors_of(game, AtomicErrorKind::ConnectFailed).is_empty() {
            return step;
        }
        if server.is_some() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    panic!("no ConnectFailed error in {limit} steps");
}

/// The default connect timeout is 5 s: 500 steps of 10 ms.
const TIMEOUT_STEPS: u32 = 500;

#[test]
fn a_server_that_is_down_is_one_connect_failed_error_at_the_timeout() {
    // a bound socket nobody reads: the address is right, the server is down
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let token = MatchmakingTokenIssuer::new(MatchmakingPrivateKey::generate())
        .issue(7, VALID, &[addr], &[])
        .unwrap();
    let mut game = game();
    let channel = AtomicChannel::default();
    insert_secure_netcode_client(&mut game, token, channel.connection_config()).unwrap();
    finish_plugins(&mut game);
    let steps = steps_to_connect_failed(&mut game, None, 2 * TIMEOUT_STEPS);
    assert!(
        (TIMEOUT_STEPS..=TIMEOUT_STEPS + 2).contains(&steps),
        "the error came at the 5 s timeout, not after {steps} steps"
    );
    for _ in 0..600 {
        game.update();
    }
    let failed = errors_of(&game, AtomicErrorKind::ConnectFailed);
    assert_eq!(failed.len(), 1, "written once, not every frame: {failed:?}");
    let message = &failed[0].message;
    assert!(
        message.contains(&addr.to_string()),
        "names the address: {message}"
    );
    assert!(
        message.contains("connect token"),
        "says what was tried: {message}"
    );
    assert!(
        message.contains("down"),
        "names the likely cause: {message}"
    );
    let status = game.world().resource::<AtomicClientStatus>();
    assert_eq!(
        status.last_error.as_ref().map(|e| e.kind),
        Some(AtomicErrorKind::ConnectFailed)
    );
    assert_eq!(
        *game.world().resource::<State<AtomicClientState>>().get(),
        AtomicClientState::Disconnected
    );
    assert!(errors_of(&game, AtomicErrorKind::Connection).is_empty());
    assert_eq!(
        game.world()
            .resource::<bevy_renet::netcode::NetcodeClientTransport>()
            .disconnect_reason(),
        Some(bevy_renet::netcode::NetcodeDisconnectReason::DisconnectedByClient),
        "the failed attempt is closed, so it cannot open after the error"
    );
}

#[test]
fn a_token_minted_with_another_key_is_a_connect_failed_error() {
    let (mut server, addr) = secure_udp_server(&MatchmakingPrivateKey::generate(), STEP);
    let token = MatchmakingTokenIssuer::new(MatchmakingPrivateKey::generate())
        .issue(8, VALID, &[addr], &[])
        .unwrap();
    let mut game = game();
    let channel = AtomicChannel::default();
    insert_secure_netcode_client(&mut game, token, channel.connection_config()).unwrap();
    finish_plugins(&mut game);
    let steps = steps_to_connect_failed(&mut game, Some(&mut server), 2 * TIMEOUT_STEPS);
    assert!(
        steps <= TIMEOUT_STEPS + 2,
        "bounded by the timeout: {steps} steps"
    );
    let message = &errors_of(&game, AtomicErrorKind::ConnectFailed)[0].message;
    assert!(
        message.contains("another key"),
        "names the likely cause: {message}"
    );
    assert!(
        message.contains(&addr.to_string()),
        "names the address: {message}"
    );
}

#[test]
fn an_insecure_client_against_a_secure_server_is_a_connect_failed_error() {
    let (mut server, addr) = secure_udp_server(&MatchmakingPrivateKey::generate(), STEP);
    let mut game = game();
    let channel = AtomicChannel::default();
    insert_insecure_netcode_client(&mut game, addr, 9, channel.connection_config()).unwrap();
    finish_plugins(&mut game);
    let steps = steps_to_connect_failed(&mut game, Some(&mut server), 2 * TIMEOUT_STEPS);
    assert!(
        steps <= TIMEOUT_STEPS + 2,
        "bounded by the timeout: {steps} steps"
    );
    let message = &errors_of(&game, AtomicErrorKind::ConnectFailed)[0].message;
    assert!(
        message.contains("insecure"),
        "says what was tried: {message}"
    );
    assert!(
        message.contains("the server is secure"),
        "names the likely cause: {message}"
    );
}

#[test]
fn a_new_attempt_after_a_failure_is_reported_again() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let issuer = MatchmakingTokenIssuer::new(MatchmakingPrivateKey::generate());
    let mut game = game();
    game.world_mut()
        .resource_mut::<AtomicClientSettings>()
        .connect_timeout = Duration::from_secs(1);
    let channel = AtomicChannel::default();
    for attempt in 1..=2 {
        let token = issuer.issue(10, VALID, &[addr], &[]).unwrap();
        insert_secure_netcode_client(&mut game, token, channel.connection_config()).unwrap();
        finish_plugins(&mut game);
        for _ in 0..150 {
            game.update();
        }
        let failed = errors_of(&game, AtomicErrorKind::ConnectFailed);
        assert_eq!(failed.len(), attempt, "one error per attempt: {failed:?}");
        assert!(failed[attempt - 1].message.contains("1.0 s"), "{failed:?}");
    }
}

#[test]
fn a_connection_lost_after_it_opened_is_connection_not_connect_failed() {
    let key = MatchmakingPrivateKey::generate();
    let (mut server, addr) = secure_udp_server(&key, STEP);
    let token = MatchmakingTokenIssuer::new(&key)
        .with_timeout(Duration::from_secs(1))
        .issue(11, VALID, &[addr], &[])
        .unwrap();
    let mut game = game();
    let channel = AtomicChannel::default();
    insert_secure_netcode_client(&mut game, token, channel.connection_config()).unwrap();
    finish_plugins(&mut game);
    let mut welcomed = false;
    for _ in 0..300 {
        server.update();
        game.update();
        std::thread::sleep(Duration::from_micros(200));
        if game
            .world()
            .resource::<AtomicClientStatus>()
            .player
            .is_some()
        {
            welcomed = true;
            break;
        }
    }
    assert!(welcomed, "the client connected");
    drop(server); // the server process dies: no disconnect packet
    for _ in 0..300 {
        game.update();
    }
    assert_eq!(errors_of(&game, AtomicErrorKind::Connection).len(), 1);
    assert!(
        errors_of(&game, AtomicErrorKind::ConnectFailed).is_empty(),
        "it did connect: the loss is not a failure to connect"
    );
}
