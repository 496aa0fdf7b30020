//! Atomic matchmaking as a cluster of dedicated servers (feature `server`; Redis with
//! feature `redis`).
//!
//! - [`AtomicClusterServerPlugin`]: a server app as one node of a cluster, in place of the
//!   single server's plugin (same protocol for clients).
//! - [`AtomicClusterBackend`]: where the nodes' shared store and inboxes live: Redis, on
//!   each node's own thread (never the frame), or in memory for nodes in one process.
//! - `AtomicRedisStore` (feature `redis`): the
//!   [`AtomicStore`](crate::atomic::core::store::AtomicStore) of a cluster, every operation
//!   one Lua script.
//! - `AtomicRedisInbox` (feature `redis`): the
//!   [`AtomicClusterInbox`](crate::atomic::core::cluster::AtomicClusterInbox) of a
//!   cluster, one Redis stream per node read by a consumer group.
//!
//! The rules (who coordinates a match, what a dead node or an unreachable store does) are
//! in the engine-free [`core::cluster`](crate::atomic::core::cluster).

#[cfg(feature = "redis")]
mod inbox;
mod plugin;
mod runner;
#[cfg(feature = "redis")]
mod store;

#[cfg(feature = "redis")]
pub use inbox::AtomicRedisInbox;
pub use plugin::{
    AtomicClusterClose, AtomicClusterMatchOutcome, AtomicClusterServer, AtomicClusterServerPlugin,
    AtomicClusterServerSystems,
};
pub use runner::{AtomicClusterBackend, AtomicClusterOpen, AtomicClusterParts};
#[cfg(feature = "redis")]
pub use store::AtomicRedisStore;
