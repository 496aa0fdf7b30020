//! The game's own resources, besides what the matchmaking client plugin tracks
//! (`AtomicClientState` and `AtomicClientStatus`).

use std::net::SocketAddr;

use bevy::prelude::*;

use crate::identity::Identity;

/// How this game was started (command line, embedded server); never changes.
#[derive(Resource)]
pub struct LobbyConfig {
    /// The matchmaking server: `--server`, or the embedded one.
    pub server: SocketAddr,
    /// Whether `server` is the embedded server (with its bot) of this process.
    pub embedded: bool,
    /// The queue category.
    pub category: String,
    /// `--client-id` was given: keep that id when reconnecting.
    pub fixed_client_id: bool,
    /// The window title.
    pub title: String,
    /// How we connect: connect tokens minted for our id (the embedded server's in-memory
    /// key, or `--key-file`), or `--insecure`.
    pub identity: Identity,
}

/// Our netcode connection to the matchmaking server.
#[derive(Resource)]
pub struct Connection {
    /// Our player id, the one our connect token names (a fresh random one on each
    /// reconnection unless `--client-id` fixed it).
    pub client_id: u64,
    /// A connection attempt is under way (not yet welcomed).
    pub connecting: bool,
    /// A join request must be written (after connecting if needed).
    pub join_pending: bool,
    /// Connection attempts so far (the first is made on the first Find match).
    pub attempts: u32,
}

/// What the screens show besides the client plugin's state: whether the player is
/// searching or in the lobby screen, the size of the forming match, and a notice.
#[derive(Resource, Default)]
pub struct ScreenState {
    /// The player asked for a match and has not cancelled.
    pub searching: bool,
    /// The player entered the lobby screen of the current match.
    pub in_lobby: bool,
    /// How many players the forming match has (from the server's check).
    pub matching_players: u8,
    /// A message shown under the screen's text (cancellation, error).
    pub notice: Option<(String, Color)>,
}
