//! The run conditions of the plugins, one per side, shared by both modes.

use bevy::prelude::*;
use bevy_renet::{RenetClient, RenetServer};

/// True while the app has a [`RenetServer`]: the atomic server's and the relay's systems
/// run only then (an app may insert its server later, or remove it to stop serving).
pub fn server_exists(server: Option<Res<RenetServer>>) -> bool {
    server.is_some()
}

/// True while the app has a [`RenetClient`]: the client plugins send only then (their
/// receive systems always run, to notice a client that went away).
pub fn client_exists(client: Option<Res<RenetClient>>) -> bool {
    client.is_some()
}
