//! The rate limit: a connection that floods the server with valid messages has what is
//! past its burst dropped unread, is struck for it and is disconnected within a second,
//! while everyone else is matched as if nothing happened.

use std::time::Duration;

use bevy_atomic_matchmaking::atomic::core::protocol::{AtomicClientMessage, AtomicServerMessage};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::common::{errors, harness};

/// Joins the "flood" queue (even `i`) or leaves it (odd `i`): valid, in turn.
fn join_or_leave(i: u64) -> AtomicClientMessage {
    if i.is_multiple_of(2) {
        AtomicClientMessage::JoinQueue {
            category: "flood".into(),
        }
    } else {
        AtomicClientMessage::LeaveQueue
    }
}

#[test]
fn a_flood_of_valid_messages_is_cut_off_within_a_second_while_others_are_served() {
    let mut h = harness();
    let limit = h.server_resource::<AtomicServerSettings>().gate.rate_limit;
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let flooder = h.add_raw_client();
    h.send_message(
        flooder,
        &AtomicClientMessage::Hello {
            protocol_version: ATOMIC_PROTOCOL_VERSION,
            config_fingerprint: 0,
        },
    );
    h.join(a, "duel");
    h.join(b, "duel");
    // valid messages, far past the burst
    for i in 0..500 {
        h.send_message(flooder, &join_or_leave(i));
    }
    let flood_started = h.now();
    h.run(2);
    let errors = errors(&h.take_messages(flooder));
    // the burst went through (the hello took one token); the next three were struck
    assert!(limit.burst < 500);
    use AtomicErrorKind::{Abuse, RateLimited};
    assert_eq!(errors, vec![RateLimited, RateLimited, RateLimited, Abuse]);
    h.run_until(100, |h| !h.is_connected(flooder));
    assert!(h.now() - flood_started <= Duration::from_secs(1));
    assert_eq!(h.stats().connections_refused, 1);

    h.run_until(100, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    assert_eq!(h.client_state(a), AtomicClientState::Matched);
    assert_eq!(h.client_state(b), AtomicClientState::Matched);
}

#[test]
fn a_client_that_stays_within_the_limit_is_never_struck() {
    let mut h = harness();
    let p = h.add_raw_client();
    h.send_message(
        p,
        &AtomicClientMessage::Hello {
            protocol_version: ATOMIC_PROTOCOL_VERSION,
            config_fingerprint: 0,
        },
    );
    // 10 messages a second for 5 seconds, well under 30 a second
    for i in 0..50 {
        h.send_message(p, &join_or_leave(i));
        h.run_for(Duration::from_millis(100));
    }
    assert_eq!(errors(&h.take_messages(p)), vec![]);
    assert!(h.is_connected(p));
    assert_eq!(
        h.server_state().strikes(p),
        Some(0),
        "no strike for a well-behaved connection"
    );
}

#[test]
fn a_flooder_that_comes_back_under_its_id_is_refused_until_its_cooldown_ends() {
    let cooldown = Duration::from_secs(5);
    let mut h = AtomicTestHarness::new(AtomicServerSettings {
        gate: MatchmakingGatePolicy {
            abuse_cooldown: cooldown,
            ..Default::default()
        },
        ..AtomicServerSettings::default()
    });
    let hello = AtomicClientMessage::Hello {
        protocol_version: ATOMIC_PROTOCOL_VERSION,
        config_fingerprint: 0,
    };
    let flooder = h.add_raw_client();
    h.send_message(flooder, &hello);
    for i in 0..500 {
        h.send_message(flooder, &join_or_leave(i));
    }
    h.run(2);
    let cut_off = h.now();
    assert_eq!(
        errors(&h.take_messages(flooder)).last(),
        Some(&AtomicErrorKind::Abuse)
    );
    h.run_until(100, |h| !h.is_connected(flooder));
    assert!(!h.is_connected(flooder), "closed");

    // back at once, under the same id: refused at the hello, closed again
    h.reconnect(flooder);
    h.run_until(10, |h| h.is_connected(flooder));
    h.send_message(flooder, &hello);
    h.run(2);
    let messages = h.take_messages(flooder);
    h.run_until(100, |h| !h.is_connected(flooder));
    assert!(!h.is_connected(flooder), "closed");
    assert_eq!(errors(&messages), vec![AtomicErrorKind::Abuse]);
    assert!(
        !messages
            .iter()
            .any(|m| matches!(m, AtomicServerMessage::Welcome { .. })),
        "not welcomed: {messages:?}"
    );
    assert_eq!(h.stats().connections_refused, 2);

    // once the cooldown is over it starts afresh
    let wait = (cut_off + cooldown).saturating_sub(h.now());
    h.run_for(wait + Duration::from_millis(100));
    h.reconnect(flooder);
    h.run_until(10, |h| h.is_connected(flooder));
    h.send_message(flooder, &hello);
    h.run(3);
    let messages = h.take_messages(flooder);
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, AtomicServerMessage::Welcome { .. })),
        "welcomed after the cooldown: {messages:?}"
    );
    assert!(h.is_connected(flooder));
}
