//! A rejected bidder restarts and finds another request.

use bevy_atomic_matchmaking::negotiated::core::fact::*;
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NegotiatedClientMessage, NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

use crate::common::{harness, hello};

/// B and C bid on A's request at once; A takes one and rejects the other.
fn two_bids_on_one_request(h: &mut NegotiatedTestHarness) -> (PlayerId, PlayerId, PlayerId) {
    let [a, b, c] = h.add_clients(3)[..] else {
        unreachable!()
    };
    h.search(a, "duel");
    h.run_until(20, |h| h.state(a) == NegotiatedClientState::Requesting);
    h.search(b, "duel");
    h.search(c, "duel");
    h.run_until(20, |h| {
        !h.recorded::<NegotiatedBidPlaced>(b).is_empty()
            && !h.recorded::<NegotiatedBidPlaced>(c).is_empty()
    });
    let request = h.status(a).request.unwrap();
    assert_eq!(h.recorded::<NegotiatedBidPlaced>(b)[0].request, request);
    assert_eq!(h.recorded::<NegotiatedBidPlaced>(c)[0].request, request);
    (a, b, c)
}

#[test]
fn a_rejected_bidder_restarts_and_bids_on_another_request() {
    let mut h = harness();
    let (a, b, c) = two_bids_on_one_request(&mut h);
    // D (speaking the protocol itself) posts a request while both bids are in flight
    let d = h.add_raw_client();
    hello(&mut h, d);
    let now = h.relay_now();
    let request = NegotiatedRequest {
        category: "duel".into(),
        frame: h.relay_state().frames().frame_of(now),
        created_us: now.as_micros() as u64,
    };
    let d_request = NegotiatedSignedFact::new(d, NegotiatedFact::Request(request.clone())).id();
    h.send_message(
        d,
        &NegotiatedClientMessage::Post {
            fact: NegotiatedFact::Request(request),
        },
    );

    // A accepts the first bid and rejects the second
    h.run_until(10, |h| h.found(a).is_some());
    let winner = h.found(a).unwrap().other;
    let loser = if winner == b { c } else { b };
    h.run_until(10, |h| !h.recorded::<NegotiatedRestarted>(loser).is_empty());
    assert_eq!(
        h.recorded::<NegotiatedRestarted>(loser)[0].reason,
        NegotiatedRestartReason::BidRejected
    );
    // ... and bids on D's request, the only open one
    h.run_until(10, |h| h.recorded::<NegotiatedBidPlaced>(loser).len() == 2);
    assert_eq!(
        h.recorded::<NegotiatedBidPlaced>(loser)[1].request,
        d_request
    );
    assert_eq!(h.recorded::<NegotiatedBidPlaced>(loser)[1].requester, d);

    // D accepts the bid it received
    h.run(1);
    let bid = h
        .take_messages(d)
        .into_iter()
        .find_map(|m| match m {
            NegotiatedRelayMessage::Fact {
                author,
                fact: fact @ NegotiatedFact::Bid(_),
            } => {
                assert_eq!(author, loser);
                Some(NegotiatedSignedFact::new(author, fact).id())
            }
            _ => None,
        })
        .expect("the bid reached D");
    h.send_message(
        d,
        &NegotiatedClientMessage::Post {
            fact: NegotiatedFact::Accept(NegotiatedAccept {
                request: d_request,
                bid,
            }),
        },
    );
    h.run_until(10, |h| h.found(loser).is_some());
    let found = h.found(loser).unwrap();
    assert_eq!((found.other, found.request, found.bid), (d, d_request, bid));
    assert_eq!(h.found(winner).unwrap().other, a);
    assert_eq!(h.recorded::<NegotiatedMatchFound>(loser).len(), 1);
    assert_eq!(h.recorded::<NegotiatedMatchFound>(winner).len(), 1);
}

#[test]
fn a_rejected_bidder_with_nothing_to_bid_on_posts_and_pairs_with_a_newcomer() {
    let mut h = harness();
    let (a, b, c) = two_bids_on_one_request(&mut h);
    h.run_until(10, |h| h.found(a).is_some());
    let winner = h.found(a).unwrap().other;
    let loser = if winner == b { c } else { b };
    h.run_until(10, |h| {
        !h.recorded::<NegotiatedRequestPosted>(loser).is_empty()
    });
    assert_eq!(
        h.recorded::<NegotiatedRestarted>(loser)[0].reason,
        NegotiatedRestartReason::BidRejected
    );
    // the relay holds A's reject of the loser's bid (posted once A's accept was stored)
    h.run(2);
    let rejected_bid = h.recorded::<NegotiatedBidPlaced>(loser)[0].bid;
    let store = h.relay_state().store();
    assert!(store.about(h.found(a).unwrap().request).any(|f| f.fact
        == NegotiatedFact::Reject(NegotiatedReject {
            request: h.found(a).unwrap().request,
            bid: rejected_bid
        })));
    let e = h.add_client();
    h.run_until(50, |h| h.state(e) == NegotiatedClientState::Idle);
    h.search(e, "duel");
    h.run_until_matched(&[loser, e], 20);
    assert_eq!(h.found(loser).unwrap().other, e);
    assert_eq!(h.found(loser).unwrap().role, NegotiatedRole::Requester);
}
