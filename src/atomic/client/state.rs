//! What the client knows: the public [`AtomicClientState`], [`AtomicClientStatus`]
//! and [`AtomicClientFaults`], the plugin's own per-connection [`ClientSession`], and the
//! status changes the server's messages cause.

use std::time::Duration;

use bevy::prelude::*;

use super::messages::{AtomicClientError, AtomicMatchCancelled, AtomicMatchFound};
use crate::shared::player::PlayerId;

/// Where the client stands; drive the UI from it.
#[derive(States, Reflect, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[reflect(Debug, Clone, PartialEq, Hash, Default)]
pub enum AtomicClientState {
    /// No connection, or the server has not accepted the hello yet.
    #[default]
    Disconnected,
    /// Connected, not queued.
    Idle,
    /// Holding a ticket.
    Queued,
    /// Taken into a forming match (health check or proposal).
    Matching,
    /// In the lobby of a committed match.
    Matched,
    /// The server said it is closing (it drains): no ticket, and none will be taken.
    /// Reconnect elsewhere; the state goes back to `Disconnected` when the connection
    /// closes.
    ServerClosing,
}

/// Details behind [`AtomicClientState`].
#[derive(Resource, Reflect, Debug, Clone, Default)]
#[reflect(Resource, Debug, Clone, Default)]
pub struct AtomicClientStatus {
    /// The id the server knows this player by, once welcomed.
    pub player: Option<PlayerId>,
    /// The category queued or matched in.
    pub category: Option<String>,
    /// Last known 1-based queue position.
    pub position: Option<u32>,
    /// How long the player has been waiting since it first joined (kept across
    /// re-queues); zero when not waiting.
    pub waited: Duration,
    /// The match being formed or committed.
    pub match_id: Option<u64>,
    /// The committed match.
    pub found: Option<AtomicMatchFound>,
    /// The last cancellation.
    pub last_cancel: Option<AtomicMatchCancelled>,
    /// The last error.
    pub last_error: Option<AtomicClientError>,
    /// When the player first joined the queue (real time since the app started); kept
    /// across re-queues, `None` when not waiting.
    queued_since: Option<Duration>,
}

impl AtomicClientStatus {
    /// We hold a ticket at `position` in `category`: the waiting clock starts at `now`
    /// unless this is a re-queue while it already runs.
    pub(super) fn hold_ticket(
        &mut self,
        now: Duration,
        category: &str,
        position: u32,
        requeued: bool,
    ) {
        if !requeued || self.queued_since.is_none() {
            self.queued_since = Some(now);
        }
        self.category = Some(category.to_owned());
        self.position = Some(position);
        self.match_id = None;
    }

    /// The ticket was taken into forming match `match_id`; the waiting clock keeps running.
    pub(super) fn enter_match(&mut self, match_id: u64) {
        self.match_id = Some(match_id);
        self.position = None;
    }

    /// The match committed: we are in its lobby and no longer waiting.
    pub(super) fn commit_match(&mut self, found: &AtomicMatchFound) {
        self.category = Some(found.category.clone());
        self.match_id = Some(found.match_id);
        self.stop_waiting();
        self.found = Some(found.clone());
    }

    /// The match was rolled back; unless re-queued we are no longer waiting.
    pub(super) fn cancel_match(&mut self, cancelled: &AtomicMatchCancelled) {
        self.match_id = None;
        self.last_cancel = Some(cancelled.clone());
        if !cancelled.requeued {
            self.stop_waiting();
        }
    }

    /// We left the committed match's lobby.
    pub(super) fn leave_lobby(&mut self) {
        self.found = None;
        self.match_id = None;
    }

    /// No ticket any more: the waiting clock stops and resets, the position is forgotten.
    pub(super) fn stop_waiting(&mut self) {
        self.queued_since = None;
        self.position = None;
        self.waited = Duration::ZERO;
    }
}

/// Settings of the client plugin (a resource: insert your own before adding the plugin, or
/// change it at run time).
///
/// ```
/// use std::time::Duration;
/// use bevy::prelude::*;
/// use bevy_atomic_matchmaking::prelude::*;
///
/// let mut game = App::new();
/// game.add_plugins(MinimalPlugins)
///     .insert_resource(AtomicClientSettings {
///         connect_timeout: Duration::from_secs(3),
///     })
///     .add_plugins(AtomicClientPlugin::default());
/// ```
#[derive(Resource, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Resource, Debug, Clone, PartialEq, Default)]
pub struct AtomicClientSettings {
    /// How long a connection may take to open before the game gets a
    /// [`AtomicErrorKind::ConnectFailed`](crate::atomic::core::protocol::AtomicErrorKind::ConnectFailed)
    /// error (sooner when netcode gives up first). Default 5 s, within netcode's own 15 s.
    pub connect_timeout: Duration,
}

impl Default for AtomicClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: crate::shared::connect::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Fault injection for tests and load generation (feature `testing`): makes this client
/// misbehave the way real clients do. With the feature, the plugin inserts the default (no
/// fault); without it, the type is not public and the client never misbehaves.
#[derive(Resource, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Resource, Debug, Clone, PartialEq, Default)]
pub struct AtomicClientFaults {
    /// Answer health pings this much later.
    pub pong_delay: Duration,
    /// Never answer health pings.
    pub ignore_pings: bool,
    /// Acknowledge match proposals (default true).
    pub acknowledge_proposals: bool,
}

impl Default for AtomicClientFaults {
    fn default() -> Self {
        Self {
            pong_delay: Duration::ZERO,
            ignore_pings: false,
            acknowledge_proposals: true,
        }
    }
}

/// The plugin's own bookkeeping for one connection (reset when it is lost).
#[derive(Resource, Debug, Default)]
pub(super) struct ClientSession {
    /// The renet client was connected last frame.
    pub(super) connected: bool,
    /// The server accepted our hello: requests can be sent.
    pub(super) welcomed: bool,
    /// A category the game asked to join before the server welcomed us.
    pub(super) pending_join: Option<String>,
    /// Pongs to send: (when, nonce).
    pub(super) pending_pongs: Vec<(Duration, u64)>,
    /// The lobby of the committed match we are in.
    pub(super) lobby_id: Option<u64>,
}

/// Keeps [`AtomicClientStatus::waited`] current while the player waits.
pub(super) fn update_waited(time: Res<Time<Real>>, mut status: ResMut<AtomicClientStatus>) {
    if let Some(since) = status.queued_since {
        let waited = time.elapsed().saturating_sub(since);
        if status.waited != waited {
            status.waited = waited;
        }
    }
}
