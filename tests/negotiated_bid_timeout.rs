//! A bid that is never answered times out; the bidder searches on.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::prelude::*;
use bevy_atomic_matchmaking::negotiated::testing::NegotiatedTestHarness;

const BID_TIMEOUT: Duration = Duration::from_secs(2);

fn harness() -> NegotiatedTestHarness {
    NegotiatedTestHarness::with_frames(Duration::from_secs(30), BID_TIMEOUT)
}

fn time_of(h: &NegotiatedTestHarness, id: PlayerId, what: &str, nth: usize) -> Duration {
    h.log(id)
        .timeline
        .iter()
        .filter(|(w, _)| *w == what)
        .nth(nth)
        .expect("logged")
        .1
}

#[test]
fn an_unanswered_bid_times_out_and_a_late_accept_is_still_honoured() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    h.search(a, "duel");
    h.run_until(20, |h| h.state(a) == NegotiatedClientState::Requesting);
    let request = h.status(a).request.unwrap();
    h.run(2);
    // A's network stalls: its request stays open at the relay, nobody answers bids
    h.set_link(a, false);
    h.search(b, "duel");
    h.run_until(20, |h| !h.log(b).bids.is_empty());
    assert_eq!(h.log(b).bids[0].request, request);
    let bid = h.log(b).bids[0].bid;

    h.run_until(400, |h| !h.log(b).restarted.is_empty());
    assert_eq!(
        h.log(b).restarted[0].reason,
        NegotiatedRestartReason::BidTimedOut
    );
    let waited = time_of(&h, b, "restarted", 0) - time_of(&h, b, "bid", 0);
    assert!(
        waited >= BID_TIMEOUT && waited <= BID_TIMEOUT + Duration::from_millis(20),
        "timed out after {waited:?}"
    );
    // B gave up on A's request (still open as far as anyone knows) and posts its own
    h.run_until(10, |h| !h.log(b).posted.is_empty());
    assert!(
        h.relay_state()
            .store()
            .open_requests("duel", &h.relay_state().frames().readable(h.relay_now()))
            .iter()
            .any(|r| r.id == request)
    );
    assert_eq!(
        h.log(b).bids.len(),
        1,
        "no second bid on the silent request"
    );

    // A comes back and accepts the bid it finally got: B, still free, takes the match
    h.set_link(a, true);
    h.run_until_matched(&[a, b], 20);
    let fb = h.found(b).unwrap();
    assert_eq!((fb.other, fb.request, fb.bid), (a, request, bid));
    assert_eq!(h.found(a).unwrap().other, b);
    // and withdrew its own request
    h.run(2);
    let own = h.log(b).posted[0].request;
    assert!(h.relay_state().store().is_cancelled(own));
}

#[test]
fn a_bidder_whose_requester_vanished_pairs_with_someone_else() {
    let mut h = harness();
    let [a, b, c] = h.add_clients(3)[..] else {
        unreachable!()
    };
    h.search(a, "duel");
    h.run_until(20, |h| h.state(a) == NegotiatedClientState::Requesting);
    h.run(2);
    // A quits without cancelling: the relay keeps its request until the frame expires
    h.disconnect(a);
    h.search(b, "duel");
    h.run_until(20, |h| !h.log(b).bids.is_empty());
    h.run_until(400, |h| !h.log(b).restarted.is_empty());
    assert_eq!(
        h.log(b).restarted[0].reason,
        NegotiatedRestartReason::BidTimedOut
    );
    h.run_until(10, |h| !h.log(b).posted.is_empty());
    // C arrives: A's dead request is older, so C may bid on it first, time out, and then
    // find B's; either way B and C end up paired
    h.search(c, "duel");
    h.run_until_matched(&[b, c], 600);
    assert_eq!(h.found(b).unwrap().other, c);
    assert_eq!(h.found(c).unwrap().other, b);
}
