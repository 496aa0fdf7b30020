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
//! - a message over the connection's rate limit ([`MatchmakingRateLimit`], a token bucket
//!   checked before the bytes are decoded) earns a strike
//!   ([`GateErrorKind::RateLimited`]) and is dropped unread;
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

mod cooldown;

use cooldown::AbuseCooldowns;
pub use cooldown::MAX_COOLING_PLAYERS;

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

/// What a hello announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateHello {
    /// The client's protocol version.
    pub version: u32,
    /// The fingerprint of the client's connection config (0: unknown).
    pub config_fingerprint: u64,
}

/// A client-to-server message enum the gate can admit: it decodes with the codec and
/// says which of its variants is the hello. The hello is the enum's first variant and
/// begins with the protocol version in every version of the protocol, so the gate can read
/// the version of a hello it cannot decode (an older or newer client's).
pub trait GateMessage: DeserializeOwned {
    /// The protocol these messages belong to.
    const PROTOCOL: GateProtocol;

    /// What the message announces if it is the hello, `None` otherwise.
    fn hello(&self) -> Option<GateHello>;
}

/// The fields every version of a hello begins with: the variant index (0) and the version.
#[derive(serde::Deserialize)]
struct HelloPrefix {
    variant: u32,
    version: u32,
}

/// How fast one connection may send: a token bucket of `burst` messages, refilled at
/// `messages_per_second`. A message past it is dropped unread and earns a strike, so a
/// flood reaches the strike limit (and is disconnected) within a few messages, while a
/// game client, which sends a handful of messages a second at most, never meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchmakingRateLimit {
    /// Messages per second a connection may send on average (at least 1).
    pub messages_per_second: u32,
    /// Messages a connection may send at once (at least 1).
    pub burst: u32,
}

impl Default for MatchmakingRateLimit {
    /// 30 messages a second, 60 at once.
    fn default() -> Self {
        Self {
            messages_per_second: 30,
            burst: 60,
        }
    }
}

/// The limits the connection gate enforces, in both modes: the `gate` field of
/// `AtomicServerSettings` and of `NegotiatedRelaySettings` (settings may change at run
/// time; the gate reads the current value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchmakingGatePolicy {
    /// Bad messages a connection may send; the one that reaches this number refuses it.
    pub max_strikes: u32,
    /// How long a refused connection stays open so that the error reaches it.
    pub disconnect_grace: Duration,
    /// How fast a connection may send.
    pub rate_limit: MatchmakingRateLimit,
    /// How long a player refused for abuse is refused again when it connects anew (zero:
    /// not at all).
    pub abuse_cooldown: Duration,
}

impl Default for MatchmakingGatePolicy {
    /// 3 strikes, 250 ms of grace, 30 messages a second (60 at once), 60 s of abuse
    /// cooldown.
    fn default() -> Self {
        Self {
            max_strikes: 3,
            disconnect_grace: Duration::from_millis(250),
            rate_limit: MatchmakingRateLimit::default(),
            abuse_cooldown: Duration::from_secs(60),
        }
    }
}

impl MatchmakingGatePolicy {
    /// This policy with every count at least 1 (strikes, rate and burst).
    pub fn clamped(&self) -> Self {
        Self {
            max_strikes: self.max_strikes.max(1),
            rate_limit: MatchmakingRateLimit {
                messages_per_second: self.rate_limit.messages_per_second.max(1),
                burst: self.rate_limit.burst.max(1),
            },
            ..*self
        }
    }
}

/// The errors the gate reports; each mode maps them to its own error kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GateErrorKind {
    /// The hello announced another protocol version; the connection is refused.
    VersionMismatch,
    /// The hello announced another connection config; the connection is refused.
    ConfigMismatch,
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
    /// A message over the connection's rate limit, dropped unread (a strike).
    RateLimited,
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

/// What the gate keeps of one open connection.
#[derive(Debug, Clone, Copy, Default)]
struct GateConnection {
    /// Whether its hello was accepted.
    welcomed: bool,
    /// Its rate limit's bucket.
    bucket: RateBucket,
}

/// A token bucket: `level` tokens (full when `None`) as of `refilled_at`.
#[derive(Debug, Clone, Copy, Default)]
struct RateBucket {
    level: Option<f64>,
    refilled_at: Duration,
}

