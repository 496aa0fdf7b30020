//! Identity over real UDP (renet_netcode on 127.0.0.1, port 0) with secure connect tokens:
//! the server accepts only tokens minted with its key, unexpired, not replayed, for an id
//! that is not connected yet; and the player id the plugins see is the token's.
//!
//! The apps run on manual time (10 ms a step) and the loop sleeps briefly so the kernel can
//! deliver; tokens carry a 1 s timeout, so a refused client gives up within ~100 steps.

use bevy_atomic_matchmaking::testing::harness::finish_plugins;
use std::time::Duration;

use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy::time::TimeUpdateStrategy;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::clock::unix_now;
use bevy_atomic_matchmaking::transport::{
    MatchmakingPrivateKey, MatchmakingTokenIssuer, connect_token_from_bytes,
    insert_secure_netcode_client,
};
use bevy_renet::netcode::{ConnectToken, NetcodeDisconnectReason};
use bevy_renet::netcode::{NetcodeClientTransport, NetcodeServerTransport};
use bevy_renet::{RenetClient, RenetServer};

use crate::common::secure_udp_server;

const STEP: Duration = Duration::from_millis(10);
const VALID: Duration = Duration::from_secs(60);

/// The backend's issuer, with a 1 s timeout so refused clients give up quickly.
fn backend(key: &MatchmakingPrivateKey) -> MatchmakingTokenIssuer {
    MatchmakingTokenIssuer::new(key.clone()).with_timeout(Duration::from_secs(1))
}

fn client(token: ConnectToken) -> App {
    let channel = AtomicChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(StatesPlugin)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP));
    insert_secure_netcode_client(&mut app, token, channel.connection_config())
        .expect("client socket");
    app.add_plugins(AtomicClientPlugin { channel });
    finish_plugins(&mut app);
    app
}

/// The id the server welcomed this client as (after its hello).
fn welcomed(app: &App) -> Option<PlayerId> {
    app.world().resource::<AtomicClientStatus>().player
}

fn gave_up(app: &App) -> Option<NetcodeDisconnectReason> {
    app.world()
        .resource::<NetcodeClientTransport>()
        .disconnect_reason()
}

fn connected(app: &App) -> bool {
    app.world().resource::<RenetClient>().is_connected()
}

fn server_clients(server: &App) -> Vec<u64> {
    server.world().resource::<RenetServer>().clients_id()
}

