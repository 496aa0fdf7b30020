//! [`NegotiatedRedisStore`] (feature `redis`): the
//! [`NegotiatedSharedStore`](crate::negotiated::core::shared::NegotiatedSharedStore) of
//! relays on several machines, on one Redis.
//!
//! The verdicts that must be unique are decided in Redis, in one atomic step: a post is one
//! Lua script that applies every storage rule of the relay (`relay_core`'s, in the same
//! order and with the same refusals as
//! [`NegotiatedMemorySharedStore`](crate::negotiated::core::shared::NegotiatedMemorySharedStore)),
//! stores the fact with its effects (a request closed by its requester's accept or cancel,
//! a bid answered by the first entitled accept, reject or withdrawal) and appends it to the
//! log, so two relays can never give opposite verdicts. The one rule that needs no store,
//! a request's category and frame, is checked by the relay before the script.
//!
//! # Round trips
//!
//! Each call runs one script: one round trip (`EVALSHA`; the first time a Redis sees the
//! script, or after a restarted Redis forgot it, the client loads it and runs it again).
//! A post is one, or none for a request with an invalid category; a connect or disconnect
//! is one; a read is one, or three when it waits for an entry (the read, an `XREAD BLOCK`,
//! the read again). [`NegotiatedRedisStore::keys`] is one per thousand keys.
//! [`round_trips`](crate::negotiated::core::shared::NegotiatedSharedStore::round_trips)
//! counts them.
//!
//! # Keys
//!
//! Everything lives under the one hash tag `{PREFIX}`, so every script's keys are in one
//! Redis Cluster slot (each script declares one of them in `KEYS`):
//!
//! | key | type | what | lives |
//! |---|---|---|---|
//! | `{P}:f:ID` | hash | a fact (`ID` its 16-hex id): kind `k`, author `a`, frame `fr`, request `rq`, encoded fact `v`; a request's `cl` (closed); a bid's deadline `dl`, first entitled answer `an`/`ai`, `dd` (its bidder departed) | until its frame is dropped |
//! | `{P}:fr:FRAME` | hash | facts in the frame `n`, each author's share `aAUTHOR` | until the frame is dropped |
//! | `{P}:frames` | sorted set | the frames held (for the store's total) | until the newest is dropped |
//! | `{P}:bids:PLAYER` | sorted set | the player's bids, by frame (marked when it departs) | until the newest is dropped |
//! | `{P}:log` | stream | the log: `t` `s` (stored; `v` the encoded fact), `c` (connected) or `d` (departed; `v` the player) | entries [`NEGOTIATED_LOG_KEPT_FRAMES`](crate::negotiated::core::shared::NEGOTIATED_LOG_KEPT_FRAMES) frames, the key one frame more after the last write |
//! | `{P}:meta` | hash | `floor` (the oldest frame kept), `trimmed` (the newest entry trimmed off the log) | as the log |
//! | `{P}:conn:PLAYER` | hash | the player's latest connection `id` (`relay#n`) and whether it is `open` | [`NEGOTIATED_CONNECTION_KEPT_FRAMES`] frames after its last write |
//!
//! A frame is dropped two frame durations after it ends, as a relay drops it
//! ([`NegotiatedFrames::oldest_kept`](crate::negotiated::core::frame::NegotiatedFrames::oldest_kept)):
//! its keys get the TTL to that moment in relay time, and from that moment (the `floor`,
//! moved by every post and departure) the scripts treat them as gone even if Redis still
//! holds them. Log entries have ids in relay time (milliseconds, never before the last
//! entry) and every write trims the entries older than the log keeps (`XTRIM MINID`); a
//! relay reading from before the newest trimmed entry, or from a log that expired
//! altogether, is told [`Behind`](crate::negotiated::core::shared::NegotiatedSharedStoreError::Behind)
//! and reads it again from the start. Nothing outlives the frames it is about: once no one
//! writes for [`NEGOTIATED_CONNECTION_KEPT_FRAMES`] frame durations the prefix is empty
//! ([`NegotiatedRedisStore::keys`]).
//!
//! # Limits
//!
//! - **One slot.** Every fact of every category is in one slot: one Redis's throughput
//!   (a script is a few dozen commands on small keys). Sharding by category, one tag per
//!   category with its own log, is the next step.
//! - **Persistence.** A Redis that restarts without its data loses every fact, as a relay
//!   without a journal does: an accept it stored is forgotten, and a withdrawal of the same
//!   bid can then be stored too. For the guarantee, run Redis with `appendonly yes` and
//!   `appendfsync always` (each script is then on disk before its verdict is sent), and
//!   fail over only to replicas that got every write (`WAIT`, or none).
//! - **Clocks.** Every relay sharing the store must run the same frame duration and
//!   limits and a clock close to wall-clock time: the frames, the log's ids and the TTLs
//!   are in relay time.
//! - **Connections.** A player's latest connection is remembered
//!   [`NEGOTIATED_CONNECTION_KEPT_FRAMES`] frames after its last connect or close: a close
//!   of an older connection noticed later than that is taken as a departure.

mod reply;
mod store;

pub use store::{NEGOTIATED_CONNECTION_KEPT_FRAMES, NegotiatedRedisStore};