impl RateBucket {
    /// Refills the bucket up to `now` and takes one message's token; false when there
    /// is none (the message is over the limit). Time going backwards refills nothing.
    fn take(&mut self, limit: MatchmakingRateLimit, now: Duration) -> bool {
        let burst = f64::from(limit.burst.max(1));
        let rate = f64::from(limit.messages_per_second.max(1));
        let elapsed = now.saturating_sub(self.refilled_at).as_secs_f64();
        let level = self
            .level
            .map_or(burst, |level| (level + elapsed * rate).min(burst));
        self.refilled_at = self.refilled_at.max(now);
        let allowed = level >= 1.0;
        self.level = Some(if allowed { level - 1.0 } else { level });
        allowed
    }
}

/// Per-connection hello flags, rate limits, strikes and refusals of one server or relay.
#[derive(Debug, Clone, Default)]
pub struct ConnectionGate {
    /// Open connections.
    connections: HashMap<PlayerId, GateConnection>,
    guard: StrikeGuard,
    /// Players refused for abuse, refused again until their cooldown ends.
    cooldowns: AbuseCooldowns,
    /// The fingerprint of the connection config behind the gate, when known.
    config_fingerprint: Option<u64>,
}

impl ConnectionGate {
    /// A connection opened (a reconnection under the same id starts over, without hello).
    pub fn connect(&mut self, client: PlayerId) {
        self.connections.insert(client, GateConnection::default());
    }

    /// A connection closed: forgets it with its strikes. True if it was open.
    pub fn disconnect(&mut self, client: PlayerId) -> bool {
        self.guard.forget(client);
        self.connections.remove(&client).is_some()
    }

    /// The fingerprint of the connection config the gate's side runs on (`None`: unknown).
    /// A hello announcing another one (not 0) is refused with
    /// [`GateErrorKind::ConfigMismatch`].
    pub fn expect_config(&mut self, fingerprint: Option<u64>) {
        self.config_fingerprint = fingerprint;
    }

    /// Whether the connection is open.
    pub fn is_connected(&self, client: PlayerId) -> bool {
        self.connections.contains_key(&client)
    }

    /// Whether an open connection's hello was accepted.
    pub fn is_welcomed(&self, client: PlayerId) -> bool {
        self.connections.get(&client).is_some_and(|c| c.welcomed)
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
        self.connections.len()
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
        policy: MatchmakingGatePolicy,
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
        policy: MatchmakingGatePolicy,
        now: Duration,
    ) -> Admission<M> {
        let Some(connection) = self.connections.get_mut(&client) else {
            return Admission::Unknown;
        };
        if self.guard.is_refused(client) {
            return Admission::Ignore;
        }
        let welcomed = connection.welcomed;
        if !welcomed && let Some(until) = self.cooldowns.cooling_until(client, now) {
            return self.refuse_cooling(client, until, policy, now);
        }
        if !connection.bucket.take(policy.rate_limit, now) {
            let limit = policy.rate_limit;
            let error = GateError::new(
                GateErrorKind::RateLimited,
                format!(
                    "more than {} messages a second ({} at once): message dropped",
                    limit.messages_per_second, limit.burst
                ),
            );
            return self.strike(client, error, policy, now);
        }
        let message = match codec::decode::<M>(bytes) {
            Ok(message) => message,
            Err(_) if !welcomed && let Some(version) = other_version_hello::<M>(bytes) => {
                return self.hello::<M>(client, version, policy, now);
            }
            Err(err) => {
                let kind = match err {
                    CodecError::TooLarge { .. } => GateErrorKind::TooLarge,
                    _ => GateErrorKind::Malformed,
                };
                return self.strike(client, GateError::new(kind, err.to_string()), policy, now);
            }
        };
        match (message.hello(), welcomed) {
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
            (Some(hello), false) => self.hello::<M>(client, hello, policy, now),
        }
    }

