//! Many clients searching at once pair up, nobody in two pairs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

/// Checks that the matches of `ids` form disjoint, mutual pairs; returns the pairs.
fn pairs(h: &NegotiatedTestHarness, ids: &[PlayerId]) -> BTreeSet<(PlayerId, PlayerId)> {
    let mut partner: BTreeMap<PlayerId, PlayerId> = BTreeMap::new();
    for id in ids {
        let log = h.recorded::<NegotiatedMatchFound>(*id);
        assert!(log.len() <= 1, "client {id} matched {} times", log.len());
        if let Some(f) = log.first() {
            assert_eq!(f.me, *id);
            assert_ne!(f.other, *id);
            partner.insert(*id, f.other);
        }
    }
    let mut pairs = BTreeSet::new();
    for (a, b) in &partner {
        assert_eq!(
            partner.get(b),
            Some(a),
            "{a} matched {b} but {b} did not match {a}"
        );
        let fa = h.found(*a).unwrap();
        let fb = h.found(*b).unwrap();
        assert_eq!(
            (fa.request, fa.bid, fa.accept),
            (fb.request, fb.bid, fb.accept)
        );
        assert_ne!(fa.role, fb.role);
        pairs.insert((*a.min(b), *a.max(b)));
    }
    pairs
}

#[test]
fn ten_clients_make_five_pairs() {
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(10), Duration::from_secs(1));
    let ids = h.add_clients(10);
    for id in &ids {
        h.search(*id, "duel");
    }
    let updates = h.run_until_matched(&ids, 500);
    let pairs = pairs(&h, &ids);
    assert_eq!(pairs.len(), 5);
    let everyone: BTreeSet<PlayerId> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    assert_eq!(everyone.len(), 10);
    // well within one frame (1000 updates)
    assert!(updates < 300, "took {updates} updates");
    let restarts: u32 = ids.iter().map(|id| h.status(*id).restarts).sum();
    eprintln!("10 clients paired in {updates} updates with {restarts} restarts");
    // keep running: nothing changes, nobody matches twice
    h.run(200);
    assert_eq!(self::pairs(&h, &ids), pairs);
    for id in &ids {
        assert_eq!(h.state(*id), NegotiatedClientState::Matched);
        assert!(
            h.recorded::<NegotiatedClientError>(*id).is_empty(),
            "client {id}: {:?}",
            h.recorded::<NegotiatedClientError>(*id)
        );
    }
    // each accept closed its request at the relay
    for (a, _) in &pairs {
        let f = h.found(*a).unwrap();
        assert!(h.relay_state().store().is_closed(f.request));
    }
}

#[test]
fn clients_arriving_one_by_one_pair_in_order() {
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(10), Duration::from_secs(1));
    let ids = h.add_clients(6);
    for id in &ids {
        h.search(*id, "duel");
        h.run(5);
    }
    h.run_until_matched(&ids, 200);
    let pairs = pairs(&h, &ids);
    // arriving 50 ms apart, each second client bids on the request of the one before
    assert_eq!(
        pairs,
        BTreeSet::from([(ids[0], ids[1]), (ids[2], ids[3]), (ids[4], ids[5])])
    );
    for id in &ids {
        assert!(
            h.recorded::<NegotiatedRestarted>(*id).is_empty(),
            "nobody had to restart"
        );
    }
}

#[test]
fn an_odd_client_out_keeps_searching() {
    let mut h = NegotiatedTestHarness::with_frames(Duration::from_secs(10), Duration::from_secs(1));
    let ids = h.add_clients(7);
    for id in &ids {
        h.search(*id, "duel");
    }
    h.run_until(500, |h| {
        ids.iter().filter(|id| h.found(**id).is_some()).count() == 6
    });
    h.run(100);
    let pairs = pairs(&h, &ids);
    assert_eq!(pairs.len(), 3);
    let alone: Vec<PlayerId> = ids
        .iter()
        .copied()
        .filter(|id| h.found(*id).is_none())
        .collect();
    assert_eq!(alone.len(), 1);
    assert_eq!(h.state(alone[0]), NegotiatedClientState::Requesting);
    // a newcomer pairs with it
    let late = h.add_client();
    h.run_until(50, |h| h.state(late) == NegotiatedClientState::Idle);
    h.search(late, "duel");
    h.run_until_matched(&[alone[0], late], 50);
    assert_eq!(h.found(late).unwrap().other, alone[0]);
}
