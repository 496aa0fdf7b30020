//! The rate limit: a connection that floods the relay with valid messages has what is
//! past its burst dropped unread, is struck for it and is disconnected within a second,
//! while everyone else pairs as if nothing happened.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NegotiatedClientMessage, NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::prelude::*;

use crate::common::{harness, hello};

#[test]
fn a_flood_of_time_requests_is_cut_off_within_a_second_while_others_pair() {
    let mut h = harness();
    let limit = h
        .server_resource::<NegotiatedRelaySettings>()
        .gate
        .rate_limit;
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let flooder = h.add_raw_client();
    hello(&mut h, flooder);
    h.search(a, "duel");
    h.search(b, "duel");
    for sent in 0..500 {
        h.send_message(
            flooder,
            &NegotiatedClientMessage::TimeRequest {
                client_sent_us: sent,
            },
        );
    }
    let flood_started = h.now();
    h.run(2);
    let received = h.take_messages(flooder);
    let answered = received
        .iter()
        .filter(|m| matches!(m, NegotiatedRelayMessage::Time { .. }))
        .count();
    let errors: Vec<NegotiatedErrorKind> = received
        .iter()
        .filter_map(|m| match m {
            NegotiatedRelayMessage::Error { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    // the burst was answered (the hello took one token); the next three were struck
    assert_eq!(answered, limit.burst as usize - 1);
    use NegotiatedErrorKind::{Abuse, RateLimited};
    assert_eq!(errors, vec![RateLimited, RateLimited, RateLimited, Abuse]);
    h.run_until(100, |h| !h.is_connected(flooder));
    assert!(h.now() - flood_started <= Duration::from_secs(1));

    h.run_until_matched(&[a, b], 200);
    assert_eq!(h.found(a).unwrap().other, b);
}

#[test]
fn a_flooder_that_comes_back_under_its_id_is_refused_by_the_relay_until_its_cooldown_ends() {
    let mut h = harness();
    let cooldown = h
        .server_resource::<NegotiatedRelaySettings>()
        .gate
        .abuse_cooldown;
    assert_eq!(cooldown, Duration::from_secs(60), "the default");
    let flooder = h.add_raw_client();
    hello(&mut h, flooder);
    for sent in 0..500 {
        let request = NegotiatedClientMessage::TimeRequest {
            client_sent_us: sent,
        };
        h.send_message(flooder, &request);
    }
    h.run_until(100, |h| !h.is_connected(flooder));
    assert!(!h.is_connected(flooder));
    h.take_messages(flooder);

    h.reconnect(flooder);
    h.run_until(10, |h| h.is_connected(flooder));
    hello(&mut h, flooder);
    h.run(2);
    let received = h.take_messages(flooder);
    assert!(
        matches!(
            &received[..],
            [NegotiatedRelayMessage::Error {
                kind: NegotiatedErrorKind::Abuse,
                ..
            }]
        ),
        "refused at the hello, not welcomed: {received:?}"
    );
    h.run_until(100, |h| !h.is_connected(flooder));
    assert!(!h.is_connected(flooder));
}
