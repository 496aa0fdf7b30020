//! Facts from authors not entitled to them are ignored; the relay stamps authors.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::fact::*;
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NegotiatedClientMessage, NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

use crate::common::{hello, post_request};

fn forger(h: &mut NegotiatedTestHarness) -> PlayerId {
    let c = h.add_raw_client();
    hello(h, c);
    h.run(2);
    assert!(
        matches!(h.take_messages(c)[..], [NegotiatedRelayMessage::Welcome { client_id, .. }] if client_id == c)
    );
    c
}

#[test]
fn a_forged_accept_from_a_third_client_is_ignored() {
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(30), Duration::from_secs(5));
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let c = forger(&mut h);
    let request = post_request(&mut h, a);
    // A is slow to answer; B bids
    h.set_link(a, false);
    h.search(b, "duel");
    h.run_until(20, |h| !h.recorded::<NegotiatedBidPlaced>(b).is_empty());
    let bid = h.recorded::<NegotiatedBidPlaced>(b)[0].bid;
    h.run(1);

    // C, knowing the ids, accepts B's bid on A's request
    let forged = NegotiatedFact::Accept(NegotiatedAccept { request, bid });
    h.send_message(
        c,
        &NegotiatedClientMessage::Post {
            fact: forged.clone(),
        },
    );
    h.run(3);
    // the relay stored and forwarded it, stamped with C: judging is the clients' job
    let forged_id = NegotiatedSignedFact::new(c, forged).id();
    assert_eq!(h.relay_state().store().get(forged_id).unwrap().author, c);
    assert!(
        !h.relay_state().store().is_closed(request),
        "a forged accept closes nothing"
    );
    // B ignored it and reported it
    assert!(h.found(b).is_none());
    assert_eq!(h.state(b), NegotiatedClientState::Bidding);
    assert!(
        h.recorded::<NegotiatedClientError>(b)
            .iter()
            .any(|e| e.kind == NegotiatedErrorKind::NotEntitled)
    );

    // the real requester's answer still counts
    h.set_link(a, true);
    h.run_until_matched(&[a, b], 20);
    assert_eq!(h.found(b).unwrap().other, a);
    assert_ne!(h.found(b).unwrap().accept, forged_id);
    assert_eq!(h.recorded::<NegotiatedMatchFound>(b).len(), 1);
}

#[test]
fn a_forged_cancel_does_not_close_a_request_for_watchers() {
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(30), Duration::from_secs(5));
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let c = forger(&mut h);
    let request = post_request(&mut h, a);
    h.send_message(
        c,
        &NegotiatedClientMessage::Post {
            fact: NegotiatedFact::Cancel(NegotiatedCancel::request(request)),
        },
    );
    h.run(3);
    assert!(!h.relay_state().store().is_cancelled(request));
    // B reads the frame (the forged cancel comes with it) and bids anyway
    h.search(b, "duel");
    h.run_until_matched(&[a, b], 20);
    assert_eq!(h.found(b).unwrap().request, request);
    assert!(
        h.recorded::<NegotiatedClientError>(b)
            .iter()
            .any(|e| e.kind == NegotiatedErrorKind::NotEntitled)
    );
}

#[test]
fn the_relay_stamps_the_sending_connection_as_author() {
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(30), Duration::from_secs(5));
    let [b] = h.add_clients(1)[..] else {
        unreachable!()
    };
    let c = forger(&mut h);
    // C posts a request; there is no author field to lie in
    let now = h.relay_now();
    let fact = NegotiatedFact::Request(NegotiatedRequest {
        category: "duel".into(),
        frame: h.relay_state().frames().frame_of(now),
        created_us: now.as_micros() as u64,
    });
    h.send_message(c, &NegotiatedClientMessage::Post { fact: fact.clone() });
    h.run(2);
    let id = NegotiatedSignedFact::new(c, fact).id();
    assert_eq!(h.relay_state().store().requester(id), Some(c));
    // B bids on it, knowing C as the requester
    h.search(b, "duel");
    h.run_until(20, |h| !h.recorded::<NegotiatedBidPlaced>(b).is_empty());
    assert_eq!(h.recorded::<NegotiatedBidPlaced>(b)[0].requester, c);
    assert_eq!(h.recorded::<NegotiatedBidPlaced>(b)[0].request, id);
}
