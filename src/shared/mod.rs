//! What both modes share: the size-limited codec, strike counting, the player id and
//! category names, the renet channel helper, the in-process link of the test harnesses,
//! the UDP transport helpers and the wall clock.
//!
//! Everything here but [`channel`], [`local_link`] and [`transport`] is plain Rust with no
//! Bevy in it.

pub mod channel;
pub mod clock;
pub mod codec;
pub mod gate;
pub mod guard;
pub mod harness;
pub mod local_link;
pub mod player;
pub mod transport;
