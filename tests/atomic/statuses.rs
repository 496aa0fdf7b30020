//! Each of the seed's five statuses, produced for real through the in-process harness,
//! and what happens to the players afterwards (re-queue at the front, lobby deleted).

use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::common::harness;

/// Queues `a` then `b` and runs until the server took both into a forming match.
/// A harness with two clients.
fn pair() -> (AtomicTestHarness, PlayerId, PlayerId) {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    (h, a, b)
}

/// Queues the pair and runs until `b`, which never acknowledges, holds the proposal.
fn proposed_to_a_silent_b(h: &mut AtomicTestHarness, a: PlayerId, b: PlayerId) {
    h.faults(b).acknowledge_proposals = false;
    queue_pair(h, a, b);
    h.run_until(50, |h| !h.recorded::<AtomicMatchProposed>(b).is_empty());
}

fn queue_pair(h: &mut AtomicTestHarness, a: PlayerId, b: PlayerId) {
    h.join(a, "duel");
    h.run(2);
    h.join(b, "duel");
    h.run_until(20, |h| {
        matches!(
            h.server_state().location(a),
            Some(AtomicPlayerLocation::Matching(_))
        )
    });
}

fn only_outcome(h: &AtomicTestHarness) -> AtomicMatchOutcome {
    let outcomes = &h.server_recorded::<AtomicMatchOutcome>();
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    outcomes[0].clone()
}

fn wait_outcome(h: &mut AtomicTestHarness) -> AtomicMatchOutcome {
    h.run_until(1000, |h| {
        !h.server_recorded::<AtomicMatchOutcome>().is_empty()
    });
    only_outcome(h)
}

#[test]
fn success() {
    let (mut h, a, b) = pair();
    queue_pair(&mut h, a, b);
    let o = wait_outcome(&mut h);
    assert_eq!(o.status, AtomicMatchStatus::Success);
    assert_eq!(o.status.as_str(), "success");
    assert!(o.requeued.is_empty());
    assert!(o.lobby_id.is_some());
    h.run(2);
    assert_eq!(h.client_state(a), AtomicClientState::Matched);
    assert_eq!(h.client_state(b), AtomicClientState::Matched);
}

