//! Unit and property tests of the commit state machine.

use super::*;
use proptest::prelude::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A machine polled sparsely by these tests: no gap between polls counts as a stall
/// (stalls have their own tests, with [`stalling_machine`]).
fn machine(n: usize) -> AtomicCommitMachine<u32> {
    let timings = AtomicCommitTimings {
        stall_threshold: Duration::MAX,
        ..AtomicCommitTimings::default()
    };
    machine_with(n, timings)
}

/// A machine with the default timings: a poll gap over 200 ms is a stall.
fn stalling_machine(n: usize) -> AtomicCommitMachine<u32> {
    machine_with(n, AtomicCommitTimings::default())
}

fn machine_with(n: usize, timings: AtomicCommitTimings) -> AtomicCommitMachine<u32> {
    let players: Vec<u32> = (1..=n as u32).collect();
    let nonces: Vec<u64> = players.iter().map(|p| *p as u64 * 100).collect();
    AtomicCommitMachine::new(&players, &nonces, timings)
}

/// Polls every 10 ms from `from` (exclusive) to `to` (inclusive), collecting the actions.
fn poll_through(
    m: &mut AtomicCommitMachine<u32>,
    from: u64,
    to: u64,
) -> Vec<AtomicCommitAction<u32>> {
    let mut actions = Vec::new();
    let mut t = from;
    while t < to {
        t = (t + 10).min(to);
        actions.extend(m.poll(MS(t)));
    }
    actions
}

/// Starts the health check at 0 ms; player 1 answers at `at` ms and the machine is polled.
fn first_answers(m: &mut AtomicCommitMachine<u32>, at: u64) {
    m.poll(MS(0));
    m.pong(1, 100, MS(at)).unwrap();
    m.poll(MS(at));
}

fn pinged(actions: &[AtomicCommitAction<u32>], player: u32) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        AtomicCommitAction::Ping { player: p, nonce } if *p == player => Some(*nonce),
        _ => None,
    })
}

/// The round trip runs from when the ping really left (stamped after the transport sent
/// it) to when the pong arrived, not from the poll that asked for it.
#[test]
fn latency_is_measured_from_the_stamped_send() {
    let mut m = stalling_machine(2);
    m.poll(MS(0));
    assert!(m.has_unstamped_pings());
    m.pings_sent(MS(7));
    assert!(!m.has_unstamped_pings());
    m.pong(1, 100, MS(27)).unwrap();
    m.pong(2, 200, MS(12)).unwrap();
    // judged at the next poll
    assert_eq!(m.health(1), Some(AtomicHealthCheck::Pending));
    let a = m.poll(MS(30));
    assert_eq!(a[0], AtomicCommitAction::CreateLobby);
    assert_eq!(
        m.health(1),
        Some(AtomicHealthCheck::Healthy { latency: MS(20) })
    );
    assert_eq!(
        m.health(2),
        Some(AtomicHealthCheck::Healthy { latency: MS(5) })
    );
    assert_eq!(
        m.pong(1, 100, MS(31)),
        Err(AtomicCommitEventError::Unexpected)
    );
}

/// A 600 ms frame between the ping and the pong: the pong waited for the server, not the
/// player. The player is pinged again (fresh nonce) and judged on that answer.
#[test]
fn a_stall_between_ping_and_pong_pings_again() {
    let mut m = stalling_machine(2);
    m.poll(MS(0));
    m.pings_sent(MS(1));
    m.poll(MS(10));
    // the next frame starts 600 ms later; both pongs are read in it
    m.pong(1, 100, MS(610)).unwrap();
    m.pong(2, 200, MS(610)).unwrap();
    let a = m.poll(MS(610));
    let (n1, n2) = (pinged(&a, 1).unwrap(), pinged(&a, 2).unwrap());
    assert!(n1 != 100 && n2 != 200 && n1 != n2, "fresh nonces");
    assert_eq!(m.health(1), Some(AtomicHealthCheck::Pending));
    assert_eq!(m.pings(1), Some(2));
    // the old nonce no longer answers
    assert_eq!(
        m.pong(1, 100, MS(611)),
        Err(AtomicCommitEventError::WrongNonce)
    );
    m.pings_sent(MS(611));
    m.pong(1, n1, MS(620)).unwrap();
    m.pong(2, n2, MS(620)).unwrap();
    let a = m.poll(MS(620));
    assert_eq!(a[0], AtomicCommitAction::CreateLobby);
    assert_eq!(
        m.health(1),
        Some(AtomicHealthCheck::Healthy { latency: MS(9) })
    );
}

