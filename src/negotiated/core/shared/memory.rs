//! [`NegotiatedMemorySharedStore`]: the shared store in memory, for relays in one process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::shared::player::PlayerId;

use super::super::fact::{NegotiatedFact, NegotiatedSignedFact};
use super::super::frame::NegotiatedFrames;
use super::super::relay_core::{NegotiatedDecision, NegotiatedRelayCore, NegotiatedRelayLimits};
use super::{
    NegotiatedConnection, NegotiatedLogEntry, NegotiatedLogEvent, NegotiatedLogPosition,
    NegotiatedSharedStore, NegotiatedSharedStoreError, NegotiatedSharedVerdict,
};

/// How many frame durations the log keeps its entries (a relay that stalls for longer
/// reads it again from the start: [`NegotiatedSharedStoreError::Behind`]).
pub const NEGOTIATED_LOG_KEPT_FRAMES: u32 = 4;

/// The shared store in memory: clones are the same store, so relay apps of one process
/// (tests) share it. The verdicts are [`NegotiatedRelayCore::decide`]'s, on one core that
/// routes nothing.
///
/// For fault tests it can be made unreachable ([`set_reachable`](Self::set_reachable)) and
/// can lose replies ([`lose_replies`](Self::lose_replies)): the call happens, its caller
/// hears [`NegotiatedSharedStoreError::Unavailable`].
#[derive(Debug, Clone)]
pub struct NegotiatedMemorySharedStore {
    inner: Arc<Mutex<Inner>>,
    /// Calls made through this handle.
    round_trips: u64,
}

#[derive(Debug)]
struct Inner {
    authority: NegotiatedRelayCore,
    /// Entries with the relay time they were appended at.
    log: VecDeque<(Duration, NegotiatedLogEntry)>,
    /// The last position handed out.
    last: u64,
    /// The highest position trimmed off the log.
    trimmed: u64,
    /// Each player's latest connection, and whether it is still open.
    latest: HashMap<PlayerId, (NegotiatedConnection, bool)>,
    reachable: bool,
    lose_replies: u32,
}

impl Inner {
    fn end(&self) -> NegotiatedLogPosition {
        NegotiatedLogPosition::new(0, self.last)
    }

    fn append(&mut self, now: Duration, event: NegotiatedLogEvent) -> NegotiatedLogPosition {
        self.last += 1;
        let position = self.end();
        self.log
            .push_back((now, NegotiatedLogEntry { position, event }));
        let keep = self.authority.frames().duration() * NEGOTIATED_LOG_KEPT_FRAMES;
        while self
            .log
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > keep)
        {
            if let Some((_, entry)) = self.log.pop_front() {
                self.trimmed = entry.position.minor;
            }
        }
        position
    }

    /// Fails the call when unreachable, before it happens.
    fn reach(&self) -> Result<(), NegotiatedSharedStoreError> {
        match self.reachable {
            true => Ok(()),
            false => Err(NegotiatedSharedStoreError::Unavailable(
                "the memory store is set unreachable".into(),
            )),
        }
    }

    /// Loses the reply of a call that happened, when asked to.
    fn reply<T>(&mut self, reply: T) -> Result<T, NegotiatedSharedStoreError> {
        if self.lose_replies > 0 {
            self.lose_replies -= 1;
            return Err(NegotiatedSharedStoreError::Unavailable(
                "the memory store lost this reply".into(),
            ));
        }
        Ok(reply)
    }
}