    fn hello<M: GateMessage>(
        &mut self,
        client: PlayerId,
        hello: GateHello,
        policy: MatchmakingGatePolicy,
        now: Duration,
    ) -> Admission<M> {
        let ours = M::PROTOCOL;
        let theirs = hello.config_fingerprint;
        let error = if hello.version != ours.version {
            GateError::new(
                GateErrorKind::VersionMismatch,
                format!(
                    "client speaks {} protocol {}, {} speaks {}; update the game",
                    ours.name, hello.version, ours.speaker, ours.version
                ),
            )
        } else if let Some(expected) = self.config_fingerprint
            && theirs != 0
            && theirs != expected
        {
            GateError::new(
                GateErrorKind::ConfigMismatch,
                format!(
                    "the client's connection config (fingerprint {theirs:016x}) differs from \
                     the {}'s ({expected:016x}): build both from the same channel, both with \
                     connection_config() or both with dedicated_connection_config()",
                    ours.speaker
                ),
            )
        } else {
            if let Some(connection) = self.connections.get_mut(&client) {
                connection.welcomed = true;
            }
            return Admission::Welcome;
        };
        let mut reply = GateReply::error(error);
        reply.refused = self.guard.refuse(client, policy.disconnect_grace, now);
        Admission::Reply(reply)
    }

    fn strike<M>(
        &mut self,
        client: PlayerId,
        error: GateError,
        policy: MatchmakingGatePolicy,
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
        policy: MatchmakingGatePolicy,
        now: Duration,
    ) {
        let verdict = self
            .guard
            .strike(client, policy.max_strikes, policy.disconnect_grace, now);
        reply.strike = Some(verdict);
        if let StrikeVerdict::Refused(strikes) = verdict {
            reply.refused = true;
            let cooldown = policy.abuse_cooldown;
            let mut text = format!("{strikes} bad messages: disconnecting");
            if !cooldown.is_zero() {
                let until = now.saturating_add(cooldown);
                self.cooldowns.cool(client, until, now);
                text += &format!("; this player is refused for {} s", cooldown.as_secs());
            }
            reply
                .errors
                .push(GateError::new(GateErrorKind::Abuse, text));
        }
    }

    /// A connection of a player still cooling down after an abuse refusal: refused at
    /// once, without a strike.
    fn refuse_cooling<M>(
        &mut self,
        client: PlayerId,
        until: Duration,
        policy: MatchmakingGatePolicy,
        now: Duration,
    ) -> Admission<M> {
        let left = until.saturating_sub(now).as_secs() + 1;
        let text = format!("this player was refused for abuse; try again in {left} s");
        let mut reply = GateReply::error(GateError::new(GateErrorKind::Abuse, text));
        reply.refused = self.guard.refuse(client, policy.disconnect_grace, now);
        Admission::Reply(reply)
    }

    /// Players refused for abuse whose cooldown may still run.
    pub fn cooling(&self) -> usize {
        self.cooldowns.len()
    }
}

/// The hello of another protocol version, which does not decode as ours: its version (with
/// an unknown config), if the bytes begin like a hello of a version other than ours.
fn other_version_hello<M: GateMessage>(bytes: &[u8]) -> Option<GateHello> {
    let prefix = codec::decode_prefix::<HelloPrefix>(bytes).ok()?;
    (prefix.variant == 0 && prefix.version != M::PROTOCOL.version).then_some(GateHello {
        version: prefix.version,
        config_fingerprint: 0,
    })
}

/// Puts a mode's protocol behind the gate: implements [`GateMessage`] for its client
/// message enum (whose hello is `Hello { protocol_version, config_fingerprint }`, its first
/// variant) and maps [`GateErrorKind`]
/// to its error enum (which names the gate's errors alike).
///
/// `gate_protocol!(AtomicClientMessage, ErrorKind, GateProtocol { .. })`
#[cfg(any(feature = "server", feature = "negotiated"))]
macro_rules! gate_protocol {
    ($message:ident, $error:ident, $protocol:expr) => {
        impl $crate::shared::gate::GateMessage for $message {
            const PROTOCOL: $crate::shared::gate::GateProtocol = $protocol;

            fn hello(&self) -> Option<$crate::shared::gate::GateHello> {
                match self {
                    $message::Hello {
                        protocol_version,
                        config_fingerprint,
                    } => Some($crate::shared::gate::GateHello {
                        version: *protocol_version,
                        config_fingerprint: *config_fingerprint,
                    }),
                    _ => None,
                }
            }
        }

        impl From<$crate::shared::gate::GateErrorKind> for $error {
            fn from(kind: $crate::shared::gate::GateErrorKind) -> Self {
                use $crate::shared::gate::GateErrorKind as Gate;
                match kind {
                    Gate::VersionMismatch => $error::VersionMismatch,
                    Gate::ConfigMismatch => $error::ConfigMismatch,
                    Gate::HelloRequired => $error::HelloRequired,
                    Gate::Malformed => $error::Malformed,
                    Gate::TooLarge => $error::TooLarge,
                    Gate::Unexpected => $error::Unexpected,
                    Gate::Abuse => $error::Abuse,
                    Gate::RateLimited => $error::RateLimited,
                }
            }
        }
    };
}
#[cfg(any(feature = "server", feature = "negotiated"))]
pub(crate) use gate_protocol;