/// A stall longer than the ping timeout: the timeout fired while the server slept, so the
/// silent player is pinged again; it is judged NoAnswer only when a timeout passes
/// without a stall.
#[test]
fn a_stall_past_the_ping_timeout_pings_again_before_no_answer() {
    let mut m = stalling_machine(2);
    first_answers(&mut m, 10);
    let a = m.poll(MS(3_000));
    let n2 = pinged(&a, 2).expect("pinged again");
    assert!(finish(&a).is_none());
    m.pong(2, n2, MS(3_020)).unwrap();
    let a = poll_through(&mut m, 3_000, 3_020);
    assert_eq!(a[0], AtomicCommitAction::CreateLobby);
    // a player that really is silent is still judged, one timeout after the stall
    let mut m = stalling_machine(2);
    first_answers(&mut m, 10);
    assert!(pinged(&m.poll(MS(3_000)), 2).is_some());
    let a = poll_through(&mut m, 3_000, 4_990);
    assert!(finish(&a).is_none());
    let a = poll_through(&mut m, 4_990, 5_000);
    let o = finish(&a).unwrap();
    assert_eq!(o.status, AtomicMatchStatus::Player2Disconnected);
    assert_eq!(o.players[1].health, AtomicHealthCheck::NoAnswer);
    assert_eq!(o.requeue(), vec![1]);
}

/// A slow player stays slow across a stall, and a caller that stalls on every frame still
/// gets a verdict after [`ATOMIC_MAX_HEALTH_PINGS`] pings.
#[test]
fn stalls_do_not_hide_a_slow_player_forever() {
    let mut m = stalling_machine(2);
    m.poll(MS(0));
    m.pong(1, 100, MS(5)).unwrap();
    let mut t = 0;
    let mut nonce = 200;
    let outcome = loop {
        t += 700; // every frame is a stall, every pong 700 ms late
        m.pong(2, nonce, MS(t)).unwrap();
        let a = m.poll(MS(t));
        if let Some(o) = finish(&a) {
            break o.clone();
        }
        nonce = pinged(&a, 2).expect("pinged again");
    };
    assert_eq!(m.pings(2), Some(ATOMIC_MAX_HEALTH_PINGS));
    assert_eq!(outcome.status, AtomicMatchStatus::Player2Disconnected);
    assert_eq!(
        outcome.players[1].health,
        AtomicHealthCheck::TooSlow { latency: MS(700) }
    );
    assert!(outcome.players[0].health.is_healthy());
}

/// Called off from outside: every player still in the match (healthy or not judged yet)
/// is re-queued, those who left are not.
#[test]
fn aborted_matches_requeue_everyone_still_in_them() {
    let mut m = machine(3);
    first_answers(&mut m, 5);
    m.withdrew(3).unwrap();
    let o = m.abort().unwrap();
    assert_eq!(o.status, AtomicMatchStatus::Aborted);
    assert_eq!(o.status.as_str(), "aborted");
    assert_eq!(o.requeue(), vec![1, 2]);
    assert!(m.is_finished());
    assert!(m.abort().is_none());
    assert_eq!(m.cancel(), Err(AtomicCommitEventError::Unexpected));
    // cancel: the next poll finishes it (here in phase 2)
    let mut m = machine(2);
    m.poll(MS(0));
    m.pong(1, 100, MS(5)).unwrap();
    m.pong(2, 200, MS(5)).unwrap();
    m.poll(MS(5));
    m.acknowledge(1).unwrap();
    m.cancel().unwrap();
    m.acknowledge(2).unwrap();
    let o = finish(&m.poll(MS(6))).unwrap().clone();
    assert_eq!(o.status, AtomicMatchStatus::Aborted);
    assert_eq!(o.requeue(), vec![1, 2]);
    assert!(m.poll(MS(7)).is_empty());
}