fn run_until(server: &mut App, clients: &mut [&mut App], done: impl Fn(&App, &[&mut App]) -> bool) {
    for _ in 0..1000 {
        if done(server, clients) {
            return;
        }
        server.update();
        for c in clients.iter_mut() {
            c.update();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(done(server, clients), "condition not reached in 1000 steps");
}

/// Runs until `refused` gives up, and checks it never connected.
fn assert_refused(server: &mut App, others: &mut [&mut App], refused: &mut App) {
    let mut all: Vec<&mut App> = others.iter_mut().map(|a| &mut **a).collect();
    all.push(refused);
    run_until(server, &mut all, |_, c| {
        gave_up(c.last().unwrap()).is_some()
    });
    let refused = all.pop().unwrap();
    assert_eq!(
        gave_up(refused),
        Some(NetcodeDisconnectReason::ConnectionRequestTimedOut),
        "the server never answered the refused token"
    );
    assert_eq!(welcomed(refused), None);
    assert!(!connected(refused));
}

/// Connects a client with this token and waits until the server welcomed it.
fn connect(server: &mut App, others: &mut [&mut App], token: ConnectToken) -> App {
    let mut app = client(token);
    let mut all: Vec<&mut App> = others.iter_mut().map(|a| &mut **a).collect();
    all.push(&mut app);
    run_until(server, &mut all, |_, c| {
        welcomed(c.last().unwrap()).is_some()
    });
    drop(all);
    app
}

#[test]
fn the_player_id_is_the_one_inside_the_token() {
    let key = MatchmakingPrivateKey::generate();
    let (mut server, addr) = secure_udp_server(&key, STEP);
    // the backend hands the game bytes; the user data rides along to the server
    let bytes = backend(&key)
        .issue_bytes(4242, VALID, &[addr], b"rating=1500")
        .expect("mint");
    let token = connect_token_from_bytes(&bytes).expect("read");
    let game = connect(&mut server, &mut [], token);
    assert_eq!(welcomed(&game), Some(4242));
    assert_eq!(
        game.world()
            .resource::<NetcodeClientTransport>()
            .client_id(),
        4242
    );
    assert_eq!(server_clients(&server), vec![4242]);
    let state = server.world().resource::<AtomicServerState>();
    assert_eq!(state.location(4242), Some(AtomicPlayerLocation::Idle));
    let user_data = server
        .world()
        .resource::<NetcodeServerTransport>()
        .user_data(4242)
        .expect("connected");
    assert_eq!(&user_data[..11], b"rating=1500");
    assert!(user_data[11..].iter().all(|b| *b == 0));
}

#[test]
fn a_token_minted_with_another_key_is_refused() {
    let key = MatchmakingPrivateKey::generate();
    let (mut server, addr) = secure_udp_server(&key, STEP);
    let other = MatchmakingPrivateKey::generate();
    let mut forged = client(backend(&other).issue(7, VALID, &[addr], &[]).unwrap());
    assert_refused(&mut server, &mut [], &mut forged);
    assert!(server_clients(&server).is_empty());
    // the same player with a token from the right key gets in
    let game = connect(
        &mut server,
        &mut [],
        backend(&key).issue(7, VALID, &[addr], &[]).unwrap(),
    );
    assert_eq!(welcomed(&game), Some(7));
}

#[test]
fn an_expired_token_is_refused() {
    let key = MatchmakingPrivateKey::generate();
    let (mut server, addr) = secure_udp_server(&key, STEP);
    // minted two minutes ago, valid for one
    let long_ago = unix_now() - Duration::from_secs(120);
    let token = backend(&key)
        .issue_at(long_ago, 8, VALID, &[addr], &[])
        .unwrap();
    assert!(token.expire_timestamp < unix_now().as_secs());
    let mut late = client(token);
    assert_refused(&mut server, &mut [], &mut late);
    assert!(server_clients(&server).is_empty());
    // a token minted now gets the same player in
    let game = connect(
        &mut server,
        &mut [],
        backend(&key).issue(8, VALID, &[addr], &[]).unwrap(),
    );
    assert_eq!(welcomed(&game), Some(8));
}

#[test]
fn a_token_for_another_server_is_refused() {
    // two servers of the same game share the key; a token minted for the first is pointed
    // at the second (the address the client sends to is in the token's public part; the
    // server checks the signed list in its private part)
    let key = MatchmakingPrivateKey::generate();
    let (mut first, first_addr) = secure_udp_server(&key, STEP);
    let (mut second, second_addr) = secure_udp_server(&key, STEP);
    let mut token = backend(&key).issue(31, VALID, &[first_addr], &[]).unwrap();
    token.server_addresses[0] = Some(second_addr);
    let mut stray = client(token);
    assert_refused(&mut second, &mut [], &mut stray);
    assert!(server_clients(&second).is_empty());
    first.update();
    assert!(server_clients(&first).is_empty());
}

#[test]
fn a_replayed_token_is_refused_while_its_player_is_connected_and_after() {
    let key = MatchmakingPrivateKey::generate();
    let (mut server, addr) = secure_udp_server(&key, STEP);
    let token = backend(&key).issue(11, VALID, &[addr], &[]).unwrap();
    let mut first = connect(&mut server, &mut [], token.clone());
    // someone who copied the token tries it from another socket
    let mut replay = client(token.clone());
    assert_refused(&mut server, &mut [&mut first], &mut replay);
    assert!(connected(&first), "the first connection is untouched");
    assert_eq!(server_clients(&server), vec![11]);

    // the first leaves; the copied token is still refused (netcode remembers which
    // address used it), though a fresh token for the same player is not
    first
        .world_mut()
        .resource_mut::<NetcodeClientTransport>()
        .disconnect();
    run_until(&mut server, &mut [], |s, _| server_clients(s).is_empty());
    let mut replay_later = client(token);
    assert_refused(&mut server, &mut [], &mut replay_later);
    let fresh = connect(
        &mut server,
        &mut [],
        backend(&key).issue(11, VALID, &[addr], &[]).unwrap(),
    );
    assert_eq!(welcomed(&fresh), Some(11));
}

#[test]
fn a_second_connection_with_a_live_players_id_is_refused() {
    let key = MatchmakingPrivateKey::generate();
    let (mut server, addr) = secure_udp_server(&key, STEP);
    let issuer = backend(&key);
    let mut first = connect(
        &mut server,
        &mut [],
        issuer.issue(21, VALID, &[addr], &[]).unwrap(),
    );
    let session = server.world().resource::<AtomicServerState>().session(21);
    // a valid, distinct token for the same player (a second login, or a leaked key used
    // to impersonate): netcode refuses it while the first connection lives
    let mut second = client(issuer.issue(21, VALID, &[addr], &[]).unwrap());
    assert_refused(&mut server, &mut [&mut first], &mut second);
    assert!(connected(&first));
    assert_eq!(welcomed(&first), Some(21));
    assert_eq!(server_clients(&server), vec![21]);
    assert_eq!(
        server.world().resource::<AtomicServerState>().session(21),
        session,
        "the server kept the first connection's session"
    );

    // once the first connection is gone, the same player may connect again
    first
        .world_mut()
        .resource_mut::<NetcodeClientTransport>()
        .disconnect();
    run_until(&mut server, &mut [], |s, _| server_clients(s).is_empty());
    let again = connect(
        &mut server,
        &mut [],
        issuer.issue(21, VALID, &[addr], &[]).unwrap(),
    );
    assert_eq!(welcomed(&again), Some(21));
}
