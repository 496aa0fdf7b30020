//! The connection gate both the atomic server and the negotiated relay put in front of
//! their message handlers.
//!
//! Every byte buffer a connection sends passes [`ConnectionGate::admit`] before a handler
//! sees it. The gate knows which connections are open and which of them said hello, so it
//! answers what is the same in both modes:
//!
//! - bytes that do not decode with the size-limited [`codec`] earn a strike
//!   ([`GateErrorKind::TooLarge`] or [`GateErrorKind::Malformed`]);
//! - anything but a hello before the hello earns a strike ([`GateErrorKind::HelloRequired`]);
//! - a hello with another protocol version is answered with
//!   [`GateErrorKind::VersionMismatch`] and the connection is refused;
//! - a second hello is answered with [`GateErrorKind::Unexpected`];
//! - a decoded message the mode's handler refuses (it names no thing of this connection,
//!   or does not fit its state) earns a strike too: the handler reports it with
//!   [`ConnectionGate::strike_refused`] after answering with its own error;
//! - the strike that reaches the limit adds [`GateErrorKind::Abuse`] and refuses the
//!   connection; a refused connection is not served any more and is closed after a grace
//!   period ([`ConnectionGate::take_due`]) so that the errors reach it.
//!
//! Each mode sends its own welcome and maps [`GateErrorKind`] to its own error enum.
//! [`GatedService`] is the receive loop both modes run over the gate. Plain Rust: the
//! gate knows nothing of the network library or the engine.

use std::collections::HashMap;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::codec::{self, CodecError};
use super::guard::{StrikeGuard, StrikeVerdict};
use super::player::PlayerId;

/// How a protocol names itself in the gate's error texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateProtocol {
    /// The protocol's name, as in "client speaks *matchmaking* protocol 2".
    pub name: &'static str,
    /// What the side behind the gate calls itself, as in "*server* speaks 1".
    pub speaker: &'static str,
    /// The protocol version the side behind the gate speaks.
    pub version: u32,
}

/// A client-to-server message enum the gate can admit: it decodes with the codec and
/// says which of its variants is the hello.
pub trait GateMessage: DeserializeOwned {
    /// The protocol these messages belong to.
    const PROTOCOL: GateProtocol;

    /// The protocol version the message announces if it is the hello, `None` otherwise.
    fn hello_version(&self) -> Option<u32>;
}

/// The limits the gate enforces, read from the mode's settings at every call (settings
/// may change at run time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatePolicy {
    /// Bad messages a connection may send; the one that reaches this number refuses it.
    pub max_strikes: u32,
    /// How long a refused connection stays open so that the error reaches it.
    pub disconnect_grace: Duration,
}

/// The errors the gate reports; each mode maps them to its own error kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateErrorKind {
    /// The hello announced another protocol version; the connection is refused.
    VersionMismatch,
    /// A message other than the hello came before the hello (a strike).
    HelloRequired,
    /// Bytes that do not decode, or a message with trailing bytes (a strike).
    Malformed,
    /// A message above the codec's size limit (a strike).
    TooLarge,
    /// A second hello.
    Unexpected,
    /// The strike that reached the limit: the connection is refused.
    Abuse,
}

/// One error to send back, with its text for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateError {
    /// What went wrong.
    pub kind: GateErrorKind,
    /// Why, for humans.
    pub message: String,
}

impl GateError {
    fn new(kind: GateErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The gate's answer to a message it did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateReply {
    /// Errors to send to the connection, in this order.
    pub errors: Vec<GateError>,
    /// The strike the message earned, if it earned one.
    pub strike: Option<StrikeVerdict>,
    /// Whether this message got the connection refused: the mode does its bookkeeping
    /// (it is closed by [`ConnectionGate::take_due`] after the grace period).
    pub refused: bool,
}

impl GateReply {
    fn error(error: GateError) -> Self {
        Self {
            errors: vec![error],
            strike: None,
            refused: false,
        }
    }

