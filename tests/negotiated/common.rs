//! Helpers the negotiated tests share.

use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NEGOTIATED_PROTOCOL_VERSION, NegotiatedClientMessage,
};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;

/// A harness with 30 s frames and a 2 s bid timeout.
pub fn harness() -> NegotiatedTestHarness {
    NegotiatedTestHarness::with_frames(Duration::from_secs(30), Duration::from_secs(2))
}

/// Sends the hello of the current protocol version from a raw client.
pub fn hello(h: &mut NegotiatedTestHarness, id: PlayerId) {
    h.send_message(
        id,
        &NegotiatedClientMessage::Hello {
            protocol_version: NEGOTIATED_PROTOCOL_VERSION,
            config_fingerprint: 0,
        },
    );
}

/// Makes `id` search in "duel", runs until it holds a request and two more updates (the
/// request reached the relay); returns the request.
pub fn post_request(h: &mut NegotiatedTestHarness, id: PlayerId) -> NegotiatedFactId {
    h.search(id, "duel");
    h.run_until(20, |h| h.state(id) == NegotiatedClientState::Requesting);
    let request = h.status(id).request.unwrap();
    h.run(2);
    request
}
