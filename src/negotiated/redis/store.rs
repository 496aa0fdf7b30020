//! [`NegotiatedRedisStore`]: the shared fact store on one Redis, each call one Lua script.

use std::time::Duration;

use ::redis::Script;

use crate::negotiated::core::clock::as_us;
use crate::negotiated::core::fact::{
    NegotiatedFact, NegotiatedFactId, NegotiatedFactKind, NegotiatedSignedFact,
};
use crate::negotiated::core::frame::NegotiatedFrames;
use crate::negotiated::core::protocol::NegotiatedErrorKind;
use crate::negotiated::core::relay_core::{NegotiatedRelayLimits, check_request};
use crate::negotiated::core::shared::{
    NEGOTIATED_LOG_KEPT_FRAMES, NegotiatedConnection, NegotiatedLogEntry, NegotiatedLogPosition,
    NegotiatedSharedStore, NegotiatedSharedStoreError, NegotiatedSharedVerdict,
};
use crate::shared::codec;
use crate::shared::player::PlayerId;
use crate::shared::redis::{RedisLink, RedisLinkError, glob_escape};

use super::reply::{log_read, position, verdict};

/// How many frame durations the store remembers a player's latest connection after its
/// last connect or close (see the [module docs](super), "Connections").
pub const NEGOTIATED_CONNECTION_KEPT_FRAMES: u32 = 2 * NEGOTIATED_LOG_KEPT_FRAMES;

const COMMON: &str = include_str!("lua/common.lua");

// a relay calls its store from its own thread
const _: fn() = || {
    fn send<T: Send>() {}
    send::<NegotiatedRedisStore>();
};

/// The scripts; the writing ones are prefixed with the shared helpers.
struct Scripts {
    post: Script,
    connect: Script,
    disconnect: Script,
    read: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_common = |body: &str| Script::new(&format!("{COMMON}\n{body}"));
        Self {
            post: with_common(include_str!("lua/post.lua")),
            connect: with_common(include_str!("lua/connect.lua")),
            disconnect: with_common(include_str!("lua/disconnect.lua")),
            read: Script::new(include_str!("lua/read.lua")),
        }
    }
}

/// The fact store several relays share, on one Redis: every relay opens its own
/// `NegotiatedRedisStore` on the same Redis, under the same prefix, with the same frame
/// duration and limits. See the [module docs](super) for the keys, the round trips and
/// what Redis persistence means for the guarantee.
///
/// Blocking: call it off the frame (the relay's shared-store thread). A call that cannot
/// reach Redis returns [`NegotiatedSharedStoreError::Unavailable`] and the next call
/// reconnects; every call is idempotent, so a call whose reply was lost can be made again.
pub struct NegotiatedRedisStore {
    link: RedisLink,
    frames: NegotiatedFrames,
    limits: NegotiatedRelayLimits,
    scripts: Scripts,
}

impl std::fmt::Debug for NegotiatedRedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NegotiatedRedisStore")
            .field("link", &self.link)
            .field("frames", &self.frames)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A failed call as the shared store's error: Redis down or busy is unavailable.
pub(super) fn store_error(error: RedisLinkError) -> NegotiatedSharedStoreError {
    match error {
        RedisLinkError::Unavailable(why) | RedisLinkError::Busy(why) => {
            NegotiatedSharedStoreError::Unavailable(why)
        }
        RedisLinkError::Corrupt(why) => NegotiatedSharedStoreError::Corrupt(why),
    }
}

/// Whole milliseconds of `d`, at least 1.
fn millis(d: Duration) -> String {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
        .to_string()
}

/// An id as the scripts name it (16 hex digits), or nothing.
fn hex(id: Option<NegotiatedFactId>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

/// The script's letter for a fact's kind.
fn kind_letter(kind: NegotiatedFactKind) -> &'static str {
    match kind {
        NegotiatedFactKind::Request => "r",
        NegotiatedFactKind::Bid => "b",
        NegotiatedFactKind::Accept => "a",
        NegotiatedFactKind::Reject => "j",
        NegotiatedFactKind::Cancel => "c",
        NegotiatedFactKind::Withdraw => "w",
    }
}

