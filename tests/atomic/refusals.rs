//! Requests the server refuses: each costs a strike (a flood of them closes the
//! connection, `QueueFull` is free), a refused connection is out of the queue and out of
//! its forming match at once, and a late acknowledgement or pong that crossed a rollback
//! on the wire is ignored while a forged one is refused.

use std::time::Duration;

use bevy_atomic_matchmaking::atomic::core::protocol::{AtomicClientMessage, AtomicServerMessage};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::common::{errors, harness};

/// A raw client that said hello.
fn raw_client(h: &mut AtomicTestHarness) -> PlayerId {
    let p = h.add_raw_client();
    let hello = AtomicClientMessage::Hello {
        protocol_version: ATOMIC_PROTOCOL_VERSION,
        config_fingerprint: 0,
    };
    h.send_message(p, &hello);
    h.run(2);
    assert!(matches!(
        h.take_messages(p)[..],
        [AtomicServerMessage::Welcome { .. }]
    ));
    p
}

fn join(h: &mut AtomicTestHarness, p: PlayerId) {
    let join = AtomicClientMessage::JoinQueue {
        category: "duel".into(),
    };
    h.send_message(p, &join);
}

fn garbage(h: &mut AtomicTestHarness, p: PlayerId, times: usize) {
    for _ in 0..times {
        h.send_raw(p, vec![0xFF; 5]);
    }
}

#[test]
fn refused_requests_strike_until_the_connection_is_closed() {
    let mut h = harness();
    let p = raw_client(&mut h);
    for _ in 0..3 {
        h.send_message(p, &AtomicClientMessage::LeaveQueue);
    }
    h.run(2);
    assert_eq!(
        errors(&h.take_messages(p)),
        vec![
            AtomicErrorKind::NotQueued,
            AtomicErrorKind::NotQueued,
            AtomicErrorKind::NotQueued,
            AtomicErrorKind::Abuse
        ]
    );
    assert_eq!(h.stats().connections_refused, 1);
    h.run_for(Duration::from_millis(400));
    assert!(!h.is_connected(p));
}

#[test]
fn forged_ids_and_u64_max_strike_too() {
    let mut h = harness();
    let p = raw_client(&mut h);
    h.send_message(
        p,
        &AtomicClientMessage::Acknowledge {
            match_id: u64::MAX,
            lobby_id: u64::MAX,
        },
    );
    h.send_message(p, &AtomicClientMessage::Pong { nonce: u64::MAX });
    h.send_message(p, &AtomicClientMessage::LeaveLobby { lobby_id: u64::MAX });
    h.run(2);
    assert_eq!(
        errors(&h.take_messages(p)),
        vec![
            AtomicErrorKind::NotAMember,
            AtomicErrorKind::NotAMember,
            AtomicErrorKind::NotAMember,
            AtomicErrorKind::Abuse
        ]
    );
}

#[test]
fn a_full_queue_costs_no_strike() {
    let mut h = AtomicTestHarness::new(AtomicServerSettings {
        players_per_match: 3,
        queue_capacity: 1,
        ..Default::default()
    });
    let [a] = h.add_clients(1)[..] else {
        unreachable!()
    };
    h.join(a, "duel");
    h.run(2);
    let p = raw_client(&mut h);
    for _ in 0..5 {
        join(&mut h, p);
    }
    h.run(2);
    assert_eq!(
        errors(&h.take_messages(p)),
        vec![AtomicErrorKind::QueueFull; 5]
    );
    assert!(h.is_connected(p));
}

#[test]
fn a_refused_player_loses_its_ticket_at_once() {
    let mut h = harness();
    let [b] = h.add_clients(1)[..] else {
        unreachable!()
    };
    let evil = raw_client(&mut h);
    join(&mut h, evil);
    h.run(2);
    assert_eq!(h.stats().total_queued(), 1);
    garbage(&mut h, evil, 3);
    h.run(1);
    // refused: still connected for the grace period, but no longer queued
    assert!(h.is_connected(evil));
    assert_eq!(h.stats().total_queued(), 0);
    assert_eq!(
        h.server_state().location(evil),
        Some(AtomicPlayerLocation::Idle)
    );
    // so b is not matched with it
    h.join(b, "duel");
    h.run(5);
    assert_eq!(h.stats().matches_formed, 0);
    assert_eq!(h.client_state(b), AtomicClientState::Queued);
}

