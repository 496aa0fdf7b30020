//! Negotiated matchmaking over real UDP (renet_netcode) on 127.0.0.1, port 0.
//!
//! Packets really travel through sockets; the apps still run on manual time, and the
//! loop only sleeps briefly so the kernel can deliver. No wall-clock assertions.

use bevy_atomic_matchmaking::testing::harness::finish_plugins;
use std::net::SocketAddr;
use std::time::Duration;

use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use bevy_atomic_matchmaking::negotiated::core::relay_core::NegotiatedRelayCore;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{
    MatchmakingPrivateKey, MatchmakingTokenIssuer, insert_insecure_netcode_client,
    insert_insecure_netcode_server, insert_secure_netcode_client, insert_secure_netcode_server,
};
use bevy_renet::netcode::{NetcodeClientTransport, NetcodeDisconnectReason};

const STEP: Duration = Duration::from_millis(10);

fn relay() -> (App, SocketAddr) {
    relay_with(None)
}

/// A relay that checks connect tokens with `key`, or an insecure one.
pub(crate) fn relay_with(key: Option<&MatchmakingPrivateKey>) -> (App, SocketAddr) {
    let channel = NegotiatedChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP));
    let any = "127.0.0.1:0".parse().unwrap();
    let addr = match key {
        Some(key) => {
            insert_secure_netcode_server(&mut app, any, 8, channel.connection_config(), key)
        }
        None => insert_insecure_netcode_server(&mut app, any, 8, channel.connection_config()),
    }
    .expect("bind a UDP port on 127.0.0.1");
    app.add_plugins(NegotiatedRelayPlugin {
        channel,
        settings: NegotiatedRelaySettings {
            frame_duration: Duration::from_secs(10),
            ..default()
        },
    });
    finish_plugins(&mut app);
    (app, addr)
}

fn client(relay: SocketAddr, id: u64) -> App {
    client_with(relay, id, None)
}

/// A client with a connect token for `id` minted by `backend`, or an insecure one.
fn client_with(relay: SocketAddr, id: u64, backend: Option<&MatchmakingTokenIssuer>) -> App {
    let channel = NegotiatedChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP));
    match backend {
        Some(backend) => {
            let token = backend
                .issue(id, Duration::from_secs(60), &[relay], &[])
                .expect("mint");
            insert_secure_netcode_client(&mut app, token, channel.connection_config())
        }
        None => insert_insecure_netcode_client(&mut app, relay, id, channel.connection_config()),
    }
    .expect("UDP client");
    app.add_plugins(NegotiatedClientPlugin {
        channel,
        settings: NegotiatedClientSettings {
            seed: Some(id),
            ..default()
        },
    });
    finish_plugins(&mut app);
    app
}

fn state(app: &App) -> NegotiatedClientState {
    *app.world().resource::<State<NegotiatedClientState>>().get()
}

fn found(app: &App) -> Option<NegotiatedMatchFound> {
    app.world()
        .resource::<NegotiatedClientStatus>()
        .found
        .clone()
}