fn finish(actions: &[AtomicCommitAction<u32>]) -> Option<&AtomicCommitOutcome<u32>> {
    actions.iter().find_map(|a| match a {
        AtomicCommitAction::Finish(o) => Some(o),
        _ => None,
    })
}

#[test]
fn success_path() {
    let mut m = machine(2);
    let a = m.poll(MS(0));
    assert_eq!(
        a,
        vec![
            AtomicCommitAction::Ping {
                player: 1,
                nonce: 100
            },
            AtomicCommitAction::Ping {
                player: 2,
                nonce: 200
            }
        ]
    );
    m.pong(1, 100, MS(30)).unwrap();
    assert!(m.poll(MS(30)).is_empty());
    m.pong(2, 200, MS(40)).unwrap();
    let a = m.poll(MS(40));
    assert_eq!(a[0], AtomicCommitAction::CreateLobby);
    assert_eq!(
        a[1],
        AtomicCommitAction::Propose {
            player: 1,
            attempt: 1
        }
    );
    assert_eq!(
        a[2],
        AtomicCommitAction::Propose {
            player: 2,
            attempt: 1
        }
    );
    m.acknowledge(1).unwrap();
    m.acknowledge(2).unwrap();
    let o = finish(&m.poll(MS(60))).unwrap().clone();
    assert_eq!(o.status, AtomicMatchStatus::Success);
    assert!(o.requeue().is_empty());
    assert_eq!(
        o.players[0].health,
        AtomicHealthCheck::Healthy { latency: MS(30) }
    );
}

#[test]
fn seed_statuses_for_health_failures() {
    for (fail, status) in [
        (vec![1], AtomicMatchStatus::Player1Disconnected),
        (vec![2], AtomicMatchStatus::Player2Disconnected),
        (vec![1, 2], AtomicMatchStatus::BothDisconnected),
    ] {
        let mut m = machine(2);
        m.poll(MS(0));
        for p in [1u32, 2] {
            if fail.contains(&p) {
                m.disconnected(p).unwrap();
            } else {
                m.pong(p, p as u64 * 100, MS(10)).unwrap();
            }
        }
        let o = finish(&m.poll(MS(10))).unwrap().clone();
        assert_eq!(o.status, status);
        let healthy: Vec<u32> = [1, 2].into_iter().filter(|p| !fail.contains(p)).collect();
        assert_eq!(o.requeue(), healthy);
    }
}

#[test]
fn slow_pong_and_no_answer_are_unhealthy() {
    let mut m = machine(2);
    m.poll(MS(0));
    m.pong(1, 100, MS(501)).unwrap();
    assert!(m.poll(MS(1999)).is_empty());
    let o = finish(&m.poll(MS(2000))).unwrap().clone();
    assert_eq!(o.status, AtomicMatchStatus::BothDisconnected);
    assert_eq!(
        o.players[0].health,
        AtomicHealthCheck::TooSlow { latency: MS(501) }
    );
    assert_eq!(o.players[1].health, AtomicHealthCheck::NoAnswer);
    assert!(o.requeue().is_empty());
    assert_eq!(
        m.pong(2, 200, MS(2100)),
        Err(AtomicCommitEventError::Unexpected)
    );
}

#[test]
fn wrong_nonce_and_strangers_are_refused() {
    let mut m = machine(2);
    m.poll(MS(0));
    assert_eq!(
        m.pong(2, 100, MS(1)),
        Err(AtomicCommitEventError::WrongNonce)
    );
    assert_eq!(
        m.pong(7, 100, MS(1)),
        Err(AtomicCommitEventError::NotAMember)
    );
    assert_eq!(m.acknowledge(1), Err(AtomicCommitEventError::Unexpected));
    assert_eq!(m.health(2), Some(AtomicHealthCheck::Pending));
}

