//! Integration and property tests of negotiated matchmaking (feature `negotiated`), one
//! module per topic, in one binary so Bevy is linked once.

mod bad_input;
mod bid_timeout;
mod cancel;
#[path = "../shared/cases.rs"]
mod cases;
mod clock_skew;
mod common;
mod crowd;
mod drain;
mod expiry;
mod failover;
mod faults;
mod forgery;
mod mutual;
mod pair;
mod promise;
mod properties;
mod rate_limit;
mod reflect;
#[path = "../shared/reflection.rs"]
mod reflection;
mod reject;
mod relay_restart;
mod setup_errors;
mod shared_redis;
mod shared_relays;
mod sim;
mod tie_break;
mod udp;
#[path = "../shared/wire.rs"]
mod wire;
