//! What both modes share: the size-limited codec, the connection gate and strike counting,
//! the player id and category names, the renet channel helper, the connection watch of the
//! client plugins, the inbox of connections with news, the wall clock, and (feature `redis`)
//! the blocking Redis connection both modes' Redis stores run their scripts through.
//!
//! [`codec`], [`gate`], [`guard`], [`player`] and [`clock`] are plain Rust with no engine in
//! them; [`channel`], [`connect`], [`connection_config`], [`inbox`] and [`messages`] work with Bevy and renet. The
//! UDP transports live in [`crate::transport`] (feature `transport`), the in-process test
#![cfg_attr(
    feature = "testing",
    doc = "support in [`crate::testing`] (feature `testing`)."
)]
#![cfg_attr(
    not(feature = "testing"),
    doc = "support in `crate::testing` (feature `testing`)."
)]

pub mod channel;
pub mod clock;
pub mod codec;
pub mod conditions;
// the connection watch is the client plugins'; a server-only build keeps the target type
#[cfg_attr(not(any(feature = "client", feature = "negotiated")), allow(dead_code))]
pub mod connect;
pub mod connection_config;
pub mod gate;
pub mod guard;
// read by the server and the relay; a client-only build keeps the type its transports fill
#[cfg_attr(not(any(feature = "server", feature = "negotiated")), allow(dead_code))]
pub mod inbox;
pub mod messages;
pub mod player;
pub mod plugins;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod reflect;
// the server's and the relay's; a client-only build has neither
#[cfg_attr(not(any(feature = "server", feature = "negotiated")), allow(dead_code))]
pub(crate) mod server_link;
