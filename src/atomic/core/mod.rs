//! The transport- and engine-agnostic core of atomic matchmaking: plain Rust, no game engine.
//!
//! The ECS plugins feed these types events and time; everything that decides who plays
//! whom, when a match commits and what goes on the wire lives here and is tested alone.

pub mod cluster;
pub mod commit;
pub mod lobby_code;
pub mod protocol;
pub mod queue;
pub mod stats;
pub mod store;
