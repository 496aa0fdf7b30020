//! Hostile input: every network byte goes through the size-limited codec; bad messages
//! are answered with errors, repeated ones close the connection, nothing panics.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::fact::*;
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NEGOTIATED_PROTOCOL_VERSION, NegotiatedClientMessage, NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::codec::{self, MAX_MESSAGE_BYTES};
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;
use bevy_renet::RenetServer;

use crate::common::{harness, hello};

/// The kinds of the errors and of the refusals of posts, in order.
fn error_kinds(messages: &[NegotiatedRelayMessage]) -> Vec<NegotiatedErrorKind> {
    messages
        .iter()
        .filter_map(|m| match m {
            NegotiatedRelayMessage::Error { kind, .. }
            | NegotiatedRelayMessage::Refused { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect()
}

#[test]
fn undecodable_bytes_get_errors_and_repeated_ones_a_disconnect() {
    let mut h = harness();
    let raw = h.add_raw_client();
    hello(&mut h, raw);
    h.run(2);
    assert!(matches!(
        h.take_messages(raw)[..],
        [NegotiatedRelayMessage::Welcome { .. }]
    ));

    h.send_raw(raw, vec![0xff, 0xff, 0xff]);
    h.run(2);
    assert_eq!(
        error_kinds(&h.take_messages(raw)),
        vec![NegotiatedErrorKind::Malformed]
    );
    assert_eq!(h.relay_state().strikes(raw), Some(1));
    assert!(h.is_connected(raw));

    // a valid message with trailing garbage, then one above the size limit
    let mut trailing = codec::encode(&NegotiatedClientMessage::Unsubscribe);
    trailing.push(0);
    h.send_raw(raw, trailing);
    h.send_raw(raw, vec![0u8; MAX_MESSAGE_BYTES + 1]);
    h.run(2);
    assert_eq!(
        error_kinds(&h.take_messages(raw)),
        vec![
            NegotiatedErrorKind::Malformed,
            NegotiatedErrorKind::TooLarge,
            NegotiatedErrorKind::Abuse
        ]
    );
    assert_eq!(h.relay_state().connections_refused(), 1);
    // closed once the error had time to arrive
    h.run_for(Duration::from_millis(400));
    assert!(!h.is_connected(raw));
    assert_eq!(h.relay_state().connected(), 0);
}

#[test]
fn hello_comes_first_and_versions_must_match() {
    let mut h = harness();
    let early = h.add_raw_client();
    h.send_message(
        early,
        &NegotiatedClientMessage::TimeRequest { client_sent_us: 1 },
    );
    h.run(2);
    assert_eq!(
        error_kinds(&h.take_messages(early)),
        vec![NegotiatedErrorKind::HelloRequired]
    );
    hello(&mut h, early);
    hello(&mut h, early);
    h.send_message(
        early,
        &NegotiatedClientMessage::TimeRequest { client_sent_us: 1 },
    );
    h.run(2);
    let messages = h.take_messages(early);
    assert!(
        matches!(messages[0], NegotiatedRelayMessage::Welcome { client_id, .. } if client_id == early)
    );
    assert_eq!(
        error_kinds(&messages),
        vec![NegotiatedErrorKind::Unexpected]
    );
    assert!(matches!(
        messages[2],
        NegotiatedRelayMessage::Time {
            client_sent_us: 1,
            ..
        }
    ));

    let old = h.add_raw_client();
    h.send_message(
        old,
        &NegotiatedClientMessage::Hello {
            protocol_version: NEGOTIATED_PROTOCOL_VERSION + 1,
            config_fingerprint: 0,
        },
    );
    h.run(2);
    assert_eq!(
        error_kinds(&h.take_messages(old)),
        vec![NegotiatedErrorKind::VersionMismatch]
    );
    h.run_for(Duration::from_millis(400));
    assert!(!h.is_connected(old));
    assert!(h.is_connected(early));
}

#[test]
fn well_formed_nonsense_is_refused_without_strikes() {
    let mut h = harness();
    let raw = h.add_raw_client();
    hello(&mut h, raw);
    h.run(2);
    h.take_messages(raw);
    let frame = h.relay_state().frames().frame_of(h.relay_now());
    let nonsense = [
        NegotiatedClientMessage::Subscribe {
            category: "has space".into(),
            frames: vec![frame],
        },
        NegotiatedClientMessage::Subscribe {
            category: "duel".into(),
            frames: (0..9).collect(),
        },
        NegotiatedClientMessage::Post {
            fact: NegotiatedFact::Bid(NegotiatedBid {
                request: NegotiatedFactId(7),
                created_us: 0,
                deadline_us: u64::MAX,
            }),
        },
        NegotiatedClientMessage::Post {
            fact: NegotiatedFact::Request(NegotiatedRequest {
                category: "x".repeat(40),
                frame,
                created_us: 0,
            }),
        },
        NegotiatedClientMessage::Post {
            fact: NegotiatedFact::Request(NegotiatedRequest {
                category: "duel".into(),
                frame: frame + 5,
                created_us: 0,
            }),
        },
        NegotiatedClientMessage::Post {
            fact: NegotiatedFact::Request(NegotiatedRequest {
                category: "duel".into(),
                frame: u64::MAX,
                created_us: u64::MAX,
            }),
        },
    ];
    for m in &nonsense {
        h.send_message(raw, m);
    }
    h.run(2);
    assert_eq!(
        error_kinds(&h.take_messages(raw)),
        vec![
            NegotiatedErrorKind::InvalidCategory,
            NegotiatedErrorKind::InvalidSubscription,
            NegotiatedErrorKind::UnknownRequest,
            NegotiatedErrorKind::InvalidCategory,
            NegotiatedErrorKind::FrameOutOfRange,
            NegotiatedErrorKind::FrameOutOfRange,
        ]
    );
    assert_eq!(h.relay_state().strikes(raw), Some(0));
    assert!(h.relay_state().store().is_empty());
    assert!(h.is_connected(raw));
}

#[test]
fn a_client_survives_garbage_from_the_relay() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    let channel = h.channel_id;
    {
        let mut server = h.server.world_mut().resource_mut::<RenetServer>();
        server.send_message(a, channel, vec![0xde, 0xad, 0xbe, 0xef]);
        server.send_message(a, channel, vec![7u8; MAX_MESSAGE_BYTES * 2]);
    }
    h.run(2);
    let kinds: Vec<NegotiatedErrorKind> = h
        .recorded::<NegotiatedClientError>(a)
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            NegotiatedErrorKind::Malformed,
            NegotiatedErrorKind::TooLarge
        ]
    );
    // and still works
    h.search(a, "duel");
    h.run(5);
    h.search(b, "duel");
    h.run_until_matched(&[a, b], 30);
}

#[test]
fn too_many_facts_in_a_frame_are_refused() {
    let mut h = NegotiatedTestHarness::new(
        NegotiatedRelaySettings {
            frame_duration: Duration::from_secs(30),
            limits: NegotiatedRelayLimits {
                max_facts_per_frame: 3,
                ..Default::default()
            },
            ..Default::default()
        },
        NegotiatedClientSettings::default(),
    );
    let raw = h.add_raw_client();
    hello(&mut h, raw);
    let frame = h.relay_state().frames().frame_of(h.relay_now());
    for t in 0..5 {
        h.send_message(
            raw,
            &NegotiatedClientMessage::Post {
                fact: NegotiatedFact::Request(NegotiatedRequest {
                    category: "duel".into(),
                    frame,
                    created_us: t,
                }),
            },
        );
    }
    h.run(2);
    assert_eq!(
        error_kinds(&h.take_messages(raw)),
        vec![
            NegotiatedErrorKind::TooManyFacts,
            NegotiatedErrorKind::TooManyFacts
        ]
    );
    assert_eq!(h.relay_state().store().len(), 3);
}
