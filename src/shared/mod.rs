//! What both modes share: the size-limited codec, strike counting, the player id and
//! category names, the renet channel helper, the in-process link of the test harnesses,
//! the UDP transport helpers and the wall clock.
//!
//! [`codec`], [`gate`], [`guard`], [`player`] and [`clock`] are plain Rust with no engine in
//! them; [`channel`], [`local_link`], [`harness`] and [`transport`] work with Bevy and renet.

pub mod channel;
pub mod clock;
pub mod codec;
pub mod connect;
pub mod gate;
pub mod guard;
pub mod harness;
pub mod inbox;
pub mod local_link;
pub mod messages;
pub mod player;
pub mod transport;