fn run_until(relay: &mut App, clients: &mut [App], max: usize, done: impl Fn(&[App]) -> bool) {
    for _ in 0..max {
        if done(clients) {
            return;
        }
        relay.update();
        for c in clients.iter_mut() {
            c.update();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(done(clients), "condition not reached in {max} updates");
}

#[test]
fn two_clients_pair_over_udp() {
    let (mut relay, addr) = relay();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    let mut clients = vec![client(addr, 101), client(addr, 202)];
    run_until(&mut relay, &mut clients, 2000, |c| {
        c.iter().all(|c| state(c) == NegotiatedClientState::Idle)
    });
    assert_eq!(
        clients[0]
            .world()
            .resource::<NegotiatedClientStatus>()
            .client_id,
        Some(101)
    );
    let (a, b) = search_and_pair(&mut relay, &mut clients);
    assert_eq!((a.me, a.other), (101, 202));
    assert_eq!((b.me, b.other), (202, 101));
    assert_eq!((a.request, a.bid, a.accept), (b.request, b.bid, b.accept));
    assert_ne!(a.role, b.role);
    let stored = relay
        .world()
        .resource::<NegotiatedRelayState>()
        .store()
        .len();
    assert!(
        stored >= 3,
        "request, bid and accept are at the relay ({stored})"
    );
}

#[test]
fn two_clients_pair_over_udp_as_the_ids_in_their_tokens() {
    let key = MatchmakingPrivateKey::generate();
    let backend = MatchmakingTokenIssuer::new(key.clone()).with_timeout(Duration::from_secs(1));
    let (mut relay, addr) = relay_with(Some(&key));
    // a client whose token comes from another key never gets in
    let forger = MatchmakingTokenIssuer::new(MatchmakingPrivateKey::generate())
        .with_timeout(Duration::from_secs(1));
    let mut clients = vec![
        client_with(addr, 303, Some(&backend)),
        client_with(addr, 404, Some(&backend)),
        client_with(addr, 505, Some(&forger)),
    ];
    let gave_up = |app: &App| {
        app.world()
            .resource::<NetcodeClientTransport>()
            .disconnect_reason()
    };
    run_until(&mut relay, &mut clients, 2000, |c| {
        c[..2]
            .iter()
            .all(|c| state(c) == NegotiatedClientState::Idle)
            && gave_up(&c[2]).is_some()
    });
    assert_eq!(
        gave_up(&clients[2]),
        Some(NetcodeDisconnectReason::ConnectionRequestTimedOut)
    );
    assert_eq!(state(&clients[2]), NegotiatedClientState::Disconnected);
    assert_eq!(
        relay.world().resource::<NegotiatedRelayState>().connected(),
        2,
        "only the two clients with good tokens are connected"
    );
    let mut clients: Vec<App> = clients.into_iter().take(2).collect();
    let (a, b) = search_and_pair(&mut relay, &mut clients);
    assert_eq!((a.me, a.other), (303, 404));
    assert_eq!((b.me, b.other), (404, 303));
    assert_eq!(
        clients[0]
            .world()
            .resource::<NegotiatedClientStatus>()
            .client_id,
        Some(303),
        "the relay welcomed the client as the id in its token"
    );
}

#[test]
fn nobody_reconnects_as_a_departed_player_to_act_on_its_facts() {
    let key = MatchmakingPrivateKey::generate();
    let backend = MatchmakingTokenIssuer::new(key.clone()).with_timeout(Duration::from_secs(1));
    let (mut relay, addr) = relay_with(Some(&key));
    let mut clients = vec![client_with(addr, 303, Some(&backend))];
    run_until(&mut relay, &mut clients, 2000, |c| {
        state(&c[0]) == NegotiatedClientState::Idle
    });
    clients[0].world_mut().write_message(NegotiatedSearch {
        category: "duel".into(),
    });
    run_until(&mut relay, &mut clients, 2000, |c| {
        state(&c[0]) == NegotiatedClientState::Requesting
    });
    let request = clients[0]
        .world()
        .resource::<NegotiatedClientStatus>()
        .request
        .expect("a request");
    run_for(&mut relay, &mut clients, 20);
    // 303 leaves: its request stays stored, and 303 counts as departed
    clients[0]
        .world_mut()
        .resource_mut::<NetcodeClientTransport>()
        .disconnect();
    clients[0].update();
    drop(clients);
    let mut none: Vec<App> = Vec::new();
    run_for(&mut relay, &mut none, 50);
    assert!(relay_core(&relay).departed().contains(&303));

    // someone without 303's token tries to come back as 303 (a token for 303 from another
    // key) to accept bids on its request or cancel it: netcode never lets it in
    let impostor = MatchmakingTokenIssuer::new(MatchmakingPrivateKey::generate())
        .with_timeout(Duration::from_secs(1));
    let mut clients = vec![
        client_with(addr, 303, Some(&impostor)),
        client_with(addr, 404, Some(&backend)),
    ];
    run_until(&mut relay, &mut clients, 2000, |c| {
        c[0].world()
            .resource::<NetcodeClientTransport>()
            .disconnect_reason()
            .is_some()
    });
    assert_eq!(state(&clients[0]), NegotiatedClientState::Disconnected);
    // 404 sees the departed player's request and does not bid on it
    clients[1].world_mut().write_message(NegotiatedSearch {
        category: "duel".into(),
    });
    run_until(&mut relay, &mut clients, 2000, |c| {
        state(&c[1]) == NegotiatedClientState::Requesting
    });
    let core = relay_core(&relay);
    assert!(core.departed().contains(&303), "303 never came back");
    assert_eq!(core.store().by_author(303).count(), 1);
    assert!(!core.store().is_closed(request));
    assert!(core.store().bids_on(request).is_empty());
}

/// The relay's store and routing.
fn relay_core(relay: &App) -> &NegotiatedRelayCore {
    relay.world().resource::<NegotiatedRelayState>().core()
}

/// Runs `updates` updates of every app.
fn run_for(relay: &mut App, clients: &mut [App], updates: usize) {
    for _ in 0..updates {
        relay.update();
        for c in clients.iter_mut() {
            c.update();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Both clients search "duel" and run until each found its match; returns what each found.
fn search_and_pair(
    relay: &mut App,
    clients: &mut [App],
) -> (NegotiatedMatchFound, NegotiatedMatchFound) {
    for c in clients.iter_mut() {
        c.world_mut().write_message(NegotiatedSearch {
            category: "duel".into(),
        });
    }
    run_until(relay, clients, 2000, |c| {
        c.iter().all(|c| found(c).is_some())
    });
    (found(&clients[0]).unwrap(), found(&clients[1]).unwrap())
}

/// Plugin order does not matter: the relay and the clients get bevy_renet's plugins,
/// `MinimalPlugins` and `StatesPlugin` after the negotiated plugins, and still pair.
#[test]
fn dependencies_added_after_the_plugins_do_not_panic_and_clients_pair() {
    use bevy::state::app::StatesPlugin;
    use bevy_renet::{RenetClientPlugin, RenetServerPlugin};
    let channel = NegotiatedChannel::default();
    let mut relay = App::new();
    relay
        .add_plugins(NegotiatedRelayPlugin {
            channel,
            settings: NegotiatedRelaySettings {
                frame_duration: Duration::from_secs(10),
                ..default()
            },
        })
        .add_plugins((MinimalPlugins, RenetServerPlugin))
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP));
    let any = "127.0.0.1:0".parse().unwrap();
    let addr = insert_insecure_netcode_server(&mut relay, any, 8, channel.connection_config())
        .expect("bind a UDP port on 127.0.0.1");
    finish_plugins(&mut relay);
    let mut clients: Vec<App> = [303u64, 404]
        .into_iter()
        .map(|id| {
            let mut app = App::new();
            app.add_plugins(NegotiatedClientPlugin {
                channel,
                settings: NegotiatedClientSettings {
                    seed: Some(id),
                    ..default()
                },
            })
            .add_plugins((MinimalPlugins, StatesPlugin, RenetClientPlugin))
            .insert_resource(TimeUpdateStrategy::ManualDuration(STEP));
            insert_insecure_netcode_client(&mut app, addr, id, channel.connection_config())
                .expect("UDP client");
            finish_plugins(&mut app);
            app
        })
        .collect();
    run_until(&mut relay, &mut clients, 2000, |c| {
        c.iter().all(|c| state(c) == NegotiatedClientState::Idle)
    });
    let (a, b) = search_and_pair(&mut relay, &mut clients);
    assert_eq!((a.me, a.other), (303, 404));
    assert_eq!((b.me, b.other), (404, 303));
}

/// Connecting when the player clicks: no connection at launch, `MatchmakingConnect` from
/// the game, `MatchmakingDisconnect` without an error, then a new connection.
#[test]
fn a_client_connects_on_click_leaves_and_connects_again() {
    use bevy_atomic_matchmaking::transport::{MatchmakingConnect, MatchmakingDisconnect};
    let (mut relay, addr) = relay();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP))
        .add_plugins(NegotiatedClientPlugin::default());
    finish_plugins(&mut app);
    let mut clients = vec![app];
    // the main menu: frames pass with no connection and no error
    for _ in 0..20 {
        relay.update();
        clients[0].update();
    }
    assert_eq!(
        clients[0]
            .world()
            .resource::<NegotiatedClientStatus>()
            .last_error,
        None
    );
    assert_eq!(state(&clients[0]), NegotiatedClientState::Disconnected);
    let config = NegotiatedChannel::default().connection_config();
    for round in 0..2 {
        clients[0]
            .world_mut()
            .write_message(MatchmakingConnect::insecure(addr, 505, config.clone()));
        run_until(&mut relay, &mut clients, 2000, |c| {
            state(&c[0]) == NegotiatedClientState::Idle
        });
        clients[0].world_mut().write_message(MatchmakingDisconnect);
        run_until(&mut relay, &mut clients, 2000, |c| {
            state(&c[0]) == NegotiatedClientState::Disconnected
        });
        let status = clients[0].world().resource::<NegotiatedClientStatus>();
        assert_eq!(
            status.last_error, None,
            "round {round}: leaving is no error"
        );
    }
}