    /// A line for the log when the message earned a strike.
    pub fn warning(&self) -> Option<String> {
        let verdict = self.strike?;
        let why = self.errors.first().map_or("", |e| e.message.as_str());
        Some(format!("bad message ({verdict:?}): {why}"))
    }
}

/// What to do with one message from one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission<M> {
    /// A valid message from a welcomed connection: hand it to the mode's handler.
    Deliver(M),
    /// The hello was just accepted: send the mode's welcome.
    Welcome,
    /// Send these errors back (and count a refusal if it says so).
    Reply(GateReply),
    /// The connection is refused: the message is dropped unread.
    Ignore,
    /// The gate does not know this connection: stop reading it.
    Unknown,
}

/// Per-connection hello flags, strikes and refusals of one server or relay.
#[derive(Debug, Clone, Default)]
pub struct ConnectionGate {
    /// Open connections and whether their hello was accepted.
    welcomed: HashMap<PlayerId, bool>,
    guard: StrikeGuard,
}

impl ConnectionGate {
    /// A connection opened (a reconnection under the same id starts over, without hello).
    pub fn connect(&mut self, client: PlayerId) {
        self.welcomed.insert(client, false);
    }

    /// A connection closed: forgets it with its strikes. True if it was open.
    pub fn disconnect(&mut self, client: PlayerId) -> bool {
        self.guard.forget(client);
        self.welcomed.remove(&client).is_some()
    }

    /// Whether the connection is open.
    pub fn is_connected(&self, client: PlayerId) -> bool {
        self.welcomed.contains_key(&client)
    }

    /// Whether an open connection's hello was accepted.
    pub fn is_welcomed(&self, client: PlayerId) -> bool {
        self.welcomed.get(&client).copied().unwrap_or(false)
    }

    /// Whether the connection is refused (its messages are ignored until it closes).
    pub fn is_refused(&self, client: PlayerId) -> bool {
        self.guard.is_refused(client)
    }

    /// Strikes of an open connection (`None` if it is not open).
    pub fn strikes(&self, client: PlayerId) -> Option<u32> {
        self.is_connected(client)
            .then(|| self.guard.strikes(client))
    }

    /// Open connections.
    pub fn connected(&self) -> usize {
        self.welcomed.len()
    }

    /// Refused connections whose grace period is over: close them. Each is yielded once.
    pub fn take_due(&mut self, now: Duration) -> Vec<PlayerId> {
        self.guard.take_due(now)
    }

    /// A decoded message from `client` that the mode's handler refused (it sends its own
    /// error): counts a strike like a bad message. The reply holds no error of its own
    /// unless the strike reached the limit ([`GateErrorKind::Abuse`], and the connection
    /// is refused). Nothing is counted for a connection that is closed or already refused.
    pub fn strike_refused(
        &mut self,
        client: PlayerId,
        policy: GatePolicy,
        now: Duration,
    ) -> GateReply {
        let mut reply = GateReply {
            errors: Vec::new(),
            strike: None,
            refused: false,
        };
        if !self.is_connected(client) || self.guard.is_refused(client) {
            return reply;
        }
        self.count_strike(client, &mut reply, policy, now);
        reply
    }

    /// Decides what to do with `bytes` from `client` at app time `now`.
    pub fn admit<M: GateMessage>(
        &mut self,
        client: PlayerId,
        bytes: &[u8],
        policy: GatePolicy,
        now: Duration,
    ) -> Admission<M> {
        let Some(&welcomed) = self.welcomed.get(&client) else {
            return Admission::Unknown;
        };
        if self.guard.is_refused(client) {
            return Admission::Ignore;
        }
        let message = match codec::decode::<M>(bytes) {
            Ok(message) => message,
            Err(err) => {
                let kind = match err {
                    CodecError::TooLarge { .. } => GateErrorKind::TooLarge,
                    _ => GateErrorKind::Malformed,
                };
                return self.strike(client, GateError::new(kind, err.to_string()), policy, now);
            }
        };
        match (message.hello_version(), welcomed) {
            (None, true) => Admission::Deliver(message),
            (None, false) => {
                let error = GateError::new(
                    GateErrorKind::HelloRequired,
                    "send Hello with the protocol version first",
                );
                self.strike(client, error, policy, now)
            }
            (Some(_), true) => Admission::Reply(GateReply::error(GateError::new(
                GateErrorKind::Unexpected,
                "hello was already accepted",
            ))),
            (Some(version), false) => self.hello::<M>(client, version, policy, now),
        }
    }

