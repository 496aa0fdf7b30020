//! Two clients pair through the relay, end to end in process with manual time.

use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

#[test]
fn two_clients_pair() {
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(10), Duration::from_secs(1));
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    assert_eq!(h.state(a), NegotiatedClientState::Idle);
    assert_eq!(h.status(a).client_id, Some(a));
    assert_eq!(h.status(a).frame_duration, Some(Duration::from_secs(10)));

    h.search(a, "duel");
    h.run_until(20, |h| h.state(a) == NegotiatedClientState::Requesting);
    let posted = h.recorded::<NegotiatedRequestPosted>(a)[0].clone();
    assert_eq!(posted.category, "duel");
    assert_eq!(Some(posted.request), h.status(a).request);
    // the relay holds the request in the frame of relay time
    let frame = h.relay_state().frames().frame_of(h.relay_now());
    assert!(posted.frame == frame || posted.frame + 1 == frame);
    assert!(h.relay_state().store().request(posted.request).is_some());

    h.search(b, "duel");
    let updates = h.run_until_matched(&[a, b], 50);
    assert!(updates < 10, "pairing took {updates} updates");
    let fa = h.found(a).unwrap().clone();
    let fb = h.found(b).unwrap().clone();
    assert_eq!(
        (fa.me, fa.other, fa.role),
        (a, b, NegotiatedRole::Requester)
    );
    assert_eq!((fb.me, fb.other, fb.role), (b, a, NegotiatedRole::Bidder));
    assert_eq!(
        (fa.request, fa.bid, fa.accept),
        (fb.request, fb.bid, fb.accept)
    );
    assert_eq!(fa.request, posted.request);
    assert_eq!(h.recorded::<NegotiatedBidPlaced>(b).len(), 1);
    assert_eq!(h.recorded::<NegotiatedBidPlaced>(b)[0].requester, a);
    assert!(
        h.recorded::<NegotiatedRequestPosted>(b).is_empty(),
        "b found a's request and bid"
    );
    h.run(2);
    assert_eq!(h.state(a), NegotiatedClientState::Matched);
    assert_eq!(h.state(b), NegotiatedClientState::Matched);
    // the relay stored request, bid and accept; nobody saw an error
    assert_eq!(h.relay_state().stats().facts_stored, 3);
    assert!(h.relay_state().store().is_closed(fa.request));
    assert!(
        h.recorded::<NegotiatedClientError>(a).is_empty()
            && h.recorded::<NegotiatedClientError>(b).is_empty()
    );
    assert_eq!(h.recorded::<NegotiatedMatchFound>(a).len(), 1);
    assert_eq!(h.recorded::<NegotiatedMatchFound>(b).len(), 1);
}

#[test]
fn categories_do_not_mix() {
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(10), Duration::from_secs(1));
    let [a, b, c, d] = h.add_clients(4)[..] else {
        unreachable!()
    };
    h.search(a, "duel");
    h.search(b, "race");
    h.run(5);
    h.search(c, "race");
    h.search(d, "duel");
    h.run_until_matched(&[a, b, c, d], 50);
    assert_eq!(h.found(a).unwrap().other, d);
    assert_eq!(h.found(b).unwrap().other, c);
    assert_eq!(h.found(c).unwrap().category, "race");
}
