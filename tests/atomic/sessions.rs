//! A player that reconnects under the same id while an old match of its previous
//! connection is still forming: the old match's rollback leaves the new session alone (no
//! location rewritten, no re-queue, no message), whether the new match already committed
//! or is still committing.

use std::time::Duration;

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::common::harness;

/// Where the server has a player (panics if nowhere).
fn location(h: &AtomicTestHarness, p: PlayerId) -> AtomicPlayerLocation {
    h.server_state().location(p).expect("connected")
}

fn matching(h: &AtomicTestHarness, p: PlayerId) -> Option<Entity> {
    match h.server_state().location(p) {
        Some(AtomicPlayerLocation::Matching(e)) => Some(e),
        _ => None,
    }
}

fn server_time(h: &AtomicTestHarness) -> Duration {
    h.server_resource::<Time<Real>>().elapsed()
}

/// `a` and `b` form M1, where `b` never answers the ping (M1 waits out its 2 s); `a`
/// drops and reconnects under the same id. Returns M1's entity.
fn old_match_then_reconnect(h: &mut AtomicTestHarness, a: PlayerId, b: PlayerId) -> Entity {
    h.faults(b).ignore_pings = true;
    h.join(a, "duel");
    h.run(2);
    h.join(b, "duel");
    h.run_until(20, |h| matching(h, a).is_some());
    let m1 = matching(h, a).unwrap();
    let old_session = h.server_state().session(a).unwrap();
    h.run(3);
    h.reconnect_fresh(a);
    h.run_until(20, |h| h.client_state(a) == AtomicClientState::Idle);
    assert_ne!(h.server_state().session(a), Some(old_session));
    assert_eq!(location(h, a), AtomicPlayerLocation::Idle);
    m1
}

fn m1_outcome(h: &AtomicTestHarness) -> Option<AtomicMatchOutcome> {
    h.server_recorded::<AtomicMatchOutcome>()
        .iter()
        .find(|o| o.match_id == 1)
        .cloned()
}

#[test]
fn the_old_match_rolling_back_leaves_the_new_lobby_alone() {
    let mut h = harness();
    let [a, b, c] = h.add_clients(3)[..] else {
        unreachable!()
    };
    old_match_then_reconnect(&mut h, a, b);
    // the new session queues and commits M2 with c well before M1 times out
    h.join(c, "duel");
    h.run(2);
    h.join(a, "duel");
    h.run_until(50, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    assert!(m1_outcome(&h).is_none(), "M1 is still waiting for b");
    let committed = h.server_recorded::<AtomicMatchCommitted>()[0].clone();
    let lobby = AtomicPlayerLocation::InLobby(committed.lobby);
    assert_eq!(location(&h, a), lobby);

    h.run_until(300, |h| m1_outcome(h).is_some());
    let o = m1_outcome(&h).unwrap();
    assert_eq!(o.status, AtomicMatchStatus::BothDisconnected);
    assert!(o.requeued.is_empty());
    h.run(3);
    // a's new session is untouched: still in M2's lobby, not queued, told nothing of M1
    assert_eq!(location(&h, a), lobby);
    assert!(!h.server_state().queue().contains(&a));
    assert_eq!(h.client_state(a), AtomicClientState::Matched);
    assert!(h.recorded::<AtomicMatchCancelled>(a).is_empty());
    assert_eq!(
        h.recorded::<AtomicMatchFound>(a)[0].match_id,
        committed.match_id
    );
    assert_eq!(h.stats().healthy_players_dropped, 0);
    assert_eq!(h.stats().matches_in_flight, 0);
}

#[test]
fn the_old_match_rolling_back_leaves_the_new_match_still_committing_alone() {
    let mut h = harness();
    let [a, b, c] = h.add_clients(3)[..] else {
        unreachable!()
    };
    let formed = server_time(&h);
    let m1 = old_match_then_reconnect(&mut h, a, b);
    // c answers slowly, so M2's health check still runs when M1 times out
    h.faults(c).pong_delay = Duration::from_millis(300);
    h.join(c, "duel");
    h.run_until(300, |h| {
        server_time(h) >= formed + Duration::from_millis(1_750)
    });
    h.join(a, "duel");
    h.run_until(10, |h| matching(h, a).is_some());
    let m2 = matching(&h, a).unwrap();
    assert_ne!(m1, m2);

    h.run_until(100, |h| m1_outcome(h).is_some());
    assert!(h.server_recorded::<AtomicMatchCommitted>().is_empty());
    // M1 rolled back while M2 was forming: a is still in M2, in its new session
    assert_eq!(location(&h, a), AtomicPlayerLocation::Matching(m2));
    assert!(!h.server_state().queue().contains(&a));
    h.run_until(100, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    let committed = h.server_recorded::<AtomicMatchCommitted>()[0].clone();
    assert_eq!(
        location(&h, a),
        AtomicPlayerLocation::InLobby(committed.lobby)
    );
    h.run(3);
    assert_eq!(h.client_state(a), AtomicClientState::Matched);
    assert!(h.recorded::<AtomicMatchCancelled>(a).is_empty());
    assert_eq!(h.stats().healthy_players_dropped, 0);
}