    fn hello<M: GateMessage>(
        &mut self,
        client: PlayerId,
        version: u32,
        policy: GatePolicy,
        now: Duration,
    ) -> Admission<M> {
        let ours = M::PROTOCOL;
        if version == ours.version {
            self.welcomed.insert(client, true);
            return Admission::Welcome;
        }
        let text = format!(
            "client speaks {} protocol {version}, {} speaks {}; update the game",
            ours.name, ours.speaker, ours.version
        );
        let mut reply = GateReply::error(GateError::new(GateErrorKind::VersionMismatch, text));
        reply.refused = self.guard.refuse(client, policy.disconnect_grace, now);
        Admission::Reply(reply)
    }

    fn strike<M>(
        &mut self,
        client: PlayerId,
        error: GateError,
        policy: GatePolicy,
        now: Duration,
    ) -> Admission<M> {
        let mut reply = GateReply::error(error);
        self.count_strike(client, &mut reply, policy, now);
        Admission::Reply(reply)
    }

    /// Counts a strike into `reply`, with the refusal when it reached the limit.
    fn count_strike(
        &mut self,
        client: PlayerId,
        reply: &mut GateReply,
        policy: GatePolicy,
        now: Duration,
    ) {
        let verdict = self
            .guard
            .strike(client, policy.max_strikes, policy.disconnect_grace, now);
        reply.strike = Some(verdict);
        if let StrikeVerdict::Refused(strikes) = verdict {
            reply.refused = true;
            reply.errors.push(GateError::new(
                GateErrorKind::Abuse,
                format!("{strikes} bad messages: disconnecting"),
            ));
        }
    }
}

/// Puts a mode's protocol behind the gate: implements [`GateMessage`] for its client
/// message enum (whose hello is `Hello { protocol_version }`) and maps [`GateErrorKind`]
/// to its error enum (which names the gate's errors alike).
///
/// `gate_protocol!(ClientMessage, ErrorKind, GateProtocol { .. })`
macro_rules! gate_protocol {
    ($message:ident, $error:ident, $protocol:expr) => {
        impl $crate::shared::gate::GateMessage for $message {
            const PROTOCOL: $crate::shared::gate::GateProtocol = $protocol;

            fn hello_version(&self) -> Option<u32> {
                match self {
                    $message::Hello { protocol_version } => Some(*protocol_version),
                    _ => None,
                }
            }
        }

        impl From<$crate::shared::gate::GateErrorKind> for $error {
            fn from(kind: $crate::shared::gate::GateErrorKind) -> Self {
                use $crate::shared::gate::GateErrorKind as Gate;
                match kind {
                    Gate::VersionMismatch => $error::VersionMismatch,
                    Gate::HelloRequired => $error::HelloRequired,
                    Gate::Malformed => $error::Malformed,
                    Gate::TooLarge => $error::TooLarge,
                    Gate::Unexpected => $error::Unexpected,
                    Gate::Abuse => $error::Abuse,
                }
            }
        }
    };
}
pub(crate) use gate_protocol;

/// A server that reads its clients through a [`ConnectionGate`]: the atomic server and the
/// negotiated relay each implement the transport and their replies, and share the loop
/// ([`GatedService::receive_all`]).
pub trait GatedService {
    /// What clients send.
    type Message: GateMessage;

