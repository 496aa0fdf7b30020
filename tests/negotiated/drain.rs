//! Draining the relay: every client is told, no new request or bid is stored, a negotiation
//! under way still completes with a mutual match, and the drain finishes at its timeout.

use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;

use crate::common::{harness, post_request};

fn drain(h: &mut bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness, secs: u64) {
    h.record::<NegotiatedRelayDrainFinished>();
    h.server.world_mut().write_message(NegotiatedRelayDrain {
        timeout: Duration::from_secs(secs),
    });
}

#[test]
fn a_draining_relay_tells_everyone_refuses_new_requests_and_finishes_at_its_timeout() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    drain(&mut h, 1);
    h.run(3);
    assert!(h.relay_state().is_draining());
    for id in [a, b] {
        assert_eq!(
            h.recorded::<NegotiatedRelayClosing>(id),
            &[NegotiatedRelayClosing {
                retry_elsewhere: true
            }],
            "told once"
        );
        assert_eq!(h.state(id), NegotiatedClientState::RelayClosing);
    }
    // a client that connects during the drain is told too
    let c = h.add_client();
    h.run_until(20, |h| !h.recorded::<NegotiatedRelayClosing>(c).is_empty());

    // a search now: its request is refused, nothing is stored
    h.search(a, "duel");
    h.run(20);
    assert!(h.relay_state().store().is_empty(), "no request stored");
    assert!(
        h.recorded::<NegotiatedRestarted>(a)
            .iter()
            .any(|r| r.reason == NegotiatedRestartReason::Refused),
        "the request was refused"
    );
    assert!(
        h.server_recorded::<NegotiatedRelayDrainFinished>()
            .is_empty()
    );
    h.run(100); // past the 1 s timeout (10 ms steps)
    let finished = h.server_recorded::<NegotiatedRelayDrainFinished>();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0].clients_told, 3);
    assert!(finished[0].posts_refused >= 1);
}

#[test]
fn a_negotiation_under_way_when_the_drain_starts_still_ends_in_a_mutual_match() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let request = post_request(&mut h, a);
    h.search(b, "duel");
    h.run_until(50, |h| !h.recorded::<NegotiatedBidPlaced>(b).is_empty());
    drain(&mut h, 10);
    h.run_until_matched(&[a, b], 100);
    let (fa, fb) = (h.found(a).unwrap().clone(), h.found(b).unwrap().clone());
    assert_eq!(fa.request, request);
    assert_eq!(
        (fa.request, fa.bid, fa.accept),
        (fb.request, fb.bid, fb.accept)
    );
    assert_eq!((fa.other, fb.other), (b, a));
    h.run(2); // the state follows at the next transition
    assert_eq!(
        h.state(a),
        NegotiatedClientState::Matched,
        "matched wins over closing"
    );
}
