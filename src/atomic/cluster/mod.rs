//! Atomic matchmaking as a cluster of servers on one Redis (feature `redis`).
//!
//! - [`AtomicRedisStore`]: the [`AtomicStore`](crate::atomic::core::store::AtomicStore)
//!   of a cluster, every operation one Lua script.
//!
//! The store's calls block; a server runs them on a bridge thread, never on the frame.

mod store;

pub use store::AtomicRedisStore;