    /// The gate, and the limits it enforces now.
    fn gate(&mut self) -> (&mut ConnectionGate, GatePolicy);

    /// The connections to read, in order.
    fn clients(&self) -> Vec<PlayerId>;

    /// The next waiting message of a connection.
    fn next_message(&mut self, client: PlayerId) -> Option<Vec<u8>>;

    /// The hello was accepted: send the mode's welcome.
    fn welcome(&mut self, client: PlayerId);

    /// Send the reply's errors and, if it refused the connection, do the mode's
    /// bookkeeping.
    fn reply(&mut self, client: PlayerId, reply: GateReply);

    /// Handle a message the gate let through.
    fn deliver(&mut self, client: PlayerId, message: Self::Message, now: Duration);

    /// Reads every waiting message of every connection through the gate and acts on the
    /// verdicts. `now` is the app time the gate counts grace periods in.
    ///
    /// Connections are read in id order, so two messages in one frame are handled in the
    /// same order on every run (the transport lists its clients in hash-map order).
    fn receive_all(&mut self, now: Duration) {
        let mut clients = self.clients();
        clients.sort_unstable();
        for client in clients {
            while let Some(bytes) = self.next_message(client) {
                let (gate, policy) = self.gate();
                match gate.admit::<Self::Message>(client, &bytes, policy, now) {
                    Admission::Deliver(message) => self.deliver(client, message, now),
                    Admission::Welcome => self.welcome(client),
                    Admission::Reply(reply) => self.reply(client, reply),
                    Admission::Ignore => {}
                    Admission::Unknown => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    enum Sample {
        Hello { protocol_version: u32 },
        Ask(String),
    }

    /// A mode's error enum: the gate's kinds and one of its own.
    #[rustfmt::skip]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum SampleError { VersionMismatch, HelloRequired, Malformed, TooLarge, Unexpected, Abuse, #[allow(dead_code)] Other }

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
                protocol_version: 3
            }
            .hello_version(),
            Some(3)
        );
        assert_eq!(Sample::Ask("x".into()).hello_version(), None);
        assert_eq!(
            SampleError::from(GateErrorKind::HelloRequired),
            SampleError::HelloRequired
        );
        let all = [
            GateErrorKind::VersionMismatch,
            GateErrorKind::HelloRequired,
            GateErrorKind::Malformed,
            GateErrorKind::TooLarge,
            GateErrorKind::Unexpected,
            GateErrorKind::Abuse,
        ];
        let mapped: Vec<String> = all
            .iter()
            .map(|k| format!("{:?}", SampleError::from(*k)))
            .collect();
        let names: Vec<String> = all.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(mapped, names);
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const POLICY: GatePolicy = GatePolicy {
        max_strikes: 3,
        disconnect_grace: Duration::from_millis(250),
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
    }

    impl GatedService for Fake {
        type Message = Sample;

        fn gate(&mut self) -> (&mut ConnectionGate, GatePolicy) {
            (&mut self.gate, POLICY)
        }

        fn clients(&self) -> Vec<PlayerId> {
            self.inbox.iter().map(|(c, _)| *c).collect()
        }

        fn next_message(&mut self, client: PlayerId) -> Option<Vec<u8>> {
            let (_, queue) = self.inbox.iter_mut().find(|(c, _)| *c == client)?;
            queue.pop_front()
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

    #[test]
    fn the_loop_reads_each_client_in_order() {
        let mut fake = Fake::default();
        fake.gate.connect(1);
        fake.gate.connect(2);
        let bytes = |m: &Sample| codec::encode(m);
        let wrong = Sample::Hello {
            protocol_version: 1,
        };
        fake.inbox = vec![
            (
                1,
                VecDeque::from([bytes(&HELLO), bytes(&Sample::Ask("a".into()))]),
            ),
            (2, VecDeque::from([bytes(&wrong), bytes(&HELLO)])),
            // unknown: the loop stops at its first message and leaves the rest
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
            1,
            "an unknown connection is not read"
        );
    }
}
