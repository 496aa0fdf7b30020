//! Server stalls during the health check: a frame that takes longer than the stall
//! threshold between a ping and its pong (or past the ping timeout) is the server's
//! fault, not the players'. They are pinged again, and healthy players commit.

use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::common::harness;

/// Queues `a` then `b` and runs until the server took both into a match: the pings left
/// in that update.
fn form_pair(h: &mut AtomicTestHarness, a: PlayerId, b: PlayerId) {
    h.join(a, "duel");
    h.run(2);
    h.join(b, "duel");
    h.run_until(20, |h| {
        matches!(
            h.server_state().location(b),
            Some(AtomicPlayerLocation::Matching(_))
        )
    });
}

fn outcome(h: &mut AtomicTestHarness) -> AtomicMatchOutcome {
    h.run_until(1_000, |h| {
        !h.server_recorded::<AtomicMatchOutcome>().is_empty()
    });
    h.server_recorded::<AtomicMatchOutcome>()[0].clone()
}

fn assert_healthy_commit(o: &AtomicMatchOutcome, h: &AtomicTestHarness) {
    assert_eq!(o.status, AtomicMatchStatus::Success, "{o:#?}");
    for p in &o.players {
        // measured on the new ping: one update each way, not the stall
        assert_eq!(
            p.health,
            AtomicHealthCheck::Healthy { latency: h.step },
            "{o:#?}"
        );
    }
}

#[test]
fn a_600_ms_server_frame_between_ping_and_pong_does_not_fail_healthy_players() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    form_pair(&mut h, a, b);
    // the pongs are on their way; the server's next frame starts 600 ms later
    h.stall_server(Duration::from_millis(600));
    let o = outcome(&mut h);
    assert_healthy_commit(&o, &h);
    assert!(h.recorded::<AtomicMatchCancelled>(a).is_empty());
}

#[test]
fn a_stall_longer_than_the_ping_timeout_then_a_resume_still_commits() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    form_pair(&mut h, a, b);
    h.stall_server(Duration::from_millis(2_500));
    let o = outcome(&mut h);
    assert_healthy_commit(&o, &h);
}

#[test]
fn a_stall_does_not_hide_a_slow_player() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    h.faults(a).pong_delay = Duration::from_millis(700);
    form_pair(&mut h, a, b);
    h.stall_server(Duration::from_millis(600));
    let o = outcome(&mut h);
    assert_eq!(o.status, AtomicMatchStatus::Player1Disconnected);
    let AtomicHealthCheck::TooSlow { latency } = o.players[0].health else {
        panic!("{o:#?}")
    };
    assert!(latency >= Duration::from_millis(700), "{latency:?}");
    assert_eq!(o.requeued, vec![b]);
}
