//! Re-queues after rollbacks: several matches rolling back in one frame put their
//! healthy players at the front by original enqueue time (whatever order the matches are
//! processed in), each told its true position; a re-queued player's wait is sampled once;
//! and no healthy player is ever dropped.

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::common::harness;

fn is_matching(h: &AtomicTestHarness, p: PlayerId) -> bool {
    matches!(
        h.server_state().location(p),
        Some(AtomicPlayerLocation::Matching(_))
    )
}

/// p1..p4 join one after another; M1 = (p1, p2) and M2 = (p3, p4) form, where p2 and p4
/// never answer the ping. Then p2 and p4 disconnect in the same update: both matches
/// roll back in the same frame.
fn two_rollbacks_in_one_frame(h: &mut AtomicTestHarness) -> [PlayerId; 4] {
    let [p1, p2, p3, p4] = h.add_clients(4)[..] else {
        unreachable!()
    };
    two_forming_matches(h, [p1, p2, p3, p4]);
    roll_back_both(h, [p1, p2, p3, p4])
}

fn two_forming_matches(h: &mut AtomicTestHarness, [p1, p2, p3, p4]: [PlayerId; 4]) {
    for p in [p2, p4] {
        h.faults(p).ignore_pings = true;
    }
    for p in [p1, p2, p3, p4] {
        h.join(p, "duel");
        h.run(2);
    }
    h.run_until(10, |h| is_matching(h, p4));
    assert!(is_matching(h, p1));
}

fn roll_back_both(h: &mut AtomicTestHarness, [p1, p2, p3, p4]: [PlayerId; 4]) -> [PlayerId; 4] {
    assert_eq!(h.stats().matches_in_flight, 2);
    let before = h.server_recorded::<AtomicMatchOutcome>().len();
    h.disconnect(p2);
    h.disconnect(p4);
    h.run_until(5, |h| {
        h.server_recorded::<AtomicMatchOutcome>().len() == before + 2
    });
    [p1, p2, p3, p4]
}

#[test]
fn simultaneous_rollbacks_requeue_by_seniority_with_true_positions() {
    let mut h = harness();
    let [p1, _, p3, _] = two_rollbacks_in_one_frame(&mut h);
    // the frame that rolled both back: p1 (queued first) is ahead of p3
    let front: Vec<PlayerId> = h
        .server_state()
        .queue()
        .tickets("duel")
        .iter()
        .map(|t| t.player)
        .collect();
    assert_eq!(front, vec![p1, p3]);
    let outcomes = h.server_recorded::<AtomicMatchOutcome>().to_vec();
    assert_eq!(outcomes[0].requeued, vec![p1]);
    assert_eq!(outcomes[1].requeued, vec![p3]);
    h.run(2);
    for (p, position) in [(p1, 1), (p3, 2)] {
        let joined = h.recorded::<AtomicQueueJoined>(p).last().unwrap().clone();
        assert!(joined.requeued);
        assert_eq!(joined.position, position, "player {p}");
    }
    // and the next match takes them in that order (p1 hosts)
    h.run_until(50, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    let committed = &h.server_recorded::<AtomicMatchCommitted>()[0];
    let order: Vec<PlayerId> = committed.players.iter().map(|p| p.player).collect();
    assert_eq!(order, vec![p1, p3]);
    assert_eq!(h.stats().healthy_players_dropped, 0);
}

/// The same, with the younger match processed first: a third match that formed before
/// both and commits after them leaves the storage holding M2 ahead of M1. p3 is re-queued
/// before p1, yet p1 goes ahead of it and each is told its final position.
#[test]
fn rollbacks_processed_younger_first_still_report_true_positions() {
    let mut h = harness();
    let [x, y] = h.add_clients(2)[..] else {
        unreachable!()
    };
    h.faults(y).pong_delay = std::time::Duration::from_millis(200);
    h.join(x, "warmup");
    h.run(1);
    h.join(y, "warmup");
    h.run(1);
    let [p1, p2, p3, p4] = h.add_clients(4)[..] else {
        unreachable!()
    };
    two_forming_matches(&mut h, [p1, p2, p3, p4]);
    assert_eq!(
        h.stats().matches_in_flight,
        3,
        "the warm-up match is still forming"
    );
    h.run_until(50, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    roll_back_both(&mut h, [p1, p2, p3, p4]);
    let outcomes = h.server_recorded::<AtomicMatchOutcome>().to_vec();
    let order: Vec<u64> = outcomes[1..].iter().map(|o| o.match_id).collect();
    h.run(2);
    let front: Vec<PlayerId> = h
        .server_state()
        .queue()
        .tickets("duel")
        .iter()
        .map(|t| t.player)
        .collect();
    let joined = |p| h.recorded::<AtomicQueueJoined>(p).last().unwrap().position;
    assert_eq!(
        (joined(p1), joined(p3)),
        (1, 2),
        "rollbacks processed in match order {order:?}, queue {front:?}"
    );
}

#[test]
fn a_requeued_players_wait_is_sampled_once() {
    let mut h = harness();
    two_rollbacks_in_one_frame(&mut h);
    assert_eq!(h.stats().time_in_queue.count(), 4);
    h.run_until(50, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    // p1 and p3 were taken into a match again, with their old tickets: not sampled again
    assert_eq!(h.stats().matches_formed, 3);
    assert_eq!(h.stats().time_in_queue.count(), 4);
    assert_eq!(h.stats().time_in_queue.percentiles().count, 4);
}

#[test]
fn healthy_players_dropped_stays_zero_through_every_kind_of_rollback() {
    let mut h = harness();
    let players = h.add_clients(6);
    h.faults(players[1]).ignore_pings = true;
    h.faults(players[3]).acknowledge_proposals = false;
    for p in &players {
        h.join(*p, "duel");
        h.run(1);
    }
    h.run(5);
    h.disconnect(players[5]);
    h.run_until(2_000, |h| {
        h.server_recorded::<AtomicMatchOutcome>().len() >= 3 && h.stats().matches_in_flight == 0
    });
    let stats = h.stats();
    assert!(stats.players_requeued >= 2, "{stats:#?}");
    assert_eq!(stats.healthy_players_dropped, 0, "{stats:#?}");
}
