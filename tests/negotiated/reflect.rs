//! Reflection: the relay and client plugins register their resources, messages and state,
//! so the Bevy inspector (or any tool working through the `AppTypeRegistry`) finds them
//! and reads their fields.

use std::any::TypeId;
use std::time::Duration;

use bevy::prelude::*;
use bevy_atomic_matchmaking::negotiated::client::NegotiatedClockSkew;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::{NEGOTIATED_TEST_EPOCH, NegotiatedTestHarness};

use crate::reflection::{assert_registered_with, reflected_resource, ty};

#[test]
fn relay_and_client_types_are_registered_and_reflect() {
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(30), Duration::from_secs(2));
    let id = h.add_clients(1)[0];
    h.search(id, "duel");
    h.run_until(20, |h| h.state(id) == NegotiatedClientState::Requesting);

    // the relay: its resources
    let relay = h.server.world();
    assert_registered_with::<ReflectResource>(
        relay,
        &[
            ty::<NegotiatedRelaySettings>(),
            ty::<NegotiatedRelayState>(),
            ty::<NegotiatedChannel>(),
            ty::<MatchmakingInbox>(),
        ],
    );
    assert_registered_with::<ReflectDefault>(
        relay,
        &[ty::<NegotiatedRelayLimits>(), ty::<MatchmakingGatePolicy>()],
    );
    let settings = reflected_resource(relay, TypeId::of::<NegotiatedRelaySettings>());
    assert_eq!(
        settings.path::<Duration>("frame_duration"),
        Ok(&Duration::from_secs(30))
    );
    // an opaque core value reads whole, as the value itself
    let limits = settings.path::<NegotiatedRelayLimits>("limits").unwrap();
    assert_eq!(*limits, NegotiatedRelayLimits::default());
    assert!(
        settings.reflect_path("journal").is_err(),
        "the journal handle is not reflected"
    );
    let state = reflected_resource(relay, TypeId::of::<NegotiatedRelayState>());
    assert_eq!(state.path::<Duration>("epoch"), Ok(&NEGOTIATED_TEST_EPOCH));
    assert_eq!(state.path::<u64>("connections_refused"), Ok(&0));
    assert!(
        state.reflect_path("core").is_err(),
        "the store is not reflected"
    );

    // the client: its state, resources and messages
    let client = h.client_world(id);
    assert_registered_with::<ReflectResource>(
        client,
        &[
            ty::<NegotiatedClientStatus>(),
            ty::<NegotiatedClientSettings>(),
            ty::<NegotiatedChannel>(),
            ty::<MatchmakingConnectTarget>(),
            ty::<NegotiatedClockSkew>(),
            ty::<State<NegotiatedClientState>>(),
            ty::<NextState<NegotiatedClientState>>(),
        ],
    );
    assert_registered_with::<ReflectState>(client, &[ty::<NegotiatedClientState>()]);
    assert_registered_with::<ReflectMessage>(
        client,
        &[
            ty::<NegotiatedSearch>(),
            ty::<NegotiatedCancelSearch>(),
            ty::<NegotiatedMatchFound>(),
            ty::<NegotiatedRestarted>(),
            ty::<NegotiatedClientError>(),
        ],
    );
    let status = reflected_resource(client, TypeId::of::<NegotiatedClientStatus>());
    assert_eq!(status.path::<Option<PlayerId>>("client_id"), Ok(&Some(id)));
    let request = h.status(id).request;
    assert!(request.is_some(), "the client holds a request");
    assert_eq!(
        status.path::<Option<NegotiatedFactId>>("request"),
        Ok(&request)
    );
    let settings = reflected_resource(client, TypeId::of::<NegotiatedClientSettings>());
    assert_eq!(
        settings.path::<Duration>("bid_timeout"),
        Ok(&Duration::from_secs(2))
    );
    let state = reflected_resource(client, TypeId::of::<State<NegotiatedClientState>>());
    assert_eq!(
        state.path::<NegotiatedClientState>(".0"),
        Ok(&NegotiatedClientState::Requesting)
    );
}
