//! Unit and property tests of the commit state machine.

use super::*;
use proptest::prelude::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn machine(n: usize) -> CommitMachine<u32> {
    let players: Vec<u32> = (1..=n as u32).collect();
    let nonces: Vec<u64> = players.iter().map(|p| *p as u64 * 100).collect();
    CommitMachine::new(&players, &nonces, CommitTimings::default())
}

fn finish(actions: &[CommitAction<u32>]) -> Option<&CommitOutcome<u32>> {
    actions.iter().find_map(|a| match a {
        CommitAction::Finish(o) => Some(o),
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
            CommitAction::Ping {
                player: 1,
                nonce: 100
            },
            CommitAction::Ping {
                player: 2,
                nonce: 200
            }
        ]
    );
    m.pong(1, 100, MS(30)).unwrap();
    assert!(m.poll(MS(30)).is_empty());
    m.pong(2, 200, MS(40)).unwrap();
    let a = m.poll(MS(40));
    assert_eq!(a[0], CommitAction::CreateLobby);
    assert_eq!(
        a[1],
        CommitAction::Propose {
            player: 1,
            attempt: 1
        }
    );
    assert_eq!(
        a[2],
        CommitAction::Propose {
            player: 2,
            attempt: 1
        }
    );
    m.acknowledge(1).unwrap();
    m.acknowledge(2).unwrap();
    let o = finish(&m.poll(MS(60))).unwrap().clone();
    assert_eq!(o.status, MatchStatus::Success);
    assert!(o.requeue().is_empty());
    assert_eq!(
        o.players[0].health,
        HealthCheck::Healthy { latency: MS(30) }
    );
}

#[test]
fn seed_statuses_for_health_failures() {
    for (fail, status) in [
        (vec![1], MatchStatus::Player1Disconnected),
        (vec![2], MatchStatus::Player2Disconnected),
        (vec![1, 2], MatchStatus::BothDisconnected),
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
    assert_eq!(o.status, MatchStatus::BothDisconnected);
    assert_eq!(
        o.players[0].health,
        HealthCheck::TooSlow { latency: MS(501) }
    );
    assert_eq!(o.players[1].health, HealthCheck::NoAnswer);
    assert!(o.requeue().is_empty());
    assert_eq!(m.pong(2, 200, MS(2100)), Err(CommitEventError::Unexpected));
}

#[test]
fn wrong_nonce_and_strangers_are_refused() {
    let mut m = machine(2);
    m.poll(MS(0));
    assert_eq!(m.pong(2, 100, MS(1)), Err(CommitEventError::WrongNonce));
    assert_eq!(m.pong(7, 100, MS(1)), Err(CommitEventError::NotAMember));
    assert_eq!(m.acknowledge(1), Err(CommitEventError::Unexpected));
    assert_eq!(m.health(2), Some(HealthCheck::Pending));
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
        vec![CommitAction::Propose {
            player: 2,
            attempt: 2
        }]
    );
    assert_eq!(
        m.poll(MS(4210)),
        vec![CommitAction::Propose {
            player: 2,
            attempt: 3
        }]
    );
    let o = finish(&m.poll(MS(6210))).unwrap().clone();
    assert_eq!(o.status, MatchStatus::NotificationFailed);
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
        vec![CommitAction::Propose {
            player: 2,
            attempt: 2
        }]
    );
    // and player 2 can still confirm within that attempt's timeout
    m.acknowledge(2).unwrap();
    let o = finish(&m.poll(MS(61_000))).unwrap().clone();
    assert_eq!(o.status, MatchStatus::Success);
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
    assert_eq!(o.status, MatchStatus::NotificationFailed);
    // player 2 had not acknowledged yet but is healthy: it is re-queued too
    assert_eq!(o.requeue(), vec![1, 2]);
    assert!(m.poll(MS(7)).is_empty());
    assert_eq!(m.disconnected(1), Err(CommitEventError::Unexpected));
}

#[test]
fn n_player_statuses() {
    assert_eq!(
        MatchStatus::from_health(&[true, false, true, false]),
        MatchStatus::PlayersDisconnected {
            indices: vec![1, 3]
        }
    );
    assert_eq!(
        MatchStatus::from_health(&[false; 3]),
        MatchStatus::AllDisconnected
    );
    assert_eq!(MatchStatus::from_health(&[true; 5]), MatchStatus::Success);
    assert_eq!(
        MatchStatus::Player2Disconnected.as_str(),
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
        let t = CommitTimings::default();
        let mut m = CommitMachine::new(&players, &nonces, t);
        let mut now = Duration::ZERO;
        let mut lobbies = 0;
        let mut outcome = None;
        let mut take = |actions: Vec<CommitAction<u32>>, m: &CommitMachine<u32>, outcome: &mut Option<CommitOutcome<u32>>| {
            for a in actions {
                match a {
                    CommitAction::CreateLobby => {
                        lobbies += 1;
                        assert!(players.iter().all(|p| m.health(*p).unwrap().is_healthy()));
                    }
                    CommitAction::Finish(o) => {
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
        // full window instead of failing at once): the bound follows from the timings.
        let step = Duration::from_millis(10);
        let worst = t.ping_timeout
            + step
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
                prop_assert_eq!(r.requeued, r.health.is_healthy() && m.ack_state(r.player) != Some(AckState::Failed));
            }
            if lobbies == 0 {
                prop_assert_eq!(o.status, MatchStatus::from_health(&o.players.iter().map(|r| r.health.is_healthy()).collect::<Vec<_>>()));
            } else {
                prop_assert_eq!(o.status, MatchStatus::NotificationFailed);
            }
        }
    }
}
