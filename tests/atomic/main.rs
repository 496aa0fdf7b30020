//! Integration tests of atomic matchmaking (features `server` and `client`), one module
//! per topic, in one binary so Bevy is linked once.

#[path = "../shared/cases.rs"]
mod cases;
mod cluster;
mod cluster_server;
mod common;
mod config_errors;
mod connect_on_click;
mod drain;
mod faults;
mod hostile;
mod identity;
mod inbox;
mod invariants;
mod pair;
mod plugin_order;
mod queue;
mod quickstart;
mod quiet;
mod rate_limit;
mod reflect;
#[path = "../shared/reflection.rs"]
mod reflection;
mod refusals;
mod removal;
mod requeue;
mod sessions;
mod settings;
mod setup_errors;
mod stalls;
mod statuses;
mod store_redis;
mod udp;
#[path = "../shared/wire.rs"]
mod wire;