impl NegotiatedRedisStore {
    /// A store on the Redis at `url` (`redis://host:port/db`), under `prefix`, for relays
    /// on this frame grid deciding by these limits (each at least 1). Connects lazily: a
    /// Redis that is down makes the first call fail, not this one.
    ///
    /// The prefix is the keys' hash tag (`{PREFIX}:`): make it non-empty, or the keys of
    /// one script land in several slots of a Redis Cluster (one Redis does not mind).
    pub fn open(
        url: &str,
        prefix: &str,
        frames: NegotiatedFrames,
        limits: NegotiatedRelayLimits,
    ) -> Result<Self, NegotiatedSharedStoreError> {
        Ok(Self {
            link: RedisLink::open(url, prefix).map_err(store_error)?,
            frames,
            limits: NegotiatedRelayLimits {
                max_facts_per_frame: limits.max_facts_per_frame.max(1),
                max_facts: limits.max_facts.max(1),
                max_departed: limits.max_departed.max(1),
            },
            scripts: Scripts::new(),
        })
    }

    /// How long one call may wait for Redis (connect, read and write; default 500 ms; a
    /// read that waits for an entry waits that much longer).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.link.set_timeout(timeout);
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.link.prefix()
    }

    /// The frame grid.
    pub fn frames(&self) -> NegotiatedFrames {
        self.frames
    }

    /// The limits.
    pub fn limits(&self) -> NegotiatedRelayLimits {
        self.limits
    }

    /// Every key the store holds now (all under `{PREFIX}:`), sorted: for tests and
    /// scripts checking that nothing outlives its frames.
    pub fn keys(&mut self) -> Result<Vec<String>, NegotiatedSharedStoreError> {
        let pattern = format!("{}*", glob_escape(&self.key("")));
        self.link.scan(&pattern).map_err(store_error)
    }

    /// The key `{PREFIX}:name`.
    fn key(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.link.prefix())
    }

    /// The clock arguments every writing script takes after the prefix (see
    /// `lua/common.lua`).
    fn clock(&self, now: Duration) -> Vec<String> {
        let frame = self.frames.duration();
        vec![
            as_us(now).to_string(),
            u64::try_from(now.as_millis())
                .unwrap_or(u64::MAX)
                .to_string(),
            self.frames.oldest_kept(now).to_string(),
            as_us(frame).to_string(),
            millis(frame * NEGOTIATED_LOG_KEPT_FRAMES),
            millis(frame * (NEGOTIATED_LOG_KEPT_FRAMES + 1)),
            millis(frame * NEGOTIATED_CONNECTION_KEPT_FRAMES),
        ]
    }

    /// Runs a writing script with the clock at `now`, then `args`.
    fn write(
        &mut self,
        pick: fn(&Scripts) -> &Script,
        now: Duration,
        args: &[&[u8]],
    ) -> Result<Vec<Vec<u8>>, NegotiatedSharedStoreError> {
        let clock = self.clock(now);
        let mut all: Vec<&[u8]> = clock.iter().map(|a| a.as_bytes()).collect();
        all.extend_from_slice(args);
        let meta = self.key("meta");
        self.link
            .run(pick(&self.scripts), &[&meta], &all)
            .map_err(store_error)
    }

    /// A connect or disconnect: the script's one position.
    fn connection_call(
        &mut self,
        pick: fn(&Scripts) -> &Script,
        player: PlayerId,
        connection: &NegotiatedConnection,
        now: Duration,
    ) -> Result<NegotiatedLogPosition, NegotiatedSharedStoreError> {
        let (player, connection) = (player.to_string(), connection.to_string());
        let reply = self.write(pick, now, &[player.as_bytes(), connection.as_bytes()])?;
        match reply.as_slice() {
            [at] => position(at),
            _ => Err(NegotiatedSharedStoreError::Corrupt(format!(
                "a connection call answered {} items",
                reply.len()
            ))),
        }
    }

    /// One read of the log after `after`, Behind when it was trimmed past.
    fn read_once(
        &mut self,
        after: NegotiatedLogPosition,
        max: usize,
    ) -> Result<Vec<NegotiatedLogEntry>, NegotiatedSharedStoreError> {
        let (from, count) = (after.to_string(), max.clamp(1, 1 << 20).to_string());
        let log = self.key("log");
        let reply: Vec<Vec<u8>> = self
            .link
            .run(
                &self.scripts.read,
                &[&log],
                &[from.as_bytes(), count.as_bytes()],
            )
            .map_err(store_error)?;
        let mut entries = log_read(after, &reply)?;
        entries.truncate(max);
        Ok(entries)
    }
}