#[test]
fn a_refused_player_withdraws_from_its_forming_match_at_once() {
    let mut h = harness();
    let [b] = h.add_clients(1)[..] else {
        unreachable!()
    };
    let evil = raw_client(&mut h);
    join(&mut h, evil);
    h.run(2);
    h.join(b, "duel");
    h.run_until(10, |h| h.stats().matches_formed == 1);
    // the raw client never answers the ping; it gets itself refused instead
    garbage(&mut h, evil, 3);
    // the match rolls back now, not after the 2 s ping timeout
    h.run_until(5, |h| !h.server_recorded::<AtomicMatchOutcome>().is_empty());
    let o = h.server_recorded::<AtomicMatchOutcome>()[0].clone();
    assert_eq!(o.players[0].health, AtomicHealthCheck::Withdrew);
    assert_eq!(o.requeued, vec![b]);
    assert_eq!(h.stats().healthy_players_dropped, 0);
}

/// Plays the raw client's side of a match until the proposal: answers the ping, returns
/// (match id, lobby id, nonce).
fn answer_until_proposed(h: &mut AtomicTestHarness, p: PlayerId) -> (u64, u64, u64) {
    let mut nonce = None;
    for _ in 0..20 {
        h.run(1);
        for m in h.take_messages(p) {
            match m {
                AtomicServerMessage::Ping { nonce: n } => {
                    nonce = Some(n);
                    h.send_message(p, &AtomicClientMessage::Pong { nonce: n });
                }
                AtomicServerMessage::MatchProposed {
                    match_id, lobby_id, ..
                } => return (match_id, lobby_id, nonce.unwrap()),
                _ => {}
            }
        }
    }
    panic!("no proposal");
}

#[test]
fn a_late_acknowledgement_crossing_a_rollback_is_ignored_and_a_forged_one_is_not() {
    let mut h = harness();
    let [b, c] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let a = raw_client(&mut h);
    join(&mut h, a);
    h.run(2);
    h.join(b, "duel");
    // M1: a answers the ping, is proposed, but its acknowledgement is slow
    let (m1, l1, old_nonce) = answer_until_proposed(&mut h, a);
    // b drops during phase 2: M1 rolls back and re-queues a, then c comes and M2 forms
    h.disconnect(b);
    h.run(2);
    h.join(c, "duel");
    h.run_until(10, |h| h.stats().matches_formed == 2);
    let seen = h.take_messages(a);
    assert!(seen.iter().any(|m| matches!(
        m,
        AtomicServerMessage::MatchCancelled { requeued: true, .. }
    )));
    assert!(
        seen.iter()
            .any(|m| matches!(m, AtomicServerMessage::MatchChecking { .. }))
    );
    // now a's acknowledgement of M1 (and a duplicate pong) arrive: ignored, no error
    h.send_message(
        a,
        &AtomicClientMessage::Acknowledge {
            match_id: m1,
            lobby_id: l1,
        },
    );
    h.send_message(a, &AtomicClientMessage::Pong { nonce: old_nonce });
    h.run(2);
    assert_eq!(errors(&h.take_messages(a)), vec![]);
    assert_eq!(h.server_state().strikes(a), Some(0));
    // a forged one (M1 in another lobby) is refused
    h.send_message(
        a,
        &AtomicClientMessage::Acknowledge {
            match_id: m1,
            lobby_id: l1 ^ 1,
        },
    );
    h.run(2);
    assert_eq!(
        errors(&h.take_messages(a)),
        vec![AtomicErrorKind::NotAMember]
    );
}

#[test]
fn an_invalid_category_from_a_raw_client_is_refused_with_a_strike() {
    let mut h = harness();
    let p = raw_client(&mut h);
    for bad in ["", "has space", &"x".repeat(33)] {
        let join = AtomicClientMessage::JoinQueue {
            category: bad.into(),
        };
        h.send_message(p, &join);
    }
    h.run(2);
    use AtomicErrorKind::{Abuse, InvalidCategory};
    assert_eq!(
        errors(&h.take_messages(p)),
        vec![InvalidCategory, InvalidCategory, InvalidCategory, Abuse]
    );
    assert_eq!(h.stats().total_queued(), 0);
}
