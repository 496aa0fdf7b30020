//! Unit tests of the connection gate.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Sample {
    Hello {
        protocol_version: u32,
        config_fingerprint: u64,
    },
    Ask(String),
}

/// A mode's error enum: the gate's kinds and one of its own.
#[rustfmt::skip]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleError { VersionMismatch, ConfigMismatch, HelloRequired, Malformed, TooLarge, Unexpected, Abuse, RateLimited, #[allow(dead_code)] Other }

gate_protocol!(
    Sample,
    SampleError,
    GateProtocol {
        name: "sample",
        speaker: "host",
        version: 7,
    }
);

#[test]
fn the_macro_finds_the_hello_and_maps_the_kinds() {
    assert_eq!(
        Sample::Hello {
            protocol_version: 3,
            config_fingerprint: 9,
        }
        .hello(),
        Some(GateHello {
            version: 3,
            config_fingerprint: 9
        })
    );
    assert_eq!(Sample::Ask("x".into()).hello(), None);
    assert_eq!(
        SampleError::from(GateErrorKind::HelloRequired),
        SampleError::HelloRequired
    );
    let all = [
        GateErrorKind::VersionMismatch,
        GateErrorKind::ConfigMismatch,
        GateErrorKind::HelloRequired,
        GateErrorKind::Malformed,
        GateErrorKind::TooLarge,
        GateErrorKind::Unexpected,
        GateErrorKind::Abuse,
        GateErrorKind::RateLimited,
    ];
    let mapped: Vec<String> = all
        .iter()
        .map(|k| format!("{:?}", SampleError::from(*k)))
        .collect();
    let names: Vec<String> = all.iter().map(|k| format!("{k:?}")).collect();
    assert_eq!(mapped, names);
}

const MS: fn(u64) -> Duration = Duration::from_millis;
const POLICY: MatchmakingGatePolicy = MatchmakingGatePolicy {
    max_strikes: 3,
    disconnect_grace: Duration::from_millis(250),
    rate_limit: MatchmakingRateLimit {
        messages_per_second: 10,
        burst: 5,
    },
    abuse_cooldown: Duration::ZERO,
};

fn admit(gate: &mut ConnectionGate, client: PlayerId, message: &Sample) -> Admission<Sample> {
    gate.admit(client, &codec::encode(message), POLICY, MS(0))
}