#[test]
fn notification_retries_then_fails() {
    let mut m = machine(2);
    m.poll(MS(0));
    m.pong(1, 100, MS(10)).unwrap();
    m.pong(2, 200, MS(10)).unwrap();
    m.poll(MS(10)); // attempt 1 at 10 ms
    m.acknowledge(1).unwrap();
    assert!(m.poll(MS(2009)).is_empty());
    assert!(m.poll(MS(2010)).is_empty()); // timed out, backoff until 2110
    assert_eq!(
        m.poll(MS(2110)),
        vec![AtomicCommitAction::Propose {
            player: 2,
            attempt: 2
        }]
    );
    assert_eq!(
        m.poll(MS(4210)),
        vec![AtomicCommitAction::Propose {
            player: 2,
            attempt: 3
        }]
    );
    let o = finish(&m.poll(MS(6210))).unwrap().clone();
    assert_eq!(o.status, AtomicMatchStatus::NotificationFailed);
    assert_eq!(o.requeue(), vec![1]);
    assert!(o.players[0].acknowledged);
    assert!(!o.players[1].acknowledged);
}

#[test]
fn a_stalled_frame_still_gives_each_attempt_its_full_timeout() {
    let mut m = machine(2);
    m.poll(MS(0));
    m.pong(1, 100, MS(0)).unwrap();
    m.pong(2, 200, MS(0)).unwrap();
    m.poll(MS(0));
    m.acknowledge(1).unwrap();
    // the server stalls for a minute: attempt 2 goes out when it wakes up, not never
    assert_eq!(
        m.poll(MS(60_000)),
        vec![AtomicCommitAction::Propose {
            player: 2,
            attempt: 2
        }]
    );
    // and player 2 can still confirm within that attempt's timeout
    m.acknowledge(2).unwrap();
    let o = finish(&m.poll(MS(61_000))).unwrap().clone();
    assert_eq!(o.status, AtomicMatchStatus::Success);
}

#[test]
fn disconnect_in_phase_two_rolls_back_without_waiting() {
    let mut m = machine(3);
    m.poll(MS(0));
    for p in 1..=3u32 {
        m.pong(p, p as u64 * 100, MS(5)).unwrap();
    }
    m.poll(MS(5));
    m.acknowledge(1).unwrap();
    m.disconnected(3).unwrap();
    let o = finish(&m.poll(MS(6))).unwrap().clone();
    assert_eq!(o.status, AtomicMatchStatus::NotificationFailed);
    // player 2 had not acknowledged yet but is healthy: it is re-queued too
    assert_eq!(o.requeue(), vec![1, 2]);
    assert!(m.poll(MS(7)).is_empty());
    assert_eq!(m.disconnected(1), Err(AtomicCommitEventError::Unexpected));
}

#[test]
fn n_player_statuses() {
    assert_eq!(
        AtomicMatchStatus::from_health(&[true, false, true, false]),
        AtomicMatchStatus::PlayersDisconnected {
            indices: vec![1, 3]
        }
    );
    assert_eq!(
        AtomicMatchStatus::from_health(&[false; 3]),
        AtomicMatchStatus::AllDisconnected
    );
    assert_eq!(
        AtomicMatchStatus::from_health(&[true; 5]),
        AtomicMatchStatus::Success
    );
    assert_eq!(
        AtomicMatchStatus::Player2Disconnected.as_str(),
        "player2_disconnected"
    );
}

#[derive(Debug, Clone)]
enum Ev {
    Pong(usize, u64),
    Ack(usize),
    Disconnect(usize),
    Withdraw(usize),
    Advance(u64),
}

fn ev(n: usize) -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0..n, 0u64..900).prop_map(|(p, d)| Ev::Pong(p, d)),
        (0..n).prop_map(Ev::Ack),
        (0..n).prop_map(Ev::Disconnect),
        (0..n).prop_map(Ev::Withdraw),
        (0u64..3000).prop_map(Ev::Advance),
    ]
}

