//! The transport- and engine-agnostic core of negotiated matchmaking: plain Rust, no game engine.
//!
//! - [`fact`]: the five facts and their content ids;
//! - [`store`]: facts by frame;
//! - [`frame`]: frame math;
//! - [`clock`]: relay-clock estimation;
//! - [`machine`]: the client algorithm;
//! - [`relay_core`]: the relay's storage and routing;
//! - [`journal`]: where a relay records what it stored, to survive a restart;
//! - [`shared`]: a store several relays share, so that none is a single point of failure;
//! - [`protocol`]: wire messages.

pub mod clock;
pub mod fact;
pub mod frame;
pub mod journal;
pub mod machine;
pub mod protocol;
pub mod relay_core;
pub mod shared;
pub mod store;

#[cfg(test)]
mod scenarios;
