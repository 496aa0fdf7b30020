//! A Cancel closes a request for every observer.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::fact::*;
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NegotiatedClientMessage, NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::negotiated::core::store::NegotiatedFactStore;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

use crate::common::{harness, hello, post_request};

/// A raw client that watches the current frames and keeps its own store of what it sees.
fn observer(h: &mut NegotiatedTestHarness) -> PlayerId {
    let o = h.add_raw_client();
    hello(h, o);
    let frames = h.relay_state().frames().readable(h.relay_now());
    h.send_message(
        o,
        &NegotiatedClientMessage::Subscribe {
            category: "duel".into(),
            frames,
        },
    );
    o
}

fn absorb(h: &mut NegotiatedTestHarness, o: PlayerId, store: &mut NegotiatedFactStore) -> usize {
    let mut facts = 0;
    for m in h.take_messages(o) {
        if let NegotiatedRelayMessage::Fact { author, fact } = m {
            facts += 1;
            store
                .insert(NegotiatedSignedFact::new(author, fact))
                .expect("facts arrive after their request");
        }
    }
    facts
}

#[test]
fn cancel_closes_the_request_for_every_observer() {
    let mut h = harness();
    let [a] = h.add_clients(1)[..] else {
        unreachable!()
    };
    let observers = [observer(&mut h), observer(&mut h)];
    let mut stores = [NegotiatedFactStore::new(), NegotiatedFactStore::new()];
    h.run(2);

    let request = post_request(&mut h, a);
    for (o, s) in observers.iter().zip(stores.iter_mut()) {
        assert_eq!(absorb(&mut h, *o, s), 1);
        assert_eq!(
            s.open_requests("duel", &[s.request(request).unwrap().0.frame])
                .len(),
            1
        );
    }

    h.cancel(a);
    h.run(3);
    assert_eq!(
        h.recorded::<NegotiatedCancelled>(a)[0].request,
        Some(request)
    );
    for (o, s) in observers.iter().zip(stores.iter_mut()) {
        assert_eq!(absorb(&mut h, *o, s), 1, "the cancel reached observer {o}");
        assert!(s.is_cancelled(request));
        assert!(
            s.open_requests("duel", &[s.request(request).unwrap().0.frame])
                .is_empty()
        );
        let cancel = s.about(request).next().unwrap();
        assert_eq!(cancel.author, a);
    }
    assert!(h.relay_state().store().is_cancelled(request));

    // clients arriving later learn it from the relay: they never bid on it
    let b = h.add_client();
    let c = h.add_client();
    h.run_until(50, |h| {
        h.state(b) == NegotiatedClientState::Idle && h.state(c) == NegotiatedClientState::Idle
    });
    h.search(b, "duel");
    h.run(5);
    h.search(c, "duel");
    h.run_until_matched(&[b, c], 30);
    for id in [b, c] {
        assert!(
            h.recorded::<NegotiatedBidPlaced>(id)
                .iter()
                .all(|bid| bid.request != request)
        );
        assert_ne!(h.found(id).unwrap().request, request);
    }
    assert_eq!(h.found(b).unwrap().other, c);
}

#[test]
fn a_bidder_on_a_cancelled_request_restarts_at_once() {
    let mut h =
        NegotiatedTestHarness::with_frames(Duration::from_secs(30), Duration::from_secs(10));
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    post_request(&mut h, a);
    // B's bid and A's cancel cross: A's network stalls, B bids, A cancels meanwhile
    h.set_link(a, false);
    h.search(b, "duel");
    h.run_until(20, |h| !h.recorded::<NegotiatedBidPlaced>(b).is_empty());
    h.cancel(a);
    h.run(3);
    assert!(h.recorded::<NegotiatedRestarted>(b).is_empty());
    h.set_link(a, true);
    h.run_until(10, |h| !h.recorded::<NegotiatedRestarted>(b).is_empty());
    let reason = h.recorded::<NegotiatedRestarted>(b)[0].reason;
    assert!(
        matches!(
            reason,
            NegotiatedRestartReason::RequestClosed | NegotiatedRestartReason::BidRejected
        ),
        "{reason:?}"
    );
    // far sooner than the 10 s bid timeout
    assert!(h.found(b).is_none());
    h.run_until(10, |h| !h.recorded::<NegotiatedRequestPosted>(b).is_empty());
    assert_eq!(h.recorded::<NegotiatedMatchFound>(a).len(), 0);
    // A turned B's bid down: its request was cancelled
    h.run(2);
    let bid = h.recorded::<NegotiatedBidPlaced>(b)[0].bid;
    let request = h.recorded::<NegotiatedCancelled>(a)[0].request.unwrap();
    assert!(
        h.relay_state()
            .store()
            .about(request)
            .any(|f| f.fact == NegotiatedFact::Reject(NegotiatedReject { request, bid }))
    );
}