fn kinds(admission: Admission<Sample>) -> Vec<GateErrorKind> {
    match admission {
        Admission::Reply(reply) => reply.errors.iter().map(|e| e.kind).collect(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

const HELLO: Sample = Sample::Hello {
    protocol_version: 7,
    config_fingerprint: 0,
};

#[test]
fn hello_then_delivery() {
    let mut gate = ConnectionGate::default();
    gate.connect(1);
    assert!(!gate.is_welcomed(1));
    assert_eq!(admit(&mut gate, 1, &HELLO), Admission::Welcome);
    assert!(gate.is_welcomed(1));
    let ask = Sample::Ask("x".into());
    assert_eq!(admit(&mut gate, 1, &ask), Admission::Deliver(ask));
    let Admission::Reply(again) = admit(&mut gate, 1, &HELLO) else {
        panic!("a second hello is answered");
    };
    assert_eq!(
        again.errors,
        vec![GateError::new(
            GateErrorKind::Unexpected,
            "hello was already accepted"
        )]
    );
    assert_eq!((again.strike, again.refused), (None, false));
    assert_eq!(gate.strikes(1), Some(0));
}

#[test]
fn a_hello_with_another_config_is_refused_naming_both_fingerprints() {
    let mut gate = ConnectionGate::default();
    gate.expect_config(Some(0xabc));
    gate.connect(1);
    gate.connect(2);
    gate.connect(3);
    let hello = |config_fingerprint| Sample::Hello {
        protocol_version: 7,
        config_fingerprint,
    };
    let Admission::Reply(reply) = admit(&mut gate, 1, &hello(0xdef)) else {
        panic!("another config is answered");
    };
    assert_eq!(reply.errors[0].kind, GateErrorKind::ConfigMismatch);
    let text = &reply.errors[0].message;
    assert!(
        text.contains("0000000000000def") && text.contains("0000000000000abc"),
        "{text}"
    );
    assert!(text.contains("host"), "{text}");
    assert!(reply.refused);
    assert_eq!(admit(&mut gate, 2, &hello(0xabc)), Admission::Welcome);
    // a client that does not know its config is let in
    assert_eq!(admit(&mut gate, 3, &hello(0)), Admission::Welcome);
}

#[test]
fn an_older_hello_that_does_not_decode_is_still_a_version_mismatch() {
    /// A hello of an older protocol: the version only.
    #[derive(Serialize)]
    enum Older {
        Hello { protocol_version: u32 },
    }
    let mut gate = ConnectionGate::default();
    gate.connect(1);
    let bytes = codec::encode(&Older::Hello {
        protocol_version: 6,
    });
    let Admission::Reply(reply) = gate.admit::<Sample>(1, &bytes, POLICY, MS(0)) else {
        panic!("an older hello is answered");
    };
    assert_eq!(reply.errors[0].kind, GateErrorKind::VersionMismatch);
    assert!(reply.errors[0].message.contains("protocol 6"), "{reply:?}");
    assert!(reply.refused);
    assert_eq!(reply.strike, None, "a version mismatch is no strike");
}

#[test]
fn unknown_connections_are_not_read() {
    let mut gate = ConnectionGate::default();
    assert_eq!(admit(&mut gate, 9, &HELLO), Admission::Unknown);
    gate.connect(9);
    assert!(gate.disconnect(9));
    assert!(!gate.disconnect(9));
    assert_eq!(admit(&mut gate, 9, &HELLO), Admission::Unknown);
    assert_eq!(gate.strikes(9), None);
    assert_eq!(gate.connected(), 0);
}

#[test]
fn version_mismatch_refuses_with_a_clear_text() {
    let mut gate = ConnectionGate::default();
    gate.connect(2);
    let Admission::Reply(reply) = admit(
        &mut gate,
        2,
        &Sample::Hello {
            protocol_version: 8,
            config_fingerprint: 0,
        },
    ) else {
        panic!("a wrong version is answered");
    };
    assert_eq!(reply.errors[0].kind, GateErrorKind::VersionMismatch);
    assert_eq!(
        reply.errors[0].message,
        "client speaks sample protocol 8, host speaks 7; update the game"
    );
    assert!(reply.refused);
    assert_eq!(reply.strike, None);
    assert!(reply.warning().is_none());
    assert!(gate.is_refused(2));
    // a refused connection is not served, not even a correct hello
    assert_eq!(admit(&mut gate, 2, &HELLO), Admission::Ignore);
    assert!(gate.take_due(MS(249)).is_empty());
    assert_eq!(gate.take_due(MS(250)), vec![2]);
    assert!(gate.take_due(MS(900)).is_empty());
}

#[test]
fn bad_messages_strike_until_refused() {
    let mut gate = ConnectionGate::default();
    gate.connect(3);
    assert_eq!(
        kinds(admit(&mut gate, 3, &Sample::Ask("early".into()))),
        vec![GateErrorKind::HelloRequired]
    );
    let huge = vec![0u8; codec::MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        kinds(gate.admit::<Sample>(3, &huge, POLICY, MS(1))),
        vec![GateErrorKind::TooLarge]
    );
    assert_eq!(gate.strikes(3), Some(2));
    let Admission::Reply(last) = gate.admit::<Sample>(3, &[0xFF; 3], POLICY, MS(2)) else {
        panic!("garbage is answered");
    };
    assert_eq!(
        last.errors.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![GateErrorKind::Malformed, GateErrorKind::Abuse]
    );
    assert_eq!(last.errors[1].message, "3 bad messages: disconnecting");
    assert_eq!(last.strike, Some(StrikeVerdict::Refused(3)));
    assert!(last.refused);
    assert!(
        last.warning()
            .unwrap()
            .starts_with("bad message (Refused(3)): ")
    );
    assert_eq!(
        gate.admit::<Sample>(3, &[0xFF], POLICY, MS(3)),
        Admission::Ignore
    );
    assert_eq!(gate.take_due(MS(252)), vec![3]);
    // a reconnection under the same id starts over
    assert!(gate.disconnect(3));
    gate.connect(3);
    assert_eq!(gate.strikes(3), Some(0));
    assert_eq!(admit(&mut gate, 3, &HELLO), Admission::Welcome);
}

#[test]
fn a_player_refused_for_abuse_is_refused_again_until_its_cooldown_ends() {
    let policy = MatchmakingGatePolicy {
        abuse_cooldown: Duration::from_secs(60),
        ..POLICY
    };
    let mut gate = ConnectionGate::default();
    gate.connect(3);
    for ms in 0..2 {
        gate.admit::<Sample>(3, &[0xFF; 3], policy, MS(ms));
    }
    let Admission::Reply(last) = gate.admit::<Sample>(3, &[0xFF; 3], policy, MS(2)) else {
        panic!("garbage is answered");
    };
    assert!(last.refused);
    assert_eq!(
        last.errors[1].message,
        "3 bad messages: disconnecting; this player is refused for 60 s"
    );
    assert!(gate.disconnect(3));
    // back under the same id: refused at its first message, without a strike
    gate.connect(3);
    let hello = codec::encode(&HELLO);
    let Admission::Reply(again) = gate.admit::<Sample>(3, &hello, policy, MS(1_000)) else {
        panic!("a cooling player is answered");
    };
    assert_eq!(again.errors[0].kind, GateErrorKind::Abuse);
    assert_eq!(
        again.errors[0].message,
        "this player was refused for abuse; try again in 60 s"
    );
    assert!(again.refused && again.strike.is_none());
    assert_eq!(
        gate.admit::<Sample>(3, &hello, policy, MS(1_001)),
        Admission::Ignore
    );
    assert_eq!(gate.take_due(MS(1_250)), vec![3]);
    // other players are not touched
    gate.connect(4);
    assert_eq!(admit(&mut gate, 4, &HELLO), Admission::Welcome);
    // after the cooldown it starts over
    assert!(gate.disconnect(3));
    gate.connect(3);
    assert_eq!(
        gate.admit::<Sample>(3, &hello, policy, MS(60_002)),
        Admission::Welcome
    );
    assert_eq!(gate.cooling(), 1, "forgotten at the next refusal");
}

#[test]
fn trailing_bytes_are_malformed() {
    let mut gate = ConnectionGate::default();
    gate.connect(4);
    let mut bytes = codec::encode(&HELLO);
    bytes.push(0);
    let Admission::Reply(reply) = gate.admit::<Sample>(4, &bytes, POLICY, MS(0)) else {
        panic!("trailing bytes are answered");
    };
    assert_eq!(reply.errors[0].kind, GateErrorKind::Malformed);
    assert_eq!(reply.strike, Some(StrikeVerdict::Warned(1)));
    assert!(!reply.refused);
    assert!(!gate.is_welcomed(4));
}

/// A refused request (decoded, but the handler said no) strikes like garbage does.
#[test]
fn refused_requests_strike_until_refused() {
    let mut gate = ConnectionGate::default();
    gate.connect(5);
    assert_eq!(admit(&mut gate, 5, &HELLO), Admission::Welcome);
    let first = gate.strike_refused(5, POLICY, MS(0));
    assert_eq!(first.strike, Some(StrikeVerdict::Warned(1)));
    assert!(first.errors.is_empty() && !first.refused);
    // mixed with a bad message: one count
    let _ = gate.admit::<Sample>(5, &[0xFF; 2], POLICY, MS(1));
    let last = gate.strike_refused(5, POLICY, MS(2));
    assert_eq!(last.strike, Some(StrikeVerdict::Refused(3)));
    assert!(last.refused);
    assert_eq!(
        last.errors,
        vec![GateError::new(
            GateErrorKind::Abuse,
            "3 bad messages: disconnecting"
        )]
    );
    // a refused or closed connection is not counted again
    assert_eq!(gate.strike_refused(5, POLICY, MS(3)).strike, None);
    assert_eq!(gate.strike_refused(6, POLICY, MS(3)).strike, None);
    assert_eq!(gate.take_due(MS(252)), vec![5]);
}

/// A fake transport: queued bytes per client and a log of what the service did.
#[derive(Default)]
struct Fake {
    gate: ConnectionGate,
    inbox: Vec<(PlayerId, VecDeque<Vec<u8>>)>,
    log: Vec<String>,
    again: Vec<PlayerId>,
    /// What to read next (`None`: every client, no report).
    to_read: Option<ConnectionsToRead>,
    unreported: Vec<PlayerId>,
}

impl GatedService for Fake {
    type Message = Sample;
    type Transport = Self;

    fn gate(&mut self) -> (&mut ConnectionGate, MatchmakingGatePolicy) {
        (&mut self.gate, POLICY)
    }

    fn transport(&mut self) -> &mut Self {
        self
    }

    fn welcome(&mut self, client: PlayerId) {
        self.log.push(format!("{client} welcome"));
    }

    fn reply(&mut self, client: PlayerId, reply: GateReply) {
        let kinds: Vec<_> = reply.errors.iter().map(|e| e.kind).collect();
        self.log
            .push(format!("{client} {kinds:?} refused={}", reply.refused));
    }

    fn deliver(&mut self, client: PlayerId, message: Sample, _now: Duration) {
        self.log.push(format!("{client} {message:?}"));
    }
}

impl GateTransport for Fake {
    fn clients(&self) -> Vec<PlayerId> {
        self.inbox.iter().map(|(c, _)| *c).collect()
    }

    fn to_read(&mut self, _now: Duration) -> ConnectionsToRead {
        self.to_read
            .take()
            .unwrap_or(ConnectionsToRead::Every { reported: None })
    }

    fn unreported(&mut self, client: PlayerId) {
        self.unreported.push(client);
    }

    fn read_again(&mut self, client: PlayerId) {
        self.again.push(client);
    }

    fn next_message(&mut self, client: PlayerId) -> Option<Vec<u8>> {
        let (_, queue) = self.inbox.iter_mut().find(|(c, _)| *c == client)?;
        queue.pop_front()
    }
}

#[test]
fn the_loop_reads_each_client_in_order() {
    let mut fake = Fake::default();
    fake.gate.connect(1);
    fake.gate.connect(2);
    let bytes = |m: &Sample| codec::encode(m);
    let wrong = Sample::Hello {
        protocol_version: 1,
        config_fingerprint: 0,
    };
    fake.inbox = vec![
        (
            1,
            VecDeque::from([bytes(&HELLO), bytes(&Sample::Ask("a".into()))]),
        ),
        (2, VecDeque::from([bytes(&wrong), bytes(&HELLO)])),
        // unknown (its connect event comes later): its messages are left for later
        (3, VecDeque::from([bytes(&HELLO), bytes(&HELLO)])),
    ];
    fake.receive_all(MS(0));
    assert_eq!(
        fake.log,
        vec![
            "1 welcome",
            "1 Ask(\"a\")",
            "2 [VersionMismatch] refused=true",
        ]
    );
    assert_eq!(fake.inbox[1].1.len(), 0, "a refused connection is drained");
    assert_eq!(
        fake.inbox[2].1.len(),
        2,
        "an unknown connection is not read"
    );
    assert_eq!(fake.again, vec![3], "and is read again next time");
}

#[test]
fn with_a_report_only_the_reported_clients_are_read() {
    let mut fake = Fake::default();
    for client in 1..=3 {
        fake.gate.connect(client);
        fake.inbox
            .push((client, VecDeque::from([codec::encode(&HELLO)])));
    }
    fake.to_read = Some(ConnectionsToRead::Reported(vec![2, 3]));
    fake.receive_all(MS(0));
    assert_eq!(fake.log, vec!["2 welcome", "3 welcome"]);
    assert_eq!(
        fake.inbox[0].1.len(),
        1,
        "client 1 was not reported: not read"
    );
    assert!(fake.unreported.is_empty());
    // a sweep reads it, and says it came unannounced
    fake.to_read = Some(ConnectionsToRead::Every {
        reported: Some(vec![]),
    });
    fake.receive_all(MS(1));
    assert_eq!(fake.log, vec!["2 welcome", "3 welcome", "1 welcome"]);
    assert_eq!(fake.unreported, vec![1]);
}

/// Sends `n` asks from a welcomed connection at `now`; returns how many were delivered and
/// the replies of the rest.
fn asks(gate: &mut ConnectionGate, n: usize, now: Duration) -> (usize, Vec<GateReply>) {
    let ask = codec::encode(&Sample::Ask("x".into()));
    let (mut delivered, mut replies) = (0, Vec::new());
    for _ in 0..n {
        match gate.admit::<Sample>(1, &ask, POLICY, now) {
            Admission::Deliver(_) => delivered += 1,
            Admission::Reply(reply) => replies.push(reply),
            Admission::Ignore => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    (delivered, replies)
}

#[test]
fn a_connection_within_its_rate_limit_is_never_struck() {
    let mut gate = ConnectionGate::default();
    gate.connect(1);
    assert_eq!(admit(&mut gate, 1, &HELLO), Admission::Welcome);
    // the hello took one of the 5 tokens; 10 a second refill them
    assert_eq!(asks(&mut gate, 4, MS(0)).0, 4);
    for second in 1..=60 {
        // 10 messages a second, spread over the second, for a minute
        for tenth in 0..10 {
            let now = MS(second * 1_000 + tenth * 100);
            assert_eq!(asks(&mut gate, 1, now), (1, Vec::new()));
        }
    }
    assert_eq!(gate.strikes(1), Some(0));
}

#[test]
fn a_flood_is_dropped_unread_and_refused_within_the_strike_limit() {
    let mut gate = ConnectionGate::default();
    gate.connect(1);
    assert_eq!(admit(&mut gate, 1, &HELLO), Admission::Welcome);
    let (delivered, replies) = asks(&mut gate, 1_000, MS(10));
    // the burst goes through, the next three messages are struck, the third refuses
    assert_eq!(delivered, 4);
    assert_eq!(replies.len(), 3);
    let kinds: Vec<Vec<GateErrorKind>> = replies
        .iter()
        .map(|r| r.errors.iter().map(|e| e.kind).collect())
        .collect();
    assert_eq!(
        kinds,
        vec![
            vec![GateErrorKind::RateLimited],
            vec![GateErrorKind::RateLimited],
            vec![GateErrorKind::RateLimited, GateErrorKind::Abuse],
        ]
    );
    assert!(replies[2].refused);
    assert!(
        replies[0].errors[0]
            .message
            .contains("10 messages a second")
    );
    assert!(gate.is_refused(1));
    // the rest was ignored and the connection closes after the grace period
    assert_eq!(gate.take_due(MS(260)), vec![1]);
}

#[test]
fn the_bucket_refills_at_the_rate_and_never_past_the_burst() {
    let mut bucket = RateBucket::default();
    let limit = POLICY.rate_limit;
    let taken =
        |bucket: &mut RateBucket, now| (0..100).take_while(|_| bucket.take(limit, now)).count();
    assert_eq!(taken(&mut bucket, MS(0)), 5);
    // 10 a second: 300 ms give 3 tokens
    assert_eq!(taken(&mut bucket, MS(300)), 3);
    // an hour of quiet fills it to the burst only
    assert_eq!(taken(&mut bucket, MS(3_600_000)), 5);
    // time going backwards refills nothing
    assert_eq!(taken(&mut bucket, MS(1_000)), 0);
    // extreme times do not overflow
    assert_eq!(taken(&mut bucket, Duration::MAX), 5);
}