proptest! {
    /// Whatever happens, the machine finishes by the worst-case deadline, commits only
    /// when every player is healthy and acknowledged, never re-queues an unhealthy or
    /// unresponsive player, always re-queues a healthy one on rollback, and creates the
    /// lobby at most once (only after every player passed phase 1).
    #[test]
    fn invariants(n in 2usize..6, events in proptest::collection::vec(ev(5), 0..60)) {
        let players: Vec<u32> = (0..n as u32).collect();
        let nonces: Vec<u64> = (0..n as u64).collect();
        // the events' time jumps are stalls: pongs and timeouts they span are measured again
        let t = AtomicCommitTimings::default();
        let mut m = AtomicCommitMachine::new(&players, &nonces, t);
        let mut now = Duration::ZERO;
        let mut lobbies = 0;
        let mut outcome = None;
        let mut take = |actions: Vec<AtomicCommitAction<u32>>, m: &AtomicCommitMachine<u32>, outcome: &mut Option<AtomicCommitOutcome<u32>>| {
            for a in actions {
                match a {
                    AtomicCommitAction::CreateLobby => {
                        lobbies += 1;
                        assert!(players.iter().all(|p| m.health(*p).unwrap().is_healthy()));
                    }
                    AtomicCommitAction::Finish(o) => {
                        assert!(outcome.is_none(), "finished twice");
                        *outcome = Some(o);
                    }
                    _ => {}
                }
            }
        };
        let a = m.poll(now);
        take(a, &m, &mut outcome);
        for e in events {
            match e {
                Ev::Pong(p, d) if p < n => { let _ = m.pong(p as u32, p as u64, now + Duration::from_millis(d)); }
                Ev::Ack(p) if p < n => { let _ = m.acknowledge(p as u32); }
                Ev::Disconnect(p) if p < n => { let _ = m.disconnected(p as u32); }
                Ev::Withdraw(p) if p < n => { let _ = m.withdrew(p as u32); }
                Ev::Advance(ms) => now += Duration::from_millis(ms),
                _ => {}
            }
            let a = m.poll(now);
            take(a, &m, &mut outcome);
        }
        // Polled every `step`, each attempt can start up to one step late (a proposal is
        // timed from when it is really sent, so one late poll after a stall resends with a
        // full window instead of failing at once), and a ping a stall spanned is sent again
        // once (no stall follows): the bound follows from the timings.
        let step = Duration::from_millis(10);
        let worst = (t.ping_timeout + step) * 2
            + (t.notification_timeout + t.notification_backoff + step) * t.notification_attempts;
        let end = now + worst;
        while outcome.is_none() && now < end {
            now += step;
            let a = m.poll(now);
            take(a, &m, &mut outcome);
        }
        let o = outcome.expect("finished by the worst-case deadline");
        prop_assert!(lobbies <= 1);
        prop_assert_eq!(o.players.len(), n);
        if o.status.is_success() {
            prop_assert_eq!(lobbies, 1);
            prop_assert!(o.players.iter().all(|r| r.health.is_healthy() && r.acknowledged && !r.requeued));
        } else {
            for r in &o.players {
                prop_assert_eq!(r.requeued, r.health.is_healthy() && m.ack_state(r.player) != Some(AtomicAckState::Failed));
            }
            if lobbies == 0 {
                prop_assert_eq!(o.status, AtomicMatchStatus::from_health(&o.players.iter().map(|r| r.health.is_healthy()).collect::<Vec<_>>()));
            } else {
                prop_assert_eq!(o.status, AtomicMatchStatus::NotificationFailed);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Pong(usize, u64),
    Ack(usize),
    Disconnect(usize),
    Withdraw(usize),
    Cancel,
    /// Stamp the pings asked for, this many ms after the poll that asked.
    Stamp(u64),
    /// Advance by this many ms, polling every ms of it when `true`.
    Advance(u64, bool),
}

fn step(n: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..n, 0u64..700).prop_map(|(p, d)| Step::Pong(p, d)),
        8 => (0..n).prop_map(Step::Ack),
        1 => (0..n).prop_map(Step::Disconnect),
        1 => (0..n).prop_map(Step::Withdraw),
        1 => Just(Step::Cancel),
        3 => (0u64..30).prop_map(Step::Stamp),
        8 => (0u64..2500, any::<bool>()).prop_map(|(ms, fine)| Step::Advance(ms, fine)),
    ]
}

proptest! {
    /// A poll before the earliest deadline, with no event since the last one, returns
    /// nothing and changes nothing (the shortcut that makes a frame cheap with thousands
    /// of matches waiting): a machine that takes it and one that does the full work every
    /// poll answer every poll alike and end alike, under any events, stamps and stalls.
    #[test]
    fn the_quiet_shortcut_changes_nothing(
        n in 2usize..5,
        steps in proptest::collection::vec(step(4), 0..80),
    ) {
        let players: Vec<u32> = (0..n as u32).collect();
        let nonces: Vec<u64> = (0..n as u64).collect();
        let mut lazy = AtomicCommitMachine::new(&players, &nonces, AtomicCommitTimings::default());
        let mut eager = lazy.clone();
        eager.eager = true;
        let mut now = Duration::ZERO;
        let mut sent = Vec::new();
        for step in steps {
            let machines = [&mut lazy, &mut eager];
            match step {
                Step::Advance(ms, fine) => {
                    let polls = if fine { ms } else { 1 };
                    for _ in 0..polls {
                        now += MS(ms / polls);
                        let a = lazy.poll(now);
                        let b = eager.poll(now);
                        prop_assert_eq!(&a, &b, "at {:?}", now);
                        sent.extend(a);
                    }
                }
                Step::Stamp(d) => machines.into_iter().for_each(|m| m.pings_sent(now + MS(d))),
                Step::Cancel => {
                    prop_assert_eq!(lazy.cancel(), eager.cancel());
                }
                Step::Pong(p, d) if p < n => {
                    let nonce = sent.iter().rev().find_map(|a| match a {
                        AtomicCommitAction::Ping { player, nonce } if *player == p as u32 => Some(*nonce),
                        _ => None,
                    });
                    let nonce = nonce.unwrap_or(p as u64);
                    let at = now + MS(d);
                    prop_assert_eq!(lazy.pong(p as u32, nonce, at), eager.pong(p as u32, nonce, at));
                }
                Step::Ack(p) if p < n => {
                    prop_assert_eq!(lazy.acknowledge(p as u32), eager.acknowledge(p as u32));
                }
                Step::Disconnect(p) if p < n => {
                    prop_assert_eq!(lazy.disconnected(p as u32), eager.disconnected(p as u32));
                }
                Step::Withdraw(p) if p < n => {
                    prop_assert_eq!(lazy.withdrew(p as u32), eager.withdrew(p as u32));
                }
                _ => {}
            }
            for p in &players {
                prop_assert_eq!(lazy.health(*p), eager.health(*p));
                prop_assert_eq!(lazy.ack_state(*p), eager.ack_state(*p));
                prop_assert_eq!(lazy.pings(*p), eager.pings(*p));
            }
        }
        prop_assert_eq!(lazy.outcome(), eager.outcome());
    }
}

/// Found by the fuzzer (`examples/fuzz`): timeouts are settings without an upper bound,
/// and `Duration::MAX` (never time out) overflowed the deadline arithmetic, panicking in
/// the first poll of the first match. It now means never.
#[test]
fn timeouts_of_duration_max_never_expire() {
    let timings = AtomicCommitTimings {
        ping_timeout: Duration::MAX,
        max_latency: Duration::MAX,
        notification_timeout: Duration::MAX,
        notification_backoff: Duration::MAX,
        // these sparse polls are not stalls
        stall_threshold: Duration::MAX,
        ..AtomicCommitTimings::default()
    };
    let mut m = machine_with(2, timings);
    assert_eq!(m.poll(MS(0)).len(), 2, "both pinged");
    assert!(
        m.poll(Duration::from_secs(3600)).is_empty(),
        "no ping times out"
    );
    m.pong(1, 100, MS(3_600_000)).unwrap();
    m.pong(2, 200, MS(3_600_000)).unwrap();
    let actions = m.poll(Duration::from_secs(3600));
    assert_eq!(actions[0], AtomicCommitAction::CreateLobby);
    assert_eq!(actions.len(), 3, "the lobby and two proposals: {actions:?}");
    let year = Duration::from_secs(365 * 86_400);
    assert!(m.poll(year).is_empty(), "no proposal times out");
    m.acknowledge(1).unwrap();
    m.acknowledge(2).unwrap();
    let finished = m.poll(year);
    assert!(
        matches!(&finished[..], [AtomicCommitAction::Finish(o)] if o.status == AtomicMatchStatus::Success),
        "{finished:?}"
    );
}
