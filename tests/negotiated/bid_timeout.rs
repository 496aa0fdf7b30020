//! A bid that is never answered is withdrawn at its deadline; the bidder searches on,
//! and a requester that answers late cannot take the withdrawn bid.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::store::NegotiatedAnswer;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

use crate::common::post_request;

const BID_TIMEOUT: Duration = Duration::from_secs(2);

fn harness() -> NegotiatedTestHarness {
    NegotiatedTestHarness::with_frames(Duration::from_secs(30), BID_TIMEOUT)
}

#[test]
fn an_unanswered_bid_is_withdrawn_and_a_late_requester_cannot_take_it() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let request = post_request(&mut h, a);
    // A's network stalls: its request stays open at the relay, nobody answers bids
    h.set_link(a, false);
    h.search(b, "duel");
    h.run_until(20, |h| !h.recorded::<NegotiatedBidPlaced>(b).is_empty());
    assert_eq!(h.recorded::<NegotiatedBidPlaced>(b)[0].request, request);
    let bid = h.recorded::<NegotiatedBidPlaced>(b)[0].bid;

    h.run_until(400, |h| !h.recorded::<NegotiatedRestarted>(b).is_empty());
    assert_eq!(
        h.recorded::<NegotiatedRestarted>(b)[0].reason,
        NegotiatedRestartReason::BidTimedOut
    );
    // the deadline, then one round trip for the relay to store the withdrawal
    let waited = h.recording::<NegotiatedRestarted>(b).times()[0]
        - h.recording::<NegotiatedBidPlaced>(b).times()[0];
    assert!(
        waited >= BID_TIMEOUT && waited <= BID_TIMEOUT + Duration::from_millis(40),
        "gave up after {waited:?}"
    );
    assert!(matches!(
        h.relay_state().store().answer_to(bid),
        Some(NegotiatedAnswer::Withdrawn(_))
    ));
    // B gave up on A's request (still open as far as anyone knows) and posts its own
    h.run_until(10, |h| !h.recorded::<NegotiatedRequestPosted>(b).is_empty());
    assert!(
        h.relay_state()
            .store()
            .open_requests("duel", &h.relay_state().frames().readable(h.relay_now()))
            .iter()
            .any(|r| r.id == request)
    );
    assert_eq!(
        h.recorded::<NegotiatedBidPlaced>(b).len(),
        1,
        "no second bid on the silent request"
    );

    // A comes back to a withdrawn bid past its deadline: it turns it down instead of
    // accepting it; that answer shows B that A is there, and the two pair afresh
    h.set_link(a, true);
    h.run_until_matched(&[a, b], 30);
    let fb = h.found(b).unwrap();
    assert_eq!(h.found(a).unwrap().other, b);
    assert_eq!(fb.other, a);
    assert_ne!(fb.bid, bid, "the withdrawn bid is never accepted");
    assert_eq!(h.found(a).unwrap().accept, fb.accept);
    assert!(
        h.recorded::<NegotiatedMatchFound>(a).len() == 1
            && h.recorded::<NegotiatedMatchFound>(b).len() == 1
    );
}

#[test]
fn a_requester_that_quits_is_not_waited_for() {
    let mut h = harness();
    let [a, b, c] = h.add_clients(3)[..] else {
        unreachable!()
    };
    let dead = post_request(&mut h, a);
    // B bids, then A quits without cancelling (its request stays at the relay)
    h.set_link(a, false);
    h.search(b, "duel");
    h.run_until(20, |h| !h.recorded::<NegotiatedBidPlaced>(b).is_empty());
    h.disconnect(a);
    // the relay reports the departure: B gives up at once, not after the 2 s bid timeout
    let updates = h.run_until(20, |h| !h.recorded::<NegotiatedRestarted>(b).is_empty());
    assert!(updates <= 3, "took {updates} updates");
    assert_eq!(
        h.recorded::<NegotiatedRestarted>(b)[0].reason,
        NegotiatedRestartReason::RequestClosed
    );
    h.run_until(10, |h| !h.recorded::<NegotiatedRequestPosted>(b).is_empty());
    assert!(h.relay_state().store().contains(dead));
    assert!(!h.relay_state().store().is_closed(dead));
    // C arrives later: it learns of the departure with the frame and never bids on A
    h.search(c, "duel");
    h.run_until_matched(&[b, c], 30);
    assert!(
        h.recorded::<NegotiatedBidPlaced>(c)
            .iter()
            .all(|bid| bid.request != dead)
    );
    assert_eq!(h.found(b).unwrap().other, c);
    assert_eq!(h.found(c).unwrap().other, b);
}
