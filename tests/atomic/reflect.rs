//! Reflection: the server and client plugins register their resources, components,
//! messages and state, so the Bevy inspector (or any tool working through the
//! `AppTypeRegistry`) finds them and reads their fields.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::time::Duration;

use bevy::prelude::*;
use bevy::reflect::ReflectRef;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::reflection::{assert_registered_with, reflected_resource, ty};

#[test]
fn server_and_client_types_are_registered_and_reflect() {
    let mut h = AtomicTestHarness::new(AtomicServerSettings {
        players_per_match: 3,
        commit: AtomicCommitTimings {
            ping_timeout: Duration::from_millis(1_500),
            ..default()
        },
        ..default()
    });
    let player = h.add_clients(1)[0];
    h.join(player, "duel");
    h.run_until(20, |h| h.client_state(player) == AtomicClientState::Queued);

    // the server: its resources, components and messages
    let server = h.server.world();
    assert_registered_with::<ReflectResource>(
        server,
        &[
            ty::<AtomicServerSettings>(),
            ty::<AtomicServerStats>(),
            ty::<AtomicServerState>(),
            ty::<AtomicChannel>(),
            ty::<MatchmakingInbox>(),
        ],
    );
    assert_registered_with::<ReflectComponent>(server, &[ty::<AtomicMatch>(), ty::<AtomicLobby>()]);
    assert_registered_with::<ReflectMessage>(
        server,
        &[ty::<AtomicMatchOutcome>(), ty::<AtomicMatchCommitted>()],
    );
    assert_registered_with::<ReflectDefault>(
        server,
        &[ty::<AtomicCommitTimings>(), ty::<MatchmakingGatePolicy>()],
    );

    let settings = reflected_resource(server, TypeId::of::<AtomicServerSettings>());
    assert_eq!(settings.path::<usize>("players_per_match"), Ok(&3));
    // an opaque core value reads whole, as the value itself
    let commit = settings.path::<AtomicCommitTimings>("commit").unwrap();
    assert_eq!(commit.ping_timeout, Duration::from_millis(1_500));
    let ReflectRef::Struct(stats) =
        reflected_resource(server, TypeId::of::<AtomicServerStats>()).reflect_ref()
    else {
        panic!("AtomicServerStats does not reflect as a struct");
    };
    let queued = stats
        .field("players_queued")
        .expect("no players_queued field");
    let queued = queued.try_downcast_ref::<BTreeMap<String, usize>>();
    assert_eq!(queued.and_then(|q| q.get("duel")), Some(&1));
    let state = reflected_resource(server, TypeId::of::<AtomicServerState>());
    assert_eq!(state.path::<u64>("next_session"), Ok(&2));
    assert!(
        state.reflect_path("rng").is_err() && state.reflect_path("queue").is_err(),
        "internal machinery is not reflected"
    );

    // a client: its state, resources and messages
    let client = h.client_world(player);
    assert_registered_with::<ReflectResource>(
        client,
        &[
            ty::<AtomicClientStatus>(),
            ty::<AtomicClientSettings>(),
            ty::<AtomicChannel>(),
            ty::<MatchmakingConnectTarget>(),
            ty::<State<AtomicClientState>>(),
            ty::<NextState<AtomicClientState>>(),
        ],
    );
    assert_registered_with::<ReflectState>(client, &[ty::<AtomicClientState>()]);
    assert_registered_with::<ReflectMessage>(
        client,
        &[
            ty::<AtomicJoinQueue>(),
            ty::<AtomicLeaveQueue>(),
            ty::<AtomicMatchFound>(),
            ty::<AtomicMatchCancelled>(),
            ty::<AtomicClientError>(),
        ],
    );
    let status = reflected_resource(client, TypeId::of::<AtomicClientStatus>());
    assert_eq!(
        status.path::<Option<String>>("category"),
        Ok(&Some("duel".to_owned()))
    );
    assert_eq!(status.path::<Option<PlayerId>>("player"), Ok(&Some(player)));
    let timeout = reflected_resource(client, TypeId::of::<AtomicClientSettings>())
        .path::<Duration>("connect_timeout")
        .copied();
    assert_eq!(timeout, Ok(AtomicClientSettings::default().connect_timeout));
    let state = reflected_resource(client, TypeId::of::<State<AtomicClientState>>());
    assert_eq!(
        state.path::<AtomicClientState>(".0"),
        Ok(&AtomicClientState::Queued)
    );
}