#[test]
fn player1_disconnected_during_phase_one_requeues_player2_at_the_front() {
    let mut h = harness();
    let [a, b, c] = h.add_clients(3)[..] else {
        unreachable!()
    };
    queue_pair(&mut h, a, b);
    // a's pong is stuck in the network while c queues behind the forming match
    h.set_link(a, false);
    h.join(c, "duel");
    h.run(3);
    assert_eq!(h.recorded::<AtomicQueueJoined>(c)[0].position, 1);
    assert!(
        h.server_recorded::<AtomicMatchOutcome>().is_empty(),
        "phase 1 waits for a"
    );
    h.set_link(a, true);
    h.disconnect(a);
    let o = wait_outcome(&mut h);
    assert_eq!(o.status, AtomicMatchStatus::Player1Disconnected);
    assert_eq!(o.status.as_str(), "player1_disconnected");
    assert_eq!(o.players[0].health, AtomicHealthCheck::Disconnected);
    assert!(o.players[1].health.is_healthy());
    assert_eq!(o.requeued, vec![b]);
    assert_eq!(o.lobby_id, None, "phase 1 failures never create a lobby");

    // b hears why and that it is back in the queue, at the front
    h.run(2);
    let cancel = h
        .recorded::<AtomicMatchCancelled>(b)
        .last()
        .expect("b was told");
    assert!(cancel.requeued);
    assert_eq!(
        cancel.reason,
        AtomicMatchCancelReason::OtherPlayerUnavailable
    );
    let rejoin = h.recorded::<AtomicQueueJoined>(b).last().unwrap();
    assert!(rejoin.requeued);
    assert_eq!(rejoin.position, 1);

    // and b is matched next, ahead of c who queued before the rollback (the match
    // order is the queue order: b first means b was put in front of c)
    h.run_until(200, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    let committed = &h.server_recorded::<AtomicMatchCommitted>()[0];
    let players: Vec<PlayerId> = committed.players.iter().map(|p| p.player).collect();
    assert_eq!(players[0], b, "the re-queued player is first in line");
    assert_eq!(players, vec![b, c]);
    assert_eq!(h.stats().players_requeued, 1);
    assert_eq!(
        h.stats().rollbacks_by_status.get("player1_disconnected"),
        Some(&1)
    );
}

#[test]
fn player2_disconnected_before_phase_one_answers() {
    let (mut h, a, b) = pair();
    // b's network stalls before its pong gets through, then the connection drops
    queue_pair(&mut h, a, b);
    h.set_link(b, false);
    h.run(5);
    assert!(
        h.server_recorded::<AtomicMatchOutcome>().is_empty(),
        "phase 1 waits for b"
    );
    h.set_link(b, true);
    h.disconnect(b);
    let o = wait_outcome(&mut h);
    assert_eq!(o.status, AtomicMatchStatus::Player2Disconnected);
    assert_eq!(o.players[1].health, AtomicHealthCheck::Disconnected);
    assert_eq!(o.requeued, vec![a]);
    h.run(2);
    assert_eq!(h.client_state(a), AtomicClientState::Queued);
    assert_eq!(h.client_state(b), AtomicClientState::Disconnected);
    assert_eq!(h.stats().players_queued.get("duel"), Some(&1));
}

#[test]
fn both_disconnected() {
    let (mut h, a, b) = pair();
    queue_pair(&mut h, a, b);
    h.disconnect(a);
    h.disconnect(b);
    let o = wait_outcome(&mut h);
    assert_eq!(o.status, AtomicMatchStatus::BothDisconnected);
    assert!(o.requeued.is_empty());
    assert_eq!(h.stats().total_queued(), 0);
    assert_eq!(h.stats().matches_in_flight, 0);
    assert!(h.server_state().location(a).is_none());
}

#[test]
fn a_silent_player_fails_the_health_check_after_the_ping_timeout() {
    let (mut h, a, b) = pair();
    h.faults(b).ignore_pings = true;
    queue_pair(&mut h, a, b);
    let frames = h.run_until(1000, |h| {
        !h.server_recorded::<AtomicMatchOutcome>().is_empty()
    });
    let o = only_outcome(&h);
    assert_eq!(o.status, AtomicMatchStatus::Player2Disconnected);
    assert_eq!(o.players[1].health, AtomicHealthCheck::NoAnswer);
    // the outcome waited for the 2 s ping timeout, not less
    assert!(
        h.step * frames as u32 >= Duration::from_millis(1900),
        "{frames} frames"
    );
    h.run(2);
    let cancel = h
        .recorded::<AtomicMatchCancelled>(b)
        .last()
        .unwrap()
        .clone();
    assert_eq!(cancel.reason, AtomicMatchCancelReason::YouDidNotAnswer);
    assert!(!cancel.requeued);
    assert_eq!(h.client_state(b), AtomicClientState::Idle);
}

#[test]
fn pongs_later_than_max_latency_make_a_player_unhealthy() {
    let (mut h, a, b) = pair();
    h.faults(a).pong_delay = Duration::from_millis(600);
    queue_pair(&mut h, a, b);
    let o = wait_outcome(&mut h);
    assert_eq!(o.status, AtomicMatchStatus::Player1Disconnected);
    let AtomicHealthCheck::TooSlow { latency } = o.players[0].health else {
        panic!("expected TooSlow, got {:?}", o.players[0].health)
    };
    assert!(latency > Duration::from_millis(500));
    assert_eq!(o.requeued, vec![b]);
    h.run(2);
    let cancel = h
        .recorded::<AtomicMatchCancelled>(a)
        .last()
        .unwrap()
        .clone();
    assert!(matches!(
        cancel.reason,
        AtomicMatchCancelReason::YourLatencyTooHigh { .. }
    ));
    assert!(!cancel.requeued);
}

#[test]
fn notification_failed_when_a_player_never_acknowledges() {
    let (mut h, a, b) = pair();
    h.faults(b).acknowledge_proposals = false;
    queue_pair(&mut h, a, b);
    h.run_until(50, |h| h.stats().lobbies_open == 1);
    let o = wait_outcome(&mut h);
    assert_eq!(o.status, AtomicMatchStatus::NotificationFailed);
    assert_eq!(o.status.as_str(), "notification_failed");
    assert!(o.players[0].acknowledged && !o.players[1].acknowledged);
    assert_eq!(o.requeued, vec![a]);
    // ~3 attempts of 2 s, 100 ms apart
    assert!(o.elapsed >= Duration::from_millis(6200), "{:?}", o.elapsed);

    h.run(2);
    // b saw three proposals, all for the same lobby, which no longer exists
    let proposed = &h.recorded::<AtomicMatchProposed>(b);
    assert_eq!(
        proposed.iter().map(|p| p.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let lobby_id = proposed[0].lobby_id;
    assert_eq!(o.lobby_id, Some(lobby_id));
    assert!(h.server_state().lobby(lobby_id).is_none());
    assert_eq!(h.stats().lobbies_open, 0);
    assert_eq!(
        h.recorded::<AtomicMatchCancelled>(b).last().unwrap().reason,
        AtomicMatchCancelReason::YouDidNotAcknowledge
    );
    assert_eq!(
        h.recorded::<AtomicMatchCancelled>(a).last().unwrap().reason,
        AtomicMatchCancelReason::OtherPlayerDidNotConfirm
    );
    assert_eq!(h.client_state(a), AtomicClientState::Queued);
    assert_eq!(h.client_state(b), AtomicClientState::Idle);

    // b's acknowledgement arriving after the rollback is stale, not an offence
    let errors_before = h.recorded::<AtomicClientError>(b).len();
    h.send_raw(
        b,
        bevy_atomic_matchmaking::shared::codec::encode(
            &bevy_atomic_matchmaking::atomic::core::protocol::AtomicClientMessage::Acknowledge {
                match_id: proposed[0].match_id,
                lobby_id,
            },
        ),
    );
    h.run(3);
    assert_eq!(h.recorded::<AtomicClientError>(b).len(), errors_before);
}

#[test]
fn disconnecting_in_phase_two_deletes_the_lobby_at_once() {
    let (mut h, a, b) = pair();
    proposed_to_a_silent_b(&mut h, a, b);
    h.disconnect(b);
    let frames = h.run_until(10, |h| {
        !h.server_recorded::<AtomicMatchOutcome>().is_empty()
    });
    assert!(frames < 10);
    let o = only_outcome(&h);
    assert_eq!(o.status, AtomicMatchStatus::NotificationFailed);
    assert_eq!(o.requeued, vec![a]);
    assert_eq!(h.stats().lobbies_open, 0);
}

#[test]
fn withdrawing_during_phase_one_rolls_back_and_keeps_the_other_player() {
    let (mut h, a, b) = pair();
    queue_pair(&mut h, a, b);
    // hold phase 1 open: b's pong is stuck in the network while a withdraws
    h.set_link(b, false);
    h.send(a, AtomicLeaveQueue);
    h.run(3);
    h.set_link(b, true);
    let o = wait_outcome(&mut h);
    assert_eq!(o.status, AtomicMatchStatus::Player1Disconnected);
    assert_eq!(o.players[0].health, AtomicHealthCheck::Withdrew);
    assert_eq!(o.requeued, vec![b]);
    h.run(2);
    assert_eq!(h.client_state(a), AtomicClientState::Idle);
    assert_eq!(
        h.recorded::<AtomicMatchCancelled>(a).last().unwrap().reason,
        AtomicMatchCancelReason::YouWithdrew
    );
}

#[test]
fn withdrawing_during_phase_two_is_a_notification_failure() {
    let (mut h, a, b) = pair();
    proposed_to_a_silent_b(&mut h, a, b);
    h.send(b, AtomicLeaveQueue);
    let o = wait_outcome(&mut h);
    assert_eq!(o.status, AtomicMatchStatus::NotificationFailed);
    assert_eq!(o.players[1].health, AtomicHealthCheck::Withdrew);
    assert_eq!(o.requeued, vec![a]);
    assert_eq!(h.stats().lobbies_open, 0);
}