/// Which connections a [`GatedService`] reads in one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionsToRead {
    /// Only these, in id order: the transport reported every packet carrying messages.
    Reported(Vec<PlayerId>),
    /// Every connection: the transport does not report (`reported` is `None`), or a sweep
    /// is due (`reported` lists, in id order, the connections that were reported; a message
    /// from another one came by a path that does not report).
    Every {
        /// The connections reported since the last read, if the transport reports.
        reported: Option<Vec<PlayerId>>,
    },
}

/// Where a [`GatedService`] reads its clients' messages: its transport's connections.
/// Both modes read through the same implementation (`shared::server_link`).
pub trait GateTransport {
    /// Every connection of the transport.
    fn clients(&self) -> Vec<PlayerId>;

    /// The connections to read at app time `now` (see [`ConnectionsToRead`]): those the
    /// transport reported (the `MatchmakingInbox` of `shared::inbox`), or every one.
    fn to_read(&mut self, now: Duration) -> ConnectionsToRead;

    /// A reported connection's messages were left unread: report it again if the
    /// transport still has it.
    fn read_again(&mut self, client: PlayerId);

    /// A connection read by a sweep had messages no report announced.
    fn unreported(&mut self, client: PlayerId);

    /// The next waiting message of a connection.
    fn next_message(&mut self, client: PlayerId) -> Option<Vec<u8>>;
}

/// A server that reads its clients through a [`ConnectionGate`]: the atomic server and the
/// negotiated relay each implement their replies over one [`GateTransport`], and share the
/// loop ([`GatedService::receive_all`]).
pub trait GatedService {
    /// What clients send.
    type Message: GateMessage;
    /// Where the messages come from.
    type Transport: GateTransport;

    /// The gate, and the limits it enforces now.
    fn gate(&mut self) -> (&mut ConnectionGate, MatchmakingGatePolicy);

    /// The transport the messages come from.
    fn transport(&mut self) -> &mut Self::Transport;

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
    /// With an inbox only the connections it lists are read (and every connection once
    /// per sweep); otherwise every connection is. Connections are read in id order, so two
    /// messages in one frame are handled in the same order on every run (the transport
    /// lists its clients in hash-map order). A connection the gate does not know yet (its
    /// connect event comes later in the frame) keeps its messages (none is taken) and is
    /// read again next frame.
    fn receive_all(&mut self, now: Duration) {
        let (clients, reported) = match self.transport().to_read(now) {
            ConnectionsToRead::Reported(clients) => (clients, None),
            ConnectionsToRead::Every { reported } => {
                let mut clients = self.transport().clients();
                clients.sort_unstable();
                (clients, reported)
            }
        };
        for client in clients {
            if !self.gate().0.is_connected(client) {
                self.transport().read_again(client);
                continue;
            }
            let had_messages = self.read_messages(client, now);
            let announced = reported
                .as_ref()
                .is_none_or(|r| r.binary_search(&client).is_ok());
            if had_messages && !announced {
                self.transport().unreported(client);
            }
        }
    }

    /// Reads every waiting message of one connection through the gate; true if it had any.
    fn read_messages(&mut self, client: PlayerId, now: Duration) -> bool {
        let mut any = false;
        while let Some(bytes) = self.transport().next_message(client) {
            any = true;
            let (gate, policy) = self.gate();
            match gate.admit::<Self::Message>(client, &bytes, policy, now) {
                Admission::Deliver(message) => self.deliver(client, message, now),
                Admission::Welcome => self.welcome(client),
                Admission::Reply(reply) => self.reply(client, reply),
                Admission::Ignore => {}
                Admission::Unknown => break,
            }
        }
        any
    }
}

#[cfg(test)]
mod tests;
