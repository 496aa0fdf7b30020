//! Draining the server (issue #23): when the server app writes [`AtomicDrain`], every
//! queued player and every lobby member is told the server is closing, joins are refused
//! with `ServerClosing`, matches in flight finish or roll back within the drain timeout
//! (rolled-back players are told, not re-queued), and [`AtomicDrainFinished`] comes once
//! nothing is in flight, with stats that match what the clients saw.

use std::collections::BTreeSet;
use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::common::harness;

fn drain(h: &mut AtomicTestHarness, timeout: Duration) {
    h.server.world_mut().write_message(AtomicDrain { timeout });
}

fn finished(h: &AtomicTestHarness) -> Vec<AtomicDrainFinished> {
    h.server_recorded::<AtomicDrainFinished>().to_vec()
}

/// `lobby` (two players) committed, `stuck` (two players, the second never acknowledges)
/// in phase 2, and `alone` queued in a category of its own.
struct Scene {
    lobby: [PlayerId; 2],
    stuck: [PlayerId; 2],
    alone: PlayerId,
}

fn scene(h: &mut AtomicTestHarness) -> Scene {
    let p = h.add_clients(5);
    let scene = Scene {
        lobby: [p[0], p[1]],
        stuck: [p[2], p[3]],
        alone: p[4],
    };
    h.join(p[0], "duel");
    h.join(p[1], "duel");
    h.run_until(100, |h| h.client_state(p[1]) == AtomicClientState::Matched);
    h.faults(p[3]).acknowledge_proposals = false;
    h.join(p[2], "duel");
    h.join(p[3], "duel");
    h.join(p[4], "solo");
    h.run_until(100, |h| h.stats().lobbies_open == 2);
    assert_eq!(h.client_state(p[4]), AtomicClientState::Queued);
    assert_eq!(h.stats().matches_in_flight, 1);
    scene
}

#[test]
fn a_drain_tells_everyone_and_finishes_within_its_timeout() {
    let mut h = harness();
    h.record::<AtomicDrainFinished>();
    let s = scene(&mut h);
    let timeout = Duration::from_secs(1);
    let started = h.now();
    drain(&mut h, timeout);
    h.run_until(300, |h| !finished(h).is_empty());
    let done = finished(&h);
    assert_eq!(done.len(), 1, "{done:#?}");
    assert!(
        h.now() - started <= timeout + Duration::from_millis(100),
        "the drain took {:?}",
        h.now() - started
    );
    // the stuck match could not commit in time: aborted, nobody re-queued
    let outcomes = h.server_recorded::<AtomicMatchOutcome>();
    let stuck = outcomes.last().unwrap();
    assert!(!stuck.status.is_success(), "{stuck:#?}");
    assert!(stuck.requeued.is_empty(), "{stuck:#?}");
    for p in s.stuck {
        let cancel = h.recorded::<AtomicMatchCancelled>(p);
        assert_eq!(cancel.len(), 1, "player {p}: {cancel:#?}");
        assert!(!cancel[0].requeued);
    }
    // everyone is told, once, and says so in its state
    for p in s.lobby.into_iter().chain(s.stuck).chain([s.alone]) {
        let closing = h.recorded::<AtomicServerClosing>(p);
        assert_eq!(closing.len(), 1, "player {p}: {closing:#?}");
        assert!(closing[0].retry_elsewhere);
        assert_eq!(h.client_state(p), AtomicClientState::ServerClosing);
    }
    assert!(h.server_state().queue().is_empty());
    let stats = h.stats();
    assert_eq!(stats.matches_in_flight, 0, "{stats:#?}");
    assert_eq!(stats.healthy_players_dropped, 0);
    // the stats count every commit a client saw
    let seen: BTreeSet<u64> = [s.lobby, s.stuck]
        .into_iter()
        .flatten()
        .flat_map(|p| h.recorded::<AtomicMatchFound>(p))
        .map(|f| f.match_id)
        .collect();
    assert_eq!(stats.matches_committed, seen.len() as u64);
    assert_eq!(done[0].matches_committed, stats.matches_committed);
}

#[test]
fn a_match_that_commits_during_the_drain_counts_and_its_lobby_is_told() {
    let mut h = harness();
    h.record::<AtomicDrainFinished>();
    let p = h.add_clients(2);
    h.join(p[0], "duel");
    h.join(p[1], "duel");
    h.run_until(100, |h| h.stats().matches_in_flight == 1);
    drain(&mut h, Duration::from_secs(5));
    h.run_until(300, |h| !finished(h).is_empty());
    assert_eq!(h.stats().matches_committed, 1);
    assert_eq!(finished(&h)[0].matches_committed, 1);
    for player in p {
        assert_eq!(h.recorded::<AtomicMatchFound>(player).len(), 1);
        assert_eq!(h.recorded::<AtomicServerClosing>(player).len(), 1);
    }
}

#[test]
fn joins_during_a_drain_are_refused_with_server_closing() {
    let mut h = harness();
    h.record::<AtomicDrainFinished>();
    let p = h.add_clients(1)[0];
    drain(&mut h, Duration::from_secs(1));
    h.run(3);
    assert_eq!(finished(&h).len(), 1, "nothing in flight: done at once");
    h.join(p, "duel");
    h.run(5);
    let errors = h.recorded::<AtomicClientError>(p);
    assert!(
        errors
            .iter()
            .any(|e| e.kind == AtomicErrorKind::ServerClosing),
        "{errors:#?}"
    );
    assert!(h.server_state().queue().is_empty());
    assert!(h.server_state().is_draining());
}

#[test]
fn a_second_drain_changes_nothing() {
    let mut h = harness();
    h.record::<AtomicDrainFinished>();
    let s = scene(&mut h);
    drain(&mut h, Duration::from_secs(1));
    h.run(5);
    drain(&mut h, Duration::from_secs(60));
    h.run_until(300, |h| !finished(h).is_empty());
    assert_eq!(finished(&h).len(), 1);
    assert_eq!(h.recorded::<AtomicServerClosing>(s.alone).len(), 1);
}
