//! Several relays sharing one fact store (in memory): facts posted through one relay reach
//! the clients of another, the store gives every verdict, a departure reaches every relay,
//! and a client whose relay died goes on through another and still gets its match.

use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

/// Three relays on one store (30 s frames), clients with a 2 s bid timeout.
fn relays() -> (NegotiatedTestHarness, NegotiatedMemorySharedStore) {
    NegotiatedTestHarness::with_shared_relays(
        3,
        NegotiatedRelaySettings {
            frame_duration: Duration::from_secs(30),
            ..Default::default()
        },
        NegotiatedClientSettings {
            bid_timeout: Duration::from_secs(2),
            time_sync_interval: Duration::from_secs(1),
            ..Default::default()
        },
    )
}

/// Adds a client, moves it to relay `on`, and runs until it is idle there.
fn client_on(h: &mut NegotiatedTestHarness, on: usize) -> PlayerId {
    let id = h.add_client();
    if on != 0 {
        h.run(1);
        h.move_client(id, on);
    }
    h.run_until(100, |h| {
        h.state(id) == NegotiatedClientState::Idle && h.is_connected(id)
    });
    id
}

fn assert_mutual(h: &NegotiatedTestHarness, a: PlayerId, b: PlayerId) {
    let (fa, fb) = (h.found(a).unwrap(), h.found(b).unwrap());
    assert_eq!((fa.other, fb.other), (b, a));
    assert_eq!(
        (fa.request, fa.bid, fa.accept),
        (fb.request, fb.bid, fb.accept)
    );
    assert_ne!(fa.role, fb.role);
    assert_eq!(h.recorded::<NegotiatedMatchFound>(a).len(), 1);
    assert_eq!(h.recorded::<NegotiatedMatchFound>(b).len(), 1);
}

#[test]
fn clients_of_two_relays_pair_through_the_shared_store() {
    let (mut h, store) = relays();
    let a = client_on(&mut h, 1);
    let b = client_on(&mut h, 2);
    h.search(a, "duel");
    h.run_until(50, |h| h.state(a) == NegotiatedClientState::Requesting);
    h.run(3);
    h.search(b, "duel");
    h.run_until_matched(&[a, b], 200);
    assert_mutual(&h, a, b);
    let accept = h.found(a).unwrap().accept;
    h.run(2);
    // the store decided it, and every relay's replica holds it
    assert!(store.with_authority(|core| core.store().contains(accept)));
    for on in 0..3 {
        assert!(h.relay_state_of(on).unwrap().store().contains(accept));
    }
    let stored: u64 = (0..3)
        .map(|on| h.relay_state_of(on).unwrap().stats().facts_stored)
        .sum();
    assert_eq!(
        stored,
        store.with_authority(|core| core.stats().facts_stored),
        "every verdict came from the store, once"
    );
    // relay 0 watched the others' requests and bids arrive; each relay its own verdicts
    let status = |on| h.relay_state_of(on).unwrap().shared().unwrap().clone();
    assert!(status(0).replication_lag.count() >= 2);
    assert!(status(1).verdict_lag.count() >= 1 && status(2).verdict_lag.count() >= 1);
}

#[test]
fn a_bidder_whose_relay_died_finds_its_match_through_another() {
    let (mut h, _store) = relays();
    let requester = client_on(&mut h, 0);
    let bidder = client_on(&mut h, 1);
    h.search(requester, "duel");
    h.run_until(50, |h| {
        h.state(requester) == NegotiatedClientState::Requesting
    });
    h.run(3);
    h.search(bidder, "duel");
    h.run_until(100, |h| h.state(bidder) == NegotiatedClientState::Bidding);
    // the requester's accept is stored; the bidder's relay dies before telling it
    h.set_link(bidder, false);
    h.run_until(200, |h| h.found(requester).is_some());
    assert!(
        h.found(bidder).is_none(),
        "the bidder's relay did not tell it yet"
    );
    h.kill_server(1);
    h.run(1);
    h.move_client(bidder, 2);
    h.run_until(300, |h| h.found(bidder).is_some());
    assert_mutual(&h, requester, bidder);
    assert_eq!(h.server_of(bidder), 2);
}

#[test]
fn a_departure_on_one_relay_reaches_the_watchers_of_another() {
    let (mut h, _store) = relays();
    let leaver = client_on(&mut h, 1);
    let watcher = client_on(&mut h, 2);
    h.record::<NegotiatedClientError>();
    h.search(leaver, "duel");
    h.run_until(50, |h| h.state(leaver) == NegotiatedClientState::Requesting);
    h.run(3);
    let request = h.status(leaver).request.unwrap();
    h.disconnect(leaver);
    h.run(5);
    for on in 0..3 {
        assert!(
            h.relay_state_of(on)
                .unwrap()
                .core()
                .departed()
                .contains(&leaver),
            "relay {on} knows {leaver} left"
        );
    }
    // the watcher never bids on the departed player's request: it posts its own
    h.search(watcher, "duel");
    h.run_until(100, |h| {
        h.state(watcher) == NegotiatedClientState::Requesting
    });
    assert_ne!(h.status(watcher).request, Some(request));
}

#[test]
fn the_close_of_a_connection_a_client_left_behind_is_no_departure() {
    let (mut h, store) = relays();
    let mover = client_on(&mut h, 1);
    h.search(mover, "duel");
    h.run_until(50, |h| h.state(mover) == NegotiatedClientState::Requesting);
    // it connects to relay 2 first; relay 1 hears of the old connection's close after
    h.move_client(mover, 2);
    h.run(10);
    assert!(
        !store.with_authority(|core| core.departed().contains(&mover)),
        "a client connected elsewhere did not depart"
    );
    for on in 0..3 {
        assert!(
            !h.relay_state_of(on)
                .unwrap()
                .core()
                .departed()
                .contains(&mover)
        );
    }
}

#[test]
fn posts_wait_while_the_store_is_unreachable_and_pair_once_it_is_back() {
    let (mut h, store) = relays();
    let a = client_on(&mut h, 0);
    let b = client_on(&mut h, 1);
    store.set_reachable(false);
    h.search(a, "duel");
    h.run(20);
    let shared = h.relay_state_of(0).unwrap().shared().unwrap().clone();
    assert!(
        shared.unavailable.is_some(),
        "the relay says the store is down"
    );
    assert!(shared.in_flight >= 1, "the request waits for its verdict");
    store.set_reachable(true);
    h.search(b, "duel");
    h.run_until_matched(&[a, b], 300);
    assert_mutual(&h, a, b);
    assert!(
        h.relay_state_of(0)
            .unwrap()
            .shared()
            .unwrap()
            .unavailable
            .is_none()
    );
}

#[test]
fn a_restarted_relay_reads_the_shared_log_before_it_answers_a_subscription() {
    let (mut h, _store) = relays();
    let a = client_on(&mut h, 1);
    let b = client_on(&mut h, 2);
    h.search(a, "duel");
    h.run_until(50, |h| h.state(a) == NegotiatedClientState::Requesting);
    h.run(3);
    let request = h.status(a).request.unwrap();
    // relay 0 restarts: a fresh app reading the same store
    h.restart_relay();
    h.run(2);
    assert!(h.relay_state().store().contains(request));
    assert!(h.relay_state().shared().unwrap().caught_up);
    h.move_client(b, 0);
    h.run(3);
    h.search(b, "duel");
    h.run_until_matched(&[a, b], 200);
    assert_mutual(&h, a, b);
    assert_eq!(h.found(b).unwrap().request, request);
}
