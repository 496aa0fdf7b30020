//! Atomic matchmaking: a server-authoritative queue and a two-phase commit.
//!
//! - [`core`]: the queue, the commit state machine, the wire protocol, lobby codes and
//!   statistics windows. Plain Rust, no Bevy.
//! - [`server`]: [`AtomicServerPlugin`](server::AtomicServerPlugin) for the
//!   dedicated server (feature `server`).
//! - [`cluster`]: a cluster of dedicated servers on one store, Redis with feature `redis`
//!   (feature `server`).
//! - [`client`]: [`AtomicClientPlugin`](client::AtomicClientPlugin) for the game
//!   (feature `client`).
//!
//! The in-process test harness of this mode is
#![cfg_attr(
    feature = "testing",
    doc = "[`crate::testing::atomic`] (feature `testing`)."
)]
#![cfg_attr(
    not(feature = "testing"),
    doc = "`crate::testing::atomic` (feature `testing`)."
)]

pub mod channel;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod cluster;
pub mod core;
mod reflect;
#[cfg(feature = "server")]
pub mod server;

pub use channel::{AtomicChannel, DEFAULT_ATOMIC_CHANNEL_ID};
