//! The server app despawning a match or a lobby itself: a match despawned before it
//! finished rolls back at once (players told, re-queued at the front, lobby deleted,
//! counted), an uncommitted lobby despawned calls its match off, and a committed lobby
//! despawned frees and tells its members. Nobody is stranded and no count drifts.

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::common::harness;

fn match_entity(h: &AtomicTestHarness, p: PlayerId) -> Option<Entity> {
    match h.server_state().location(p) {
        Some(AtomicPlayerLocation::Matching(e)) => Some(e),
        _ => None,
    }
}

/// `a` then `b` join; runs until they are in a match, and (if `phase_two`) until its
/// lobby exists (`b` never acknowledges, so it stays open).
fn forming_pair(h: &mut AtomicTestHarness, a: PlayerId, b: PlayerId, phase_two: bool) -> Entity {
    h.faults(b).acknowledge_proposals = false;
    h.join(a, "duel");
    h.run(2);
    h.join(b, "duel");
    h.run_until(20, |h| match_entity(h, b).is_some());
    if phase_two {
        h.run_until(20, |h| h.stats().lobbies_open == 1);
    }
    match_entity(h, a).unwrap()
}

fn assert_counts_settled(h: &AtomicTestHarness) {
    let stats = h.stats();
    assert_eq!(stats.matches_in_flight, 0, "{stats:#?}");
    assert_eq!(stats.lobbies_open, 0, "{stats:#?}");
    assert_eq!(stats.healthy_players_dropped, 0);
}

/// Everything the aborted match told its players, and where they are.
fn assert_aborted_and_requeued(h: &mut AtomicTestHarness, players: [PlayerId; 2]) {
    let outcomes = h.server_recorded::<AtomicMatchOutcome>();
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert_eq!(outcomes[0].status, AtomicMatchStatus::Aborted);
    assert_eq!(outcomes[0].requeued, players.to_vec());
    assert_eq!(h.stats().matches_rolled_back, 1);
    assert_eq!(h.stats().rollbacks_by_status.get("aborted"), Some(&1));
    for (i, p) in players.into_iter().enumerate() {
        let cancel = h.recorded::<AtomicMatchCancelled>(p)[0].clone();
        assert_eq!(cancel.reason, AtomicMatchCancelReason::MatchAborted);
        assert!(cancel.requeued);
        let joined = h.recorded::<AtomicQueueJoined>(p).last().unwrap().clone();
        assert!(joined.requeued);
        assert_eq!(joined.position, i as u32 + 1);
    }
}

#[test]
fn a_match_despawned_in_phase_one_rolls_back_and_requeues_its_players() {
    let mut h = harness();
    // a third player would take the front; with a category of its own nothing re-forms
    h.server
        .world_mut()
        .resource_mut::<AtomicServerSettings>()
        .players_per_match = 3;
    let [a, b, c] = h.add_clients(3)[..] else {
        unreachable!()
    };
    for p in [a, b] {
        h.join(p, "duel");
        h.run(2);
    }
    h.join(c, "duel");
    h.run_until(20, |h| match_entity(h, c).is_some());
    let m = match_entity(&h, a).unwrap();
    h.server.world_mut().despawn(m);
    // at once: nobody is left in the dead match
    for p in [a, b, c] {
        assert_eq!(
            h.server_state().location(p),
            Some(AtomicPlayerLocation::Queued)
        );
    }
    assert_eq!(h.stats().total_queued(), 3);
    h.run(1);
    // the three re-form at once (a new match), each told where it stood first
    assert_eq!(h.stats().matches_formed, 2);
    let first = &h.server_recorded::<AtomicMatchOutcome>()[0];
    assert_eq!(first.status, AtomicMatchStatus::Aborted);
    assert_eq!(first.requeued, vec![a, b, c]);
    for (i, p) in [a, b, c].into_iter().enumerate() {
        let joined = h.recorded::<AtomicQueueJoined>(p).last().unwrap().clone();
        assert_eq!((joined.position, joined.requeued), (i as u32 + 1, true));
    }
    assert_eq!(h.stats().matches_in_flight, 1);
    assert_eq!(h.stats().healthy_players_dropped, 0);
}

/// A pair whose match is in phase two (its lobby exists), with `players_per_match` raised
/// to 3 so that the pair cannot re-form and the aftermath of a removal can be read:
/// (a, b, the match, its lobby).
fn pair_in_phase_two(h: &mut AtomicTestHarness) -> (PlayerId, PlayerId, Entity, Entity) {
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let m = forming_pair(h, a, b, true);
    let lobby = h
        .server
        .world()
        .get::<AtomicMatch>(m)
        .unwrap()
        .lobby()
        .unwrap();
    h.server
        .world_mut()
        .resource_mut::<AtomicServerSettings>()
        .players_per_match = 3;
    h.run(1);
    (a, b, m, lobby)
}

#[test]
fn a_match_despawned_in_phase_two_deletes_its_lobby() {
    let mut h = harness();
    let (a, b, m, lobby) = pair_in_phase_two(&mut h);
    h.server.world_mut().despawn(m);
    h.run(3);
    assert!(h.server.world().get_entity(lobby).is_err(), "lobby deleted");
    assert_aborted_and_requeued(&mut h, [a, b]);
    assert_counts_settled(&h);
    assert_eq!(h.stats().total_queued(), 2);
}

#[test]
fn an_uncommitted_lobby_despawned_rolls_its_match_back() {
    let mut h = harness();
    let (a, b, m, lobby) = pair_in_phase_two(&mut h);
    h.server.world_mut().despawn(lobby);
    h.run(3);
    assert!(h.server.world().get_entity(m).is_err(), "match gone");
    assert_aborted_and_requeued(&mut h, [a, b]);
    assert_counts_settled(&h);
}

#[test]
fn a_committed_lobby_despawned_frees_and_tells_its_members() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    h.join(a, "duel");
    h.run(2);
    h.join(b, "duel");
    h.run_until(50, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    let committed = h.server_recorded::<AtomicMatchCommitted>()[0].clone();
    h.run(2);
    h.server.world_mut().despawn(committed.lobby);
    h.run(3);
    for p in [a, b] {
        assert_eq!(
            h.server_state().location(p),
            Some(AtomicPlayerLocation::Idle)
        );
        assert_eq!(h.client_state(p), AtomicClientState::Idle);
        assert_eq!(
            h.recorded::<AtomicLobbyLeft>(p)[0].lobby_id,
            committed.lobby_id
        );
    }
    assert_eq!(h.server_state().lobby(committed.lobby_id), None);
    assert_counts_settled(&h);
    // and they can queue again
    h.join(a, "duel");
    h.run(3);
    assert_eq!(h.client_state(a), AtomicClientState::Queued);
}
