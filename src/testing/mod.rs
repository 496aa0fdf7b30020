//! Test support (feature `testing`): everything a test or a fault-injecting tool needs and a
//! game never does.
//!
//! - [`harness`]: the in-process harness both modes build on (one server app and N client
//!   apps over renet's local connections, manual time, seeded faults, recording);
//! - [`local_link`]: the in-process link with its fault model (loss, delay, jitter,
//!   duplication, reordering, stalls), which the `conditioner` example reuses over UDP;
//! - [`atomic`]: [`AtomicTestHarness`](atomic::AtomicTestHarness) and the client faults
//!   ([`AtomicClientFaults`](crate::atomic::client::AtomicClientFaults)) it drives (features
//!   `server` and `client`);
//! - [`store_suite`]: the suite every atomic store passes, and the interleaving of several
//!   nodes against one store;
//! - [`cluster_sim`]: a cluster of nodes on one store with simulated players and faults,
//!   its guarantees checked at every step;
//! - [`partitioned_store`]: a store a test can cut a node off from;
//! - `redis_server` (feature `redis`): a throwaway `redis-server` for tests;
//! - [`negotiated_shared_suite`]: the suite every negotiated shared store passes, and the
//!   differential run of two stores (feature `negotiated`);
//! - [`negotiated`]: [`NegotiatedTestHarness`](negotiated::NegotiatedTestHarness) and the
//!   client clock skew (feature `negotiated`).

#[cfg(all(feature = "server", feature = "client"))]
pub mod atomic;
pub mod cluster_sim;
pub mod harness;
pub mod local_link;
#[cfg(feature = "negotiated")]
pub mod negotiated;
#[cfg(feature = "negotiated")]
pub mod negotiated_shared_suite;
pub mod partitioned_store;
#[cfg(feature = "redis")]
pub mod redis_server;
pub mod store_suite;
