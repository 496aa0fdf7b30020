//! The promise through the plugins: every match is mutual, a refusal reaches the
//! client that posted, and the relay's memory stays under its caps.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::store::NegotiatedAnswer;
use bevy_atomic_matchmaking::negotiated::relay::NegotiatedRelaySettings;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

use crate::common::{harness, post_request};

/// Every client that found a match holds the same one as the other side.
fn assert_mutual(h: &NegotiatedTestHarness, ids: &[PlayerId]) {
    for id in ids {
        let found = h.recorded::<NegotiatedMatchFound>(*id);
        assert!(found.len() <= 1, "{id} matched {} times", found.len());
        let Some(f) = found.first() else { continue };
        let theirs = h.found(f.other);
        assert!(
            theirs.is_some_and(|o| o.other == *id && o.accept == f.accept),
            "{id} matched {} who holds {theirs:?}",
            f.other
        );
    }
}

fn errors(h: &NegotiatedTestHarness, id: PlayerId) -> Vec<NegotiatedErrorKind> {
    h.recorded::<NegotiatedClientError>(id)
        .iter()
        .map(|e| e.kind)
        .collect()
}

/// A requesting with its link stalled, B bidding on A's request; returns B's bid.
fn b_bids_while_a_stalls(
    h: &mut NegotiatedTestHarness,
    a: PlayerId,
    b: PlayerId,
) -> NegotiatedFactId {
    post_request(h, a);
    h.set_link(a, false);
    h.search(b, "duel");
    h.run_until(20, |h| !h.recorded::<NegotiatedBidPlaced>(b).is_empty());
    h.run(2);
    h.recorded::<NegotiatedBidPlaced>(b)[0].bid
}

#[test]
fn a_cancel_while_bidding_withdraws_the_bid_before_the_search_ends() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let bid = b_bids_while_a_stalls(&mut h, a, b);
    h.cancel(b);
    // the search ends with the relay's verdict on the withdrawal, a round trip later
    h.run_until(5, |h| !h.recorded::<NegotiatedCancelled>(b).is_empty());
    h.run(1);
    assert_eq!(h.state(b), NegotiatedClientState::Idle);
    assert!(matches!(
        h.relay_state().store().answer_to(bid),
        Some(NegotiatedAnswer::Withdrawn(_))
    ));
    // A comes back and takes the bid it finally got: the relay refuses it
    h.set_link(a, true);
    h.run(10);
    assert!(h.found(a).is_none() && h.found(b).is_none());
    assert_eq!(h.state(a), NegotiatedClientState::Requesting);
    assert!(errors(&h, a).contains(&NegotiatedErrorKind::BidWithdrawn));
}

#[test]
fn a_bidder_that_left_cannot_be_accepted() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    b_bids_while_a_stalls(&mut h, a, b);
    h.disconnect(b);
    h.run(2);
    h.set_link(a, true);
    h.run(10);
    assert!(h.found(a).is_none());
    assert_eq!(h.state(a), NegotiatedClientState::Requesting);
    assert!(errors(&h, a).contains(&NegotiatedErrorKind::BidderDeparted));
}

#[test]
fn a_requester_whose_accept_is_refused_is_not_matched() {
    // a share of three facts: the request, its cancel and a second request use it up
    let mut h = NegotiatedTestHarness::new(
        NegotiatedRelaySettings {
            frame_duration: Duration::from_secs(30),
            limits: NegotiatedRelayLimits {
                max_facts_per_frame: 3,
                ..Default::default()
            },
            ..Default::default()
        },
        NegotiatedClientSettings {
            bid_timeout: Duration::from_secs(2),
            time_sync_interval: Duration::from_secs(1),
            ..Default::default()
        },
    );
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    post_request(&mut h, a);
    h.cancel(a);
    h.run(2);
    post_request(&mut h, a);
    h.search(b, "duel");
    h.run_for(Duration::from_secs(5));
    assert!(errors(&h, a).contains(&NegotiatedErrorKind::TooManyFacts));
    assert!(h.found(a).is_none() && h.found(b).is_none());
    assert_mutual(&h, &[a, b]);
}

#[test]
fn a_refused_request_reaches_the_client_at_once() {
    let mut h = NegotiatedTestHarness::new(
        NegotiatedRelaySettings {
            frame_duration: Duration::from_secs(30),
            limits: NegotiatedRelayLimits {
                max_facts_per_frame: 1,
                ..Default::default()
            },
            ..Default::default()
        },
        NegotiatedClientSettings {
            bid_timeout: Duration::from_secs(2),
            time_sync_interval: Duration::from_secs(1),
            ..Default::default()
        },
    );
    let [a] = h.add_clients(1)[..] else {
        unreachable!()
    };
    post_request(&mut h, a);
    h.cancel(a);
    h.run(2);
    h.search(a, "duel");
    h.run_until(5, |h| !h.recorded::<NegotiatedRestarted>(a).is_empty());
    assert_eq!(
        h.recorded::<NegotiatedRestarted>(a)[0].reason,
        NegotiatedRestartReason::Refused
    );
    // it looks again, and waits a bid timeout before requesting again
    h.run(1);
    assert_eq!(h.state(a), NegotiatedClientState::Looking);
    assert!(errors(&h, a).contains(&NegotiatedErrorKind::TooManyFacts));
}

#[test]
fn the_relay_holds_no_more_facts_than_its_cap() {
    let mut h = NegotiatedTestHarness::new(
        NegotiatedRelaySettings {
            frame_duration: Duration::from_secs(30),
            limits: NegotiatedRelayLimits {
                max_facts: 3,
                max_departed: 1,
                ..Default::default()
            },
            ..Default::default()
        },
        NegotiatedClientSettings {
            bid_timeout: Duration::from_secs(2),
            time_sync_interval: Duration::from_secs(1),
            ..Default::default()
        },
    );
    let ids = h.add_clients(6);
    // each posts a request in another category: nobody bids, the store fills up
    for (n, id) in ids.iter().enumerate() {
        h.search(*id, &format!("mode{n}"));
        h.run(3);
    }
    h.run(1);
    assert_eq!(h.relay_state().store().len(), 3);
    for id in &ids[3..] {
        assert!(errors(&h, *id).contains(&NegotiatedErrorKind::RelayFull));
        assert_eq!(h.state(*id), NegotiatedClientState::Looking);
    }
    for id in &ids {
        h.disconnect(*id);
    }
    h.run(3);
    assert_eq!(h.relay_state().core().departed().len(), 1);
}
