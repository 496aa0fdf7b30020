//! A relay restart loses every fact unless the relay keeps a journal; the clients notice,
//! re-sync and still pair, and with a journal an accept stored before the restart still
//! makes a mutual match.

use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

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

/// A harness whose relay keeps a journal in memory (30 s frames, 2 s bid timeout), or
/// none.
fn harness_with_journal(journal: Option<NegotiatedRelayJournal>) -> NegotiatedTestHarness {
    NegotiatedTestHarness::new(
        NegotiatedRelaySettings {
            frame_duration: Duration::from_secs(30),
            journal,
            ..Default::default()
        },
        NegotiatedClientSettings {
            bid_timeout: Duration::from_secs(2),
            time_sync_interval: Duration::from_secs(1),
            ..Default::default()
        },
    )
}

/// A requests, B bids, B's link stops, A's accept is stored (A counts the match), then
/// the relay restarts before B heard of the accept. Returns (A, B).
fn accept_stored_then_restart(h: &mut NegotiatedTestHarness) -> (PlayerId, PlayerId) {
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let request = post_request(h, a);
    h.search(b, "duel");
    h.run_until(50, |h| !h.relay_state().store().bids_on(request).is_empty());
    h.set_link(b, false);
    h.run_until(50, |h| h.found(a).is_some());
    assert_eq!(h.found(a).unwrap().other, b);
    assert_eq!(h.state(b), NegotiatedClientState::Bidding);
    h.restart_relay();
    (a, b)
}

#[test]
fn with_a_journal_an_accept_stored_before_a_restart_still_reaches_the_bidder() {
    let mut h = harness_with_journal(Some(NegotiatedRelayJournal::memory()));
    let (a, b) = accept_stored_then_restart(&mut h);
    // request, bid and accept were read back
    assert!(h.relay_state().stats().facts_restored >= 3);
    // B withdraws its bid when back; the relay refuses it with the accept that came first
    h.run_until(100, |h| h.found(b).is_some());
    let (fa, fb) = (h.found(a).unwrap(), h.found(b).unwrap());
    assert_eq!(fb.other, a);
    assert_eq!(fb.role, NegotiatedRole::Bidder);
    assert_eq!(
        (fa.request, fa.bid, fa.accept),
        (fb.request, fb.bid, fb.accept)
    );
    assert_eq!(h.recorded::<NegotiatedMatchFound>(b).len(), 1);
}

#[test]
fn without_a_journal_the_bidder_never_learns_of_an_accept_the_relay_lost() {
    // the documented limit of a relay without a journal (README, "Two modes")
    let mut h = harness_with_journal(None);
    let (_, b) = accept_stored_then_restart(&mut h);
    assert_eq!(h.relay_state().stats().facts_restored, 0);
    h.run(300);
    assert!(h.found(b).is_none());
}
