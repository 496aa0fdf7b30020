//! Set-up mistakes reach the game as negotiated client errors, over real UDP on 127.0.0.1:
//! a connection to the relay that never opens is one `ConnectFailed` error per attempt,
//! naming the address and the likely cause, at the connect timeout (counted in steps of
//! manual time); a connection that opened and was lost stays `Connection`.

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

const STEP: Duration = Duration::from_millis(10);

fn game() -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP))
        .add_plugins(NegotiatedClientPlugin::default());
    record_messages::<NegotiatedClientError>(&mut app);
    app
}

fn connect_failures(app: &App) -> Vec<NegotiatedClientError> {
    let seen = &app
        .world()
        .resource::<Recorded<NegotiatedClientError>>()
        .messages();
    seen.iter()
        .filter(|e| e.kind == NegotiatedErrorKind::ConnectFailed)
        .cloned()
        .collect()
}

#[test]
fn a_relay_that_is_down_is_one_connect_failed_error_at_the_timeout() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let token = MatchmakingTokenIssuer::new(MatchmakingPrivateKey::generate())
        .issue(1, Duration::from_secs(60), &[addr], &[])
        .unwrap();
    let mut game = game();
    let channel = NegotiatedChannel::default();
    insert_secure_netcode_client(&mut game, token, channel.connection_config()).unwrap();
    finish_plugins(&mut game);
    let mut first = None;
    for step in 1..=1200u32 {
        game.update();
        if first.is_none() && !connect_failures(&game).is_empty() {
            first = Some(step);
        }
    }
    let step = first.expect("a ConnectFailed error");
    assert!(
        (500..=502).contains(&step),
        "at the 5 s timeout, not step {step}"
    );
    let failed = connect_failures(&game);
    assert_eq!(failed.len(), 1, "written once: {failed:?}");
    assert!(failed[0].message.contains(&addr.to_string()), "{failed:?}");
    assert!(failed[0].message.contains("down"), "{failed:?}");
    let status = game.world().resource::<NegotiatedClientStatus>();
    assert_eq!(
        status.last_error.as_ref().map(|e| e.kind),
        Some(NegotiatedErrorKind::ConnectFailed)
    );
}

#[test]
fn an_insecure_client_with_a_short_timeout_fails_at_that_timeout() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let mut game = game();
    game.world_mut()
        .resource_mut::<NegotiatedClientSettings>()
        .connect_timeout = Duration::from_millis(500);
    let channel = NegotiatedChannel::default();
    insert_insecure_netcode_client(&mut game, addr, 2, channel.connection_config()).unwrap();
    finish_plugins(&mut game);
    for _ in 0..49 {
        game.update();
    }
    assert!(connect_failures(&game).is_empty(), "not before the timeout");
    for _ in 0..3 {
        game.update();
    }
    let failed = connect_failures(&game);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].message.contains("insecure"), "{failed:?}");
}

/// The relay given the atomic mode's config: the transport helper refuses it when the relay
/// plugin is there first, and when the transport came first the relay reports it and never
/// calls renet on its missing channel (renet would panic), even with a client sending to it.
#[test]
fn the_relay_on_the_atomic_config_is_an_error_never_a_panic() {
    use bevy_atomic_matchmaking::transport::insert_insecure_netcode_server;
    let atomic = AtomicChannel::default().connection_config();
    let any = "127.0.0.1:0".parse().unwrap();

    let mut relay = App::new();
    relay
        .add_plugins(MinimalPlugins)
        .add_plugins(NegotiatedRelayPlugin::default());
    let err = insert_insecure_netcode_server(&mut relay, any, 8, atomic.clone())
        .expect_err("the relay's channel 4 is missing");
    assert!(
        err.to_string()
            .contains("negotiated matchmaking plugin uses channel 4"),
        "{err}"
    );

    // the transport first: nothing to check against yet
    let mut relay = App::new();
    relay
        .add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP));
    let addr = insert_insecure_netcode_server(&mut relay, any, 8, atomic).expect("bind");
    relay.add_plugins(NegotiatedRelayPlugin::default());
    finish_plugins(&mut relay);
    let mut game = game();
    let channel = NegotiatedChannel::default();
    insert_insecure_netcode_client(&mut game, addr, 3, channel.connection_config()).unwrap();
    finish_plugins(&mut game);
    for _ in 0..200 {
        relay.update();
        game.update();
        std::thread::sleep(Duration::from_micros(300));
    }
    let status = game.world().resource::<NegotiatedClientStatus>();
    assert_eq!(status.client_id, None, "never welcomed");
    let seen = &game
        .world()
        .resource::<Recorded<NegotiatedClientError>>()
        .messages();
    let lost: Vec<_> = seen
        .iter()
        .filter(|e| e.kind == NegotiatedErrorKind::Connection)
        .collect();
    assert_eq!(lost.len(), 1, "{seen:?}");
    assert!(
        lost[0].message.contains("before answering the hello")
            && lost[0].message.contains("channel 4"),
        "{lost:?}"
    );
}
