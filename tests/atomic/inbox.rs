//! The inbox: with a `MatchmakingInbox` the server reads only the connections that were
//! reported; a packet that reached renet by a path that does not report is still read by
//! the sweep, at most a sweep interval late, and the inbox says so.

use std::time::Duration;

use bevy::prelude::*;
use bevy_atomic_matchmaking::atomic::core::protocol::{AtomicClientMessage, AtomicServerMessage};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::codec;
use bevy_atomic_matchmaking::testing::harness::{finish_plugins, server_app, single_threaded};
use bevy_renet::RenetServer;
use bevy_renet::renet::RenetClient;

const STEP: Duration = Duration::from_millis(10);

/// A server app with an inbox, and a local client it does not hear of.
fn setup() -> (App, RenetClient) {
    let channel = AtomicChannel::default();
    let mut app = server_app(STEP, channel.connection_config());
    app.add_plugins(AtomicServerPlugin {
        channel,
        ..default()
    });
    single_threaded(&mut app);
    finish_plugins(&mut app);
    assert!(app.world().contains_resource::<MatchmakingInbox>());
    app.update();
    let client = app
        .world_mut()
        .resource_mut::<RenetServer>()
        .new_local_client(7);
    (app, client)
}

/// Frames (server updates) until the client receives a message `wanted` accepts; `None`
/// if none came within `max`.
fn frames_until(
    app: &mut App,
    client: &mut RenetClient,
    max: usize,
    wanted: impl Fn(&AtomicServerMessage) -> bool,
) -> Option<usize> {
    let channel = AtomicChannel::default().id;
    for frame in 1..=max {
        client.update(STEP);
        // renet's own exchange: the inbox hears nothing of these packets
        let _ = app
            .world_mut()
            .resource_mut::<RenetServer>()
            .process_local_client(7, client);
        app.update();
        let _ = app
            .world_mut()
            .resource_mut::<RenetServer>()
            .process_local_client(7, client);
        while let Some(bytes) = client.receive_message(channel) {
            if codec::decode::<AtomicServerMessage>(&bytes).is_ok_and(|m| wanted(&m)) {
                return Some(frame);
            }
        }
    }
    None
}

#[test]
fn an_unreported_connection_is_read_by_the_sweep_and_the_inbox_says_so() {
    let (mut app, mut client) = setup();
    let channel = AtomicChannel::default().id;
    let hello = AtomicClientMessage::Hello {
        protocol_version: ATOMIC_PROTOCOL_VERSION,
        config_fingerprint: 0,
    };
    // let the first sweep (at the first read) go by, then speak
    for _ in 0..5 {
        app.update();
    }
    client.send_message(channel, codec::encode(&hello));
    let sweep = Duration::from_secs(1);
    let max = (sweep.as_millis() / STEP.as_millis()) as usize + 5;
    let welcomed = frames_until(&mut app, &mut client, max, |m| {
        matches!(m, AtomicServerMessage::Welcome { .. })
    });
    let frames = welcomed.expect("welcomed by the sweep within its interval");
    assert!(frames > 50, "not read before the sweep: frame {frames}");
    assert!(app.world().resource::<MatchmakingInbox>().unreported_seen());

    // reported, the next message is read in the frame it arrives
    let join = AtomicClientMessage::JoinQueue {
        category: "duel".into(),
    };
    client.send_message(channel, codec::encode(&join));
    client.update(STEP);
    exchange_reported(&mut app, &mut client);
    app.update();
    exchange_reported(&mut app, &mut client);
    let replies: Vec<AtomicServerMessage> = std::iter::from_fn(|| client.receive_message(channel))
        .filter_map(|bytes| codec::decode(&bytes).ok())
        .collect();
    assert!(
        replies
            .iter()
            .any(|m| matches!(m, AtomicServerMessage::QueueJoined { .. })),
        "queued in the same frame: {replies:?}"
    );
}

/// `matchmaking_process_local_client` with the app's server and inbox.
fn exchange_reported(app: &mut App, client: &mut RenetClient) {
    app.world_mut()
        .resource_scope(|world, mut server: Mut<RenetServer>| {
            let inbox = world
                .get_resource_mut::<MatchmakingInbox>()
                .map(Mut::into_inner);
            matchmaking_process_local_client(&mut server, inbox, 7, client).expect("connected");
        });
}
