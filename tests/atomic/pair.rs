//! A pair matched end to end through the in-process harness.

use bevy_atomic_matchmaking::prelude::*;

use crate::common::harness;

#[test]
fn a_pair_is_matched_end_to_end() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    assert_eq!(h.client_state(a), AtomicClientState::Idle);
    h.join(a, "duel");
    h.run(3);
    assert_eq!(h.client_state(a), AtomicClientState::Queued);
    assert_eq!(h.recorded::<AtomicQueueJoined>(a)[0].position, 1);
    h.join(b, "duel");
    h.run_until(50, |h| {
        h.client_state(a) == AtomicClientState::Matched
            && h.client_state(b) == AtomicClientState::Matched
    });
    let fa = h.recorded::<AtomicMatchFound>(a)[0].clone();
    let fb = h.recorded::<AtomicMatchFound>(b)[0].clone();
    assert_eq!(fa.lobby_code, fb.lobby_code);
    assert_eq!(fa.match_id, fb.match_id);
    assert_eq!(fa.others[0].player, b);
    assert_eq!(fb.others[0].player, a);
    assert!(fa.me.host && !fb.me.host);

    let outcomes = h.server_recorded::<AtomicMatchOutcome>();
    assert_eq!(outcomes.len(), 1);
    let outcome = &outcomes[0];
    assert_eq!(outcome.status, AtomicMatchStatus::Success);
    assert_eq!(outcome.lobby_code.as_deref(), Some(fa.lobby_code.as_str()));
    assert!(
        outcome
            .players
            .iter()
            .all(|p| p.health.is_healthy() && p.acknowledged)
    );
    assert_eq!(h.server_recorded::<AtomicMatchCommitted>().len(), 1);

    let stats = h.stats();
    assert_eq!(stats.matches_committed, 1);
    assert_eq!(stats.lobbies_open, 1);
    assert_eq!(stats.matches_in_flight, 0);
    assert_eq!(stats.total_queued(), 0);
    assert_eq!(stats.time_to_commit.count(), 1);

    // both leave the lobby: it closes
    h.send(a, AtomicLeaveLobby);
    h.send(b, AtomicLeaveLobby);
    h.run(3);
    assert_eq!(h.client_state(a), AtomicClientState::Idle);
    assert_eq!(h.stats().lobbies_open, 0);
    assert!(h.server_state().lobby(fa.lobby_id).is_none());
}
