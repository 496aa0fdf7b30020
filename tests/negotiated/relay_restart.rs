//! A relay restart loses every fact; the clients notice, re-sync and still pair.

use bevy_atomic_matchmaking::prelude::*;

use crate::common::{harness, post_request};

#[test]
fn a_relay_restart_loses_facts_and_clients_still_pair() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let lost = post_request(&mut h, a);
    assert!(h.relay_state().store().contains(lost));

    h.restart_relay();
    assert!(h.relay_state().store().is_empty());
    // A saw the connection drop and went back to looking
    assert!(
        h.recorded::<NegotiatedClientError>(a)
            .iter()
            .any(|e| e.kind == NegotiatedErrorKind::Connection)
    );
    assert_eq!(
        h.recorded::<NegotiatedRestarted>(a)[0].reason,
        NegotiatedRestartReason::ConnectionLost
    );
    h.run_until(50, |h| h.recorded::<NegotiatedRequestPosted>(a).len() == 2);
    // it welcomed us again, re-estimated the clock and posted a fresh request
    assert_eq!(h.recorded::<NegotiatedConnected>(a).len(), 2);
    let fresh = h.recorded::<NegotiatedRequestPosted>(a)[1].request;
    assert_ne!(fresh, lost);
    h.run(1);
    assert!(h.relay_state().store().contains(fresh));
    assert!(!h.relay_state().store().contains(lost));

    h.run_until(10, |h| h.state(b) == NegotiatedClientState::Idle);
    h.search(b, "duel");
    h.run_until_matched(&[a, b], 50);
    assert_eq!(h.found(b).unwrap().request, fresh);
    assert_eq!(h.found(a).unwrap().other, b);
}

#[test]
fn a_restart_in_the_middle_of_a_negotiation_is_recovered() {
    let mut h = harness();
    let ids = h.add_clients(4);
    for id in &ids {
        h.search(*id, "duel");
    }
    // restart right after the first requests reach the relay, before anyone pairs
    h.run_until(20, |h| {
        ids.iter()
            .all(|id| !h.recorded::<NegotiatedRequestPosted>(*id).is_empty())
    });
    h.restart_relay();
    h.run_until_matched(&ids, 200);
    for id in &ids {
        let f = h.found(*id).unwrap();
        assert_eq!(h.found(f.other).unwrap().other, *id);
        assert_eq!(h.recorded::<NegotiatedMatchFound>(*id).len(), 1);
    }
    // every match was made on the new relay
    for id in &ids {
        assert!(
            h.relay_state()
                .store()
                .contains(h.found(*id).unwrap().accept)
        );
    }
}
