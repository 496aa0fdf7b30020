//! A fact store that several relays share, so that no relay is a single point of failure.
//!
//! One relay keeps its facts in its own [`NegotiatedFactStore`](super::store::NegotiatedFactStore)
//! and decides every verdict itself ([`NegotiatedRelayCore::post`](super::relay_core::NegotiatedRelayCore::post)).
//! Relays that share a [`NegotiatedSharedStore`] leave the verdicts to it instead:
//!
//! - **Verdicts in one place.** [`NegotiatedSharedStore::post`] applies the relay's
//!   storage rules (`relay_core`'s, first writer wins) and stores the fact in one atomic
//!   step: at most one of an accept and a withdrawal of a bid, only the requester closes
//!   its request, no accept past a bid's deadline or of a departed bidder. Two relays can
//!   never give opposite verdicts, because neither gives any.
//! - **One ordered log.** Everything stored, and every connection opened or closed, is
//!   appended to one log ([`NegotiatedLogEntry`]). Every relay reads it in order into its
//!   own store, a replica it routes from
//!   ([`NegotiatedRelayCore::apply_log`](super::relay_core::NegotiatedRelayCore::apply_log)):
//!   a fact posted through relay A reaches the clients watching its frame on relay B as
//!   soon as B reads it.
//! - **Verdicts after what came before.** A verdict carries the log position it was
//!   decided at, and [`NegotiatedSharedPump`] hands a relay its verdicts only after the
//!   log entries up to that position. So the ordered-stream promise of one relay holds
//!   across relays: an accept stored through relay A reaches the bidder on relay B before
//!   the refusal of the bidder's withdrawal.
//! - **Departures everywhere.** A connection that closes on any relay is a
//!   [`NegotiatedLogEvent::Departed`] every relay tells its watchers about, unless the
//!   player connected again meanwhile (on any relay): the store keeps which connection is
//!   the player's latest ([`NegotiatedConnection`]) and ignores the close of an older one.
//!
//! Stores: [`NegotiatedMemorySharedStore`] (relays in one process: tests), and
//! `NegotiatedRedisStore` (feature `redis`: relays on several machines).

use std::fmt;
use std::time::Duration;

use crate::shared::player::PlayerId;

use super::fact::{NegotiatedFact, NegotiatedFactId, NegotiatedSignedFact};
use super::relay_core::NegotiatedRefusal;

mod memory;
mod pump;

#[cfg(test)]
mod tests;

pub use memory::{NEGOTIATED_LOG_KEPT_FRAMES, NegotiatedMemorySharedStore};
pub use pump::{NegotiatedSharedOp, NegotiatedSharedPump, NegotiatedSharedReply};

/// A place in the shared log: entries are ordered by it (a Redis stream id: milliseconds,
/// then a sequence number; in memory, `(0, n)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NegotiatedLogPosition {
    /// The major part (a Redis stream id's milliseconds).
    pub major: u64,
    /// The minor part (a Redis stream id's sequence number).
    pub minor: u64,
}

impl NegotiatedLogPosition {
    /// Before every entry.
    pub const START: Self = Self { major: 0, minor: 0 };

    /// A position from its two parts.
    pub fn new(major: u64, minor: u64) -> Self {
        Self { major, minor }
    }
}

impl fmt::Display for NegotiatedLogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.major, self.minor)
    }
}

/// What one entry of the shared log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedLogEvent {
    /// A fact was stored.
    Stored(NegotiatedSignedFact),
    /// A player connected (to some relay): it is no longer departed.
    Connected(PlayerId),
    /// A player's latest connection closed: its requests will not be answered, its
    /// unanswered bids can no longer be accepted.
    Departed(PlayerId),
}

/// One entry of the shared log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedLogEntry {
    /// Where it is.
    pub position: NegotiatedLogPosition,
    /// What it says.
    pub event: NegotiatedLogEvent,
}

/// The shared store's verdict on a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedSharedVerdict {
    /// Stored now, at this log position.
    Stored(NegotiatedLogPosition),
    /// Already stored (by an earlier post of the same fact), no later than this position.
    Duplicate(NegotiatedLogPosition),
    /// Refused by the rules, decided when the log ended at this position.
    Refused(NegotiatedRefusal, NegotiatedLogPosition),
}

impl NegotiatedSharedVerdict {
    /// The log position a relay must have read before it tells the poster.
    pub fn position(&self) -> NegotiatedLogPosition {
        match self {
            Self::Stored(p) | Self::Duplicate(p) | Self::Refused(_, p) => *p,
        }
    }
}