impl NegotiatedMemorySharedStore {
    /// An empty store on this frame grid, deciding by these limits.
    pub fn new(frames: NegotiatedFrames, limits: NegotiatedRelayLimits) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                authority: NegotiatedRelayCore::with_limits(frames, limits),
                log: VecDeque::new(),
                last: 0,
                trimmed: 0,
                latest: HashMap::new(),
                reachable: true,
                lose_replies: 0,
            })),
            round_trips: 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One call of the store: counted, and failed before it happens while unreachable.
    fn call(&mut self) -> Result<MutexGuard<'_, Inner>, NegotiatedSharedStoreError> {
        self.round_trips += 1;
        let inner = self.lock();
        inner.reach()?;
        Ok(inner)
    }

    /// Whether two handles are the same store.
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Makes the store reachable or not (a Redis down, a partition): while not, every call
    /// fails before it happens.
    pub fn set_reachable(&self, reachable: bool) {
        self.lock().reachable = reachable;
    }

    /// The next `n` calls happen but their callers hear `Unavailable` (lost replies).
    pub fn lose_replies(&self, n: u32) {
        self.lock().lose_replies = n;
    }

    /// The store's own view: every fact it holds, with its rules' state.
    pub fn with_authority<T>(&self, read: impl FnOnce(&NegotiatedRelayCore) -> T) -> T {
        read(&self.lock().authority)
    }

    /// Entries the log holds now.
    pub fn log_len(&self) -> usize {
        self.lock().log.len()
    }

    /// Drops the frames expired at `now` (posts do it too).
    pub fn expire(&self, now: Duration) -> usize {
        self.lock().authority.expire(now)
    }
}

impl NegotiatedSharedStore for NegotiatedMemorySharedStore {
    fn post(
        &mut self,
        author: PlayerId,
        fact: &NegotiatedFact,
        now: Duration,
    ) -> Result<NegotiatedSharedVerdict, NegotiatedSharedStoreError> {
        let mut inner = self.call()?;
        let signed = NegotiatedSignedFact::new(author, fact.clone());
        let verdict = match inner.authority.decide(&signed, now) {
            Ok(NegotiatedDecision::Added { .. }) => NegotiatedSharedVerdict::Stored(
                inner.append(now, NegotiatedLogEvent::Stored(signed)),
            ),
            Ok(NegotiatedDecision::Duplicate) => NegotiatedSharedVerdict::Duplicate(inner.end()),
            Err(refusal) => NegotiatedSharedVerdict::Refused(refusal, inner.end()),
        };
        inner.reply(verdict)
    }

    fn connect(
        &mut self,
        player: PlayerId,
        connection: &NegotiatedConnection,
        now: Duration,
    ) -> Result<NegotiatedLogPosition, NegotiatedSharedStoreError> {
        let mut inner = self.call()?;
        if inner.latest.get(&player) == Some(&(connection.clone(), true)) {
            let end = inner.end();
            return inner.reply(end);
        }
        inner.latest.insert(player, (connection.clone(), true));
        inner.authority.connect(player);
        let position = inner.append(now, NegotiatedLogEvent::Connected(player));
        inner.reply(position)
    }

    fn disconnect(
        &mut self,
        player: PlayerId,
        connection: &NegotiatedConnection,
        now: Duration,
    ) -> Result<NegotiatedLogPosition, NegotiatedSharedStoreError> {
        let mut inner = self.call()?;
        // a later connection's player did not depart; a closed one departed already
        if inner
            .latest
            .get(&player)
            .is_some_and(|(latest, open)| latest != connection || !open)
        {
            let end = inner.end();
            return inner.reply(end);
        }
        inner.latest.insert(player, (connection.clone(), false));
        inner.authority.expire(now);
        inner.authority.depart(player);
        let position = inner.append(now, NegotiatedLogEvent::Departed(player));
        inner.reply(position)
    }

    fn read(
        &mut self,
        after: NegotiatedLogPosition,
        max: usize,
        _wait: Duration,
    ) -> Result<Vec<NegotiatedLogEntry>, NegotiatedSharedStoreError> {
        let inner = self.call()?;
        // from the start: whatever the log holds now
        if after != NegotiatedLogPosition::START && after.minor < inner.trimmed {
            return Err(NegotiatedSharedStoreError::Behind(after));
        }
        Ok(inner
            .log
            .iter()
            .map(|(_, entry)| entry)
            .filter(|entry| entry.position > after)
            .take(max)
            .cloned()
            .collect())
    }

    fn round_trips(&self) -> u64 {
        self.round_trips
    }
}