impl NegotiatedSharedStore for NegotiatedRedisStore {
    fn post(
        &mut self,
        author: PlayerId,
        fact: &NegotiatedFact,
        now: Duration,
    ) -> Result<NegotiatedSharedVerdict, NegotiatedSharedStoreError> {
        let mut refused = None;
        if let NegotiatedFact::Request(r) = fact
            && let Err(refusal) = check_request(self.frames, r, now)
        {
            // never stored, so never a duplicate: no need to ask
            if refusal.kind == NegotiatedErrorKind::InvalidCategory {
                return Ok(NegotiatedSharedVerdict::Refused(
                    refusal,
                    NegotiatedLogPosition::START,
                ));
            }
            refused = Some(refusal);
        }
        let signed = NegotiatedSignedFact::new(author, fact.clone());
        let (frame, deadline) = match fact {
            NegotiatedFact::Request(r) => (r.frame.to_string(), String::new()),
            NegotiatedFact::Bid(b) => (String::new(), b.deadline_us.to_string()),
            _ => (String::new(), String::new()),
        };
        let texts = [
            signed.id().to_string(),
            kind_letter(fact.kind()).to_owned(),
            author.to_string(),
            frame,
            hex(fact.request()),
            hex(fact.bid()),
            deadline,
            self.limits.max_facts.to_string(),
            self.limits.max_facts_per_frame.to_string(),
            if refused.is_some() { "1" } else { "0" }.to_owned(),
        ];
        let bytes = codec::encode(&signed);
        let mut args: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        args.push(&bytes);
        let reply = self.write(|s| &s.post, now, &args)?;
        verdict(&self.limits, fact, refused, &reply)
    }

    fn connect(
        &mut self,
        player: PlayerId,
        connection: &NegotiatedConnection,
        now: Duration,
    ) -> Result<NegotiatedLogPosition, NegotiatedSharedStoreError> {
        self.connection_call(|s| &s.connect, player, connection, now)
    }

    fn disconnect(
        &mut self,
        player: PlayerId,
        connection: &NegotiatedConnection,
        now: Duration,
    ) -> Result<NegotiatedLogPosition, NegotiatedSharedStoreError> {
        self.connection_call(|s| &s.disconnect, player, connection, now)
    }

    fn read(
        &mut self,
        after: NegotiatedLogPosition,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<NegotiatedLogEntry>, NegotiatedSharedStoreError> {
        if wait.is_zero() {
            return self.read_once(after, max);
        }
        // a relay with nothing to do waits here: one command per wait while the log is
        // quiet, answered as soon as an entry comes
        let mut command = ::redis::cmd("XREAD");
        command
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(millis(wait))
            .arg("STREAMS")
            .arg(self.key("log"))
            .arg(after.to_string());
        let woken: ::redis::Value = self.link.command(&command, wait).map_err(store_error)?;
        if woken == ::redis::Value::Nil {
            return Ok(Vec::new());
        }
        self.read_once(after, max)
    }

    fn round_trips(&self) -> u64 {
        self.link.calls()
    }
}
