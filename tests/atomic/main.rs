//! Integration tests of atomic matchmaking (features `server` and `client`), one module
//! per topic, in one binary so Bevy is linked once.

mod common;
mod hostile;
mod invariants;
mod pair;
mod queue;
mod statuses;
mod udp;
