//! Hostile and wrong input: version mismatch, messages before hello, garbage and
//! oversized bytes, and clients trying to act for another player. The server answers
//! with a clear error, disconnects repeat offenders and keeps serving everyone else.

use bevy_atomic_matchmaking::atomic::core::protocol::{AtomicClientMessage, AtomicServerMessage};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::common::{errors, harness};
use bevy_atomic_matchmaking::shared::codec::MAX_MESSAGE_BYTES;

fn hello(h: &mut AtomicTestHarness, p: PlayerId) {
    h.send_message(
        p,
        &AtomicClientMessage::Hello {
            protocol_version: ATOMIC_PROTOCOL_VERSION,
            config_fingerprint: 0,
        },
    );
    h.run(2);
    assert!(matches!(
        h.take_messages(p)[..],
        [AtomicServerMessage::Welcome { player, .. }] if player == p
    ));
}

#[test]
fn a_version_mismatch_gets_a_clear_error_and_the_connection_is_closed() {
    let mut h = harness();
    let p = h.add_raw_client();
    h.send_message(
        p,
        &AtomicClientMessage::Hello {
            protocol_version: ATOMIC_PROTOCOL_VERSION + 1,
            config_fingerprint: 0,
        },
    );
    h.run(2);
    let received = h.take_messages(p);
    let [AtomicServerMessage::Error { kind, message }] = &received[..] else {
        panic!("expected one error, got {received:?}")
    };
    assert_eq!(*kind, AtomicErrorKind::VersionMismatch);
    assert!(
        message.contains(&format!("{}", ATOMIC_PROTOCOL_VERSION + 1)),
        "{message}"
    );
    h.run_for(std::time::Duration::from_millis(400));
    assert!(!h.is_connected(p), "refused connections are closed");
    assert_eq!(h.stats().connections_refused, 1);
    h.run(2);
    assert_eq!(
        h.server_state().location(p),
        None,
        "the server saw the disconnect and forgot the player"
    );
}

#[test]
fn messages_before_hello_are_refused() {
    let mut h = harness();
    let p = h.add_raw_client();
    h.send_message(
        p,
        &AtomicClientMessage::JoinQueue {
            category: "duel".into(),
        },
    );
    h.run(2);
    assert_eq!(
        errors(&h.take_messages(p)),
        vec![AtomicErrorKind::HelloRequired]
    );
    assert_eq!(h.stats().total_queued(), 0);
}

#[test]
fn garbage_and_oversized_bytes_get_errors_then_a_disconnect_while_others_are_served() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let evil = h.add_raw_client();
    hello(&mut h, evil);

    h.join(a, "duel");
    h.send_raw(evil, vec![0xff; 7]);
    h.run(2);
    assert_eq!(
        errors(&h.take_messages(evil)),
        vec![AtomicErrorKind::Malformed]
    );
    assert!(h.is_connected(evil), "one bad message is not abuse");

    h.send_raw(evil, vec![0u8; MAX_MESSAGE_BYTES + 1]);
    h.run(2);
    assert_eq!(
        errors(&h.take_messages(evil)),
        vec![AtomicErrorKind::TooLarge]
    );

    // a valid message with trailing bytes is malformed too
    let mut trailing =
        bevy_atomic_matchmaking::shared::codec::encode(&AtomicClientMessage::LeaveQueue);
    trailing.push(0);
    h.join(b, "duel");
    h.send_raw(evil, trailing);
    h.run(2);
    assert_eq!(
        errors(&h.take_messages(evil)),
        vec![AtomicErrorKind::Malformed, AtomicErrorKind::Abuse]
    );
    h.run_for(std::time::Duration::from_millis(400));
    assert!(
        !h.is_connected(evil),
        "the third offence closes the connection"
    );

    // meanwhile a and b were matched as if nothing happened
    h.run_until(100, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    assert_eq!(h.client_state(a), AtomicClientState::Matched);
    assert_eq!(h.client_state(b), AtomicClientState::Matched);
}

#[test]
fn nobody_can_acknowledge_or_leave_for_another_player() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let evil = h.add_raw_client();
    hello(&mut h, evil);
    // b never acknowledges: only b could, and the attacker tries to do it for b
    h.faults(b).acknowledge_proposals = false;
    h.join(a, "duel");
    h.run(2);
    h.join(b, "duel");
    h.run_until(50, |h| !h.recorded::<AtomicMatchProposed>(b).is_empty());
    let proposal = h.recorded::<AtomicMatchProposed>(b)[0].clone();

    h.send_message(
        evil,
        &AtomicClientMessage::Acknowledge {
            match_id: proposal.match_id,
            lobby_id: proposal.lobby_id,
        },
    );
    h.send_message(
        evil,
        &AtomicClientMessage::LeaveLobby {
            lobby_id: proposal.lobby_id,
        },
    );
    h.send_message(evil, &AtomicClientMessage::LeaveQueue);
    h.run(2);
    // each refused request is a strike: the third gets the attacker disconnected
    assert_eq!(
        errors(&h.take_messages(evil)),
        vec![
            AtomicErrorKind::NotAMember,
            AtomicErrorKind::NotAMember,
            AtomicErrorKind::NotQueued,
            AtomicErrorKind::Abuse
        ]
    );
    // b's acknowledgement is still missing: the forged one did not count
    h.run_until(1000, |h| {
        !h.server_recorded::<AtomicMatchOutcome>().is_empty()
    });
    let o = &h.server_recorded::<AtomicMatchOutcome>()[0];
    assert_eq!(o.status, AtomicMatchStatus::NotificationFailed);
    assert!(!o.players[1].acknowledged);

    // a real member acknowledging the wrong lobby id is refused as well
    let [c, d] = h.add_clients(2)[..] else {
        unreachable!()
    };
    h.faults(d).acknowledge_proposals = false;
    h.join(c, "other");
    h.run(2);
    h.join(d, "other");
    h.run_until(50, |h| !h.recorded::<AtomicMatchProposed>(d).is_empty());
    let p = h.recorded::<AtomicMatchProposed>(d)[0].clone();
    let wrong_lobby = AtomicClientMessage::Acknowledge {
        match_id: p.match_id,
        lobby_id: p.lobby_id ^ 1,
    };
    // d's plugin is not acknowledging; make d send a forged-looking ack through its channel
    h.send_raw(
        d,
        bevy_atomic_matchmaking::shared::codec::encode(&wrong_lobby),
    );
    h.run(3);
    assert_eq!(
        h.recorded::<AtomicClientError>(d).last().map(|e| e.kind),
        Some(AtomicErrorKind::NotAMember)
    );
}

#[test]
fn pongs_and_acknowledgements_outside_a_match_are_harmless() {
    let mut h = harness();
    let p = h.add_raw_client();
    hello(&mut h, p);
    h.send_message(p, &AtomicClientMessage::Pong { nonce: 42 });
    h.send_message(
        p,
        &AtomicClientMessage::Acknowledge {
            match_id: 1,
            lobby_id: 1,
        },
    );
    h.send_message(
        p,
        &AtomicClientMessage::Hello {
            protocol_version: ATOMIC_PROTOCOL_VERSION,
            config_fingerprint: 0,
        },
    );
    h.run(2);
    // a pong or an acknowledgement for nothing this player was sent is refused (a strike
    // each); a second hello is only answered
    assert_eq!(
        errors(&h.take_messages(p)),
        vec![
            AtomicErrorKind::NotAMember,
            AtomicErrorKind::NotAMember,
            AtomicErrorKind::Unexpected
        ]
    );
    assert!(h.is_connected(p), "two strikes are not yet abuse");
}