/// One connection of a player to one relay: the relay's instance and the connection's
/// number there. The store remembers each player's latest, so that the close of an older
/// connection (a relay noticing late that a client moved on) is no departure.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NegotiatedConnection {
    /// The relay instance (unique per relay process: a name and a random part).
    pub relay: String,
    /// The connection's number on that relay.
    pub number: u64,
}

impl fmt::Display for NegotiatedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.relay, self.number)
    }
}

/// Why the shared store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiatedSharedStoreError {
    /// The store cannot be reached (Redis down, a network partition): the call may have
    /// happened or not; retry it (every call is idempotent).
    #[error("the shared fact store is unavailable: {0}")]
    Unavailable(String),
    /// The log no longer holds the entries after the position asked for (a relay that
    /// stalled for longer than the store keeps its log): read it again from the start.
    #[error("the shared log was trimmed past position {0}")]
    Behind(NegotiatedLogPosition),
    /// The store answered something that makes no sense (a bug, or another program's
    /// keys under the same prefix).
    #[error("the shared fact store answered nonsense: {0}")]
    Corrupt(String),
}

/// A fact store several relays share. Every call is one atomic step of the store and
/// idempotent (a call retried after a lost reply changes nothing more).
///
/// Blocking: a relay calls it from its own thread ([`NegotiatedSharedPump`] in a loop),
/// never from its frame, unless the store is in memory.
pub trait NegotiatedSharedStore: Send {
    /// Decides `author`'s post of `fact` at relay time `now`, by the relay's storage rules,
    /// and stores it (appending it to the log) when they allow.
    fn post(
        &mut self,
        author: PlayerId,
        fact: &NegotiatedFact,
        now: Duration,
    ) -> Result<NegotiatedSharedVerdict, NegotiatedSharedStoreError>;

    /// `player` connected through `connection`: it is the player's latest, and the log
    /// says the player is back. Returns the log position of that entry.
    fn connect(
        &mut self,
        player: PlayerId,
        connection: &NegotiatedConnection,
        now: Duration,
    ) -> Result<NegotiatedLogPosition, NegotiatedSharedStoreError>;

    /// `connection` of `player` closed: when it is the player's latest, its unanswered bids
    /// can no longer be accepted and the log says it departed. Returns the log's end.
    fn disconnect(
        &mut self,
        player: PlayerId,
        connection: &NegotiatedConnection,
        now: Duration,
    ) -> Result<NegotiatedLogPosition, NegotiatedSharedStoreError>;

    /// At most `max` log entries after `after`, in order; waits up to `wait` for one when
    /// there are none yet (a store in memory never waits). From
    /// [`NegotiatedLogPosition::START`]: from the oldest entry the log holds; from a
    /// position the log was trimmed past: [`NegotiatedSharedStoreError::Behind`].
    fn read(
        &mut self,
        after: NegotiatedLogPosition,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<NegotiatedLogEntry>, NegotiatedSharedStoreError>;

    /// Round trips to the store so far (each call is one, or a few): the figure of
    /// commands per match.
    fn round_trips(&self) -> u64;
}

impl<S: NegotiatedSharedStore + ?Sized> NegotiatedSharedStore for Box<S> {
    fn post(
        &mut self,
        author: PlayerId,
        fact: &NegotiatedFact,
        now: Duration,
    ) -> Result<NegotiatedSharedVerdict, NegotiatedSharedStoreError> {
        (**self).post(author, fact, now)
    }

    fn connect(
        &mut self,
        player: PlayerId,
        connection: &NegotiatedConnection,
        now: Duration,
    ) -> Result<NegotiatedLogPosition, NegotiatedSharedStoreError> {
        (**self).connect(player, connection, now)
    }

    fn disconnect(
        &mut self,
        player: PlayerId,
        connection: &NegotiatedConnection,
        now: Duration,
    ) -> Result<NegotiatedLogPosition, NegotiatedSharedStoreError> {
        (**self).disconnect(player, connection, now)
    }

    fn read(
        &mut self,
        after: NegotiatedLogPosition,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<NegotiatedLogEntry>, NegotiatedSharedStoreError> {
        (**self).read(after, max, wait)
    }

    fn round_trips(&self) -> u64 {
        (**self).round_trips()
    }
}

/// The id of what a verdict answers (for the pump's bookkeeping).
pub(crate) fn post_id(author: PlayerId, fact: &NegotiatedFact) -> NegotiatedFactId {
    NegotiatedSignedFact::new(author, fact.clone()).id()
}
