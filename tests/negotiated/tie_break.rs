//! Two clients that post requests at the same moment pair at once through the tie-break
//! instead of waiting for their requests to expire.

use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

#[test]
fn simultaneous_requests_resolve_through_the_tie_break() {
    // frames of 60 s: waiting for expiry would take at least 6000 updates
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(60), Duration::from_secs(2));
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    h.search(a, "duel");
    h.search(b, "duel");
    // both see an empty queue and post in the same update
    h.run_until(20, |h| {
        !h.recorded::<NegotiatedRequestPosted>(a).is_empty()
            && !h.recorded::<NegotiatedRequestPosted>(b).is_empty()
    });
    let ra = h.recorded::<NegotiatedRequestPosted>(a)[0].clone();
    let rb = h.recorded::<NegotiatedRequestPosted>(b)[0].clone();
    assert_ne!(ra.request, rb.request);
    assert!(
        h.recorded::<NegotiatedBidPlaced>(a).is_empty()
            && h.recorded::<NegotiatedBidPlaced>(b).is_empty(),
        "nobody saw the other's request before posting"
    );

    let updates = h.run_until_matched(&[a, b], 50);
    assert!(updates <= 5, "the tie-break took {updates} updates");

    // the newer request (by created time, then id) cancelled itself and bid on the older
    let store = h.relay_state().store();
    let key = |id: NegotiatedFactId| {
        let (_, r) = store.request(id).expect("both requests reached the relay");
        (r.created_us, id)
    };
    let (older, newer, older_client, newer_client) = if key(ra.request) < key(rb.request) {
        (ra.request, rb.request, a, b)
    } else {
        (rb.request, ra.request, b, a)
    };
    assert!(store.is_cancelled(newer));
    assert_eq!(store.accepted_bid(older), Some(h.found(a).unwrap().bid));
    let winner = h.found(older_client).unwrap();
    assert_eq!(winner.role, NegotiatedRole::Requester);
    assert_eq!(winner.request, older);
    assert_eq!(winner.other, newer_client);
    let loser = h.found(newer_client).unwrap();
    assert_eq!(loser.role, NegotiatedRole::Bidder);
    let restarts = &h.recorded::<NegotiatedRestarted>(newer_client);
    assert_eq!(restarts.len(), 1);
    assert_eq!(restarts[0].reason, NegotiatedRestartReason::TieBreak);
    assert!(h.recorded::<NegotiatedRestarted>(older_client).is_empty());
    assert!(
        h.recorded::<NegotiatedClientError>(a).is_empty()
            && h.recorded::<NegotiatedClientError>(b).is_empty()
    );
}

#[test]
fn a_simultaneous_crowd_pairs_off_in_one_round() {
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(60), Duration::from_secs(2));
    let ids = h.add_clients(8);
    for id in &ids {
        h.search(*id, "duel");
    }
    h.run_until(20, |h| {
        ids.iter()
            .all(|id| !h.recorded::<NegotiatedRequestPosted>(*id).is_empty())
    });
    let updates = h.run_until_matched(&ids, 100);
    assert!(updates <= 5, "took {updates} updates");
    // one tie-break per pair and no other restart: the oldest requests paired off (0, 1), (2, 3)...
    let tie_breaks: usize = ids
        .iter()
        .map(|id| h.recorded::<NegotiatedRestarted>(*id).len())
        .sum();
    assert_eq!(tie_breaks, 4);
    let requesters = ids
        .iter()
        .filter(|id| h.found(**id).unwrap().role == NegotiatedRole::Requester)
        .count();
    assert_eq!(requesters, 4);
}
