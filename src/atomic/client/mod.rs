//! The client side of atomic matchmaking: [`MatchmakingClientPlugin`].
//!
//! The game writes [`MatchmakingJoinQueue`], [`MatchmakingLeaveQueue`] and
//! [`MatchmakingLeaveLobby`] messages; the plugin says hello, answers health pings,
//! acknowledges proposals, keeps [`MatchmakingClientState`] and [`MatchmakingClientStatus`]
//! current and reports what happens as Bevy messages.

use std::time::Duration;

use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_renet::{RenetClient, RenetClientPlugin, RenetReceive};

use crate::atomic::MatchmakingChannel;
use crate::atomic::core::commit::MatchStatus;
use crate::atomic::core::protocol::{
    ClientMessage, MatchCancelReason, MatchedPlayer, MatchmakingErrorKind, PROTOCOL_VERSION,
    ServerMessage,
};
use crate::shared::codec;
use crate::shared::player::PlayerId;

/// Where the client stands; drive the UI from it.
#[derive(States, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MatchmakingClientState {
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
}

/// Details behind [`MatchmakingClientState`].
#[derive(Resource, Debug, Clone, Default)]
pub struct MatchmakingClientStatus {
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
    pub found: Option<MatchmakingMatchFound>,
    /// The last cancellation.
    pub last_cancel: Option<MatchmakingMatchCancelled>,
    /// The last error.
    pub last_error: Option<MatchmakingClientError>,
    queued_since: Option<Duration>,
}

/// Fault injection for tests and load generation: makes this client misbehave the way
/// real clients do. Leave at the default in a game.
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingClientFaults {
    /// Answer health pings this much later.
    pub pong_delay: Duration,
    /// Never answer health pings.
    pub ignore_pings: bool,
    /// Acknowledge match proposals (default true).
    pub acknowledge_proposals: bool,
}

impl Default for MatchmakingClientFaults {
    fn default() -> Self {
        Self {
            pong_delay: Duration::ZERO,
            ignore_pings: false,
            acknowledge_proposals: true,
        }
    }
}

/// Game → plugin: take a ticket in this category (sent once the server welcomed us).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingJoinQueue {
    /// The category.
    pub category: String,
}

/// Game → plugin: give up the ticket, or withdraw from a match still forming.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatchmakingLeaveQueue;

/// Game → plugin: leave the lobby of the committed match.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatchmakingLeaveLobby;

/// The server accepted our hello.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingConnected {
    /// Our player id.
    pub player: PlayerId,
}

/// We hold a ticket.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingQueueJoined {
    /// The category.
    pub category: String,
    /// 1-based position.
    pub position: u32,
    /// Whether this is a priority re-queue after a cancelled match.
    pub requeued: bool,
}

/// Our ticket is gone without a match (we asked).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingQueueLeft {
    /// The category.
    pub category: String,
}

/// We were taken into a forming match: the server is checking every player.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingMatchChecking {
    /// The match.
    pub match_id: u64,
    /// The category.
    pub category: String,
    /// Players in the match.
    pub players: u8,
}

/// Phase 2: the server proposed the match (the plugin acknowledges it).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingMatchProposed {
    /// The match.
    pub match_id: u64,
    /// The lobby.
    pub lobby_id: u64,
    /// The lobby code.
    pub lobby_code: String,
    /// 1-based attempt.
    pub attempt: u32,
}

/// The match is committed: every player acknowledged.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingMatchFound {
    /// The match.
    pub match_id: u64,
    /// The lobby.
    pub lobby_id: u64,
    /// The lobby code.
    pub lobby_code: String,
    /// The category.
    pub category: String,
    /// Our own entry (with our measured latency).
    pub me: MatchedPlayer,
    /// The other players, in match order.
    pub others: Vec<MatchedPlayer>,
}

/// The match was rolled back.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingMatchCancelled {
    /// The match.
    pub match_id: u64,
    /// The rollback status.
    pub status: MatchStatus,
    /// Why, for us.
    pub reason: MatchCancelReason,
    /// Whether we are back at the front of the queue.
    pub requeued: bool,
}

/// We left the lobby.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingLobbyLeft {
    /// The lobby.
    pub lobby_id: u64,
}

/// Something went wrong: refused by the server, or a local problem.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingClientError {
    /// What.
    pub kind: MatchmakingErrorKind,
    /// For humans.
    pub message: String,
}

/// System sets of the client plugin.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchmakingClientSystems {
    /// `PreUpdate`, after [`RenetReceive`]: says hello on connect, decodes server
    /// messages, answers pings and proposals, updates state and writes messages.
    Receive,
    /// `Update`: sends the game's requests and delayed pongs, updates the waited time.
    Send,
}

/// The client side of atomic matchmaking.
///
/// Needs a [`RenetClient`] resource (with a transport, or a local client in tests) whose
/// connection config includes the [`MatchmakingChannel`]. Adds bevy_renet's
/// [`RenetClientPlugin`] and Bevy's `StatesPlugin` if the app has not.
#[derive(Debug, Clone, Default)]
pub struct MatchmakingClientPlugin {
    /// The channel carrying matchmaking messages.
    pub channel: MatchmakingChannel,
}

impl Plugin for MatchmakingClientPlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<RenetClientPlugin>() {
            app.add_plugins(RenetClientPlugin);
        }
        if !app.is_plugin_added::<StatesPlugin>() {
            app.add_plugins(StatesPlugin);
        }
        app.insert_resource(self.channel)
            .init_state::<MatchmakingClientState>()
            .init_resource::<MatchmakingClientStatus>()
            .init_resource::<MatchmakingClientFaults>()
            .init_resource::<ClientSession>()
            .add_message::<MatchmakingJoinQueue>()
            .add_message::<MatchmakingLeaveQueue>()
            .add_message::<MatchmakingLeaveLobby>()
            .add_message::<MatchmakingConnected>()
            .add_message::<MatchmakingQueueJoined>()
            .add_message::<MatchmakingQueueLeft>()
            .add_message::<MatchmakingMatchChecking>()
            .add_message::<MatchmakingMatchProposed>()
            .add_message::<MatchmakingMatchFound>()
            .add_message::<MatchmakingMatchCancelled>()
            .add_message::<MatchmakingLobbyLeft>()
            .add_message::<MatchmakingClientError>()
            .configure_sets(
                PreUpdate,
                MatchmakingClientSystems::Receive.after(RenetReceive),
            )
            .add_systems(
                PreUpdate,
                (track_connection, receive_messages)
                    .chain()
                    .in_set(MatchmakingClientSystems::Receive),
            )
            .add_systems(
                Update,
                (send_requests, send_due_pongs, update_waited)
                    .in_set(MatchmakingClientSystems::Send)
                    .run_if(resource_exists::<RenetClient>),
            );
    }
}

/// Per-connection bookkeeping.
#[derive(Resource, Debug, Default)]
struct ClientSession {
    connected: bool,
    welcomed: bool,
    pending_join: Option<String>,
    pending_pongs: Vec<(Duration, u64)>,
    lobby_id: Option<u64>,
}

fn send(client: &mut RenetClient, channel: &MatchmakingChannel, message: &ClientMessage) {
    client.send_message(channel.id, codec::encode(message));
}

fn track_connection(
    client: Option<ResMut<RenetClient>>,
    channel: Res<MatchmakingChannel>,
    mut session: ResMut<ClientSession>,
    mut status: ResMut<MatchmakingClientStatus>,
    state: Res<State<MatchmakingClientState>>,
    mut next: ResMut<NextState<MatchmakingClientState>>,
    mut errors: MessageWriter<MatchmakingClientError>,
) {
    let connected = client.as_ref().is_some_and(|c| c.is_connected());
    if connected && !session.connected {
        let mut client = client.expect("connected");
        send(
            &mut client,
            &channel,
            &ClientMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
            },
        );
    } else if !connected && session.connected {
        let pending_join = session.pending_join.take();
        *session = ClientSession {
            pending_join,
            ..default()
        };
        *status = MatchmakingClientStatus::default();
        if *state.get() != MatchmakingClientState::Disconnected {
            next.set(MatchmakingClientState::Disconnected);
        }
        errors.write(MatchmakingClientError {
            kind: MatchmakingErrorKind::Connection,
            message: "lost the connection to the matchmaking server".into(),
        });
    }
    session.connected = connected;
}

/// Where received messages go.
#[derive(bevy::ecs::system::SystemParam)]
struct ClientOutputs<'w> {
    connected: MessageWriter<'w, MatchmakingConnected>,
    joined: MessageWriter<'w, MatchmakingQueueJoined>,
    left: MessageWriter<'w, MatchmakingQueueLeft>,
    checking: MessageWriter<'w, MatchmakingMatchChecking>,
    proposed: MessageWriter<'w, MatchmakingMatchProposed>,
    found: MessageWriter<'w, MatchmakingMatchFound>,
    cancelled: MessageWriter<'w, MatchmakingMatchCancelled>,
    lobby_left: MessageWriter<'w, MatchmakingLobbyLeft>,
    errors: MessageWriter<'w, MatchmakingClientError>,
}

fn receive_messages(
    client: Option<ResMut<RenetClient>>,
    channel: Res<MatchmakingChannel>,
    faults: Res<MatchmakingClientFaults>,
    time: Res<Time<Real>>,
    mut session: ResMut<ClientSession>,
    mut status: ResMut<MatchmakingClientStatus>,
    mut next: ResMut<NextState<MatchmakingClientState>>,
    mut out: ClientOutputs,
) {
    let Some(mut client) = client else {
        return;
    };
    let now = time.elapsed();
    while let Some(bytes) = client.receive_message(channel.id) {
        let message = match codec::decode::<ServerMessage>(&bytes) {
            Ok(message) => message,
            Err(err) => {
                out.errors.write(MatchmakingClientError {
                    kind: MatchmakingErrorKind::Malformed,
                    message: format!("undecodable message from the server: {err}"),
                });
                continue;
            }
        };
        match message {
            ServerMessage::Welcome { player, .. } => {
                session.welcomed = true;
                status.player = Some(player);
                next.set(MatchmakingClientState::Idle);
                out.connected.write(MatchmakingConnected { player });
                if let Some(category) = session.pending_join.take() {
                    send(
                        &mut client,
                        &channel,
                        &ClientMessage::JoinQueue { category },
                    );
                }
            }
            ServerMessage::QueueJoined {
                category,
                position,
                requeued,
            } => {
                if !requeued || status.queued_since.is_none() {
                    status.queued_since = Some(now);
                }
                status.category = Some(category.clone());
                status.position = Some(position);
                status.match_id = None;
                next.set(MatchmakingClientState::Queued);
                out.joined.write(MatchmakingQueueJoined {
                    category,
                    position,
                    requeued,
                });
            }
            ServerMessage::QueueLeft { category, .. } => {
                status.queued_since = None;
                status.position = None;
                status.waited = Duration::ZERO;
                next.set(MatchmakingClientState::Idle);
                out.left.write(MatchmakingQueueLeft { category });
            }
            ServerMessage::MatchChecking {
                match_id,
                category,
                players,
            } => {
                status.match_id = Some(match_id);
                status.position = None;
                next.set(MatchmakingClientState::Matching);
                out.checking.write(MatchmakingMatchChecking {
                    match_id,
                    category,
                    players,
                });
            }
            ServerMessage::Ping { nonce } => {
                if !faults.ignore_pings {
                    session.pending_pongs.push((now + faults.pong_delay, nonce));
                }
            }
            ServerMessage::MatchProposed {
                match_id,
                lobby_id,
                lobby_code,
                attempt,
            } => {
                if faults.acknowledge_proposals {
                    send(
                        &mut client,
                        &channel,
                        &ClientMessage::Acknowledge { match_id, lobby_id },
                    );
                }
                out.proposed.write(MatchmakingMatchProposed {
                    match_id,
                    lobby_id,
                    lobby_code,
                    attempt,
                });
            }
            ServerMessage::MatchFound {
                match_id,
                lobby_id,
                lobby_code,
                category,
                players,
            } => {
                let me_id = status.player;
                let (mine, others): (Vec<MatchedPlayer>, Vec<MatchedPlayer>) =
                    players.into_iter().partition(|p| Some(p.player) == me_id);
                let Some(me) = mine.into_iter().next() else {
                    out.errors.write(MatchmakingClientError {
                        kind: MatchmakingErrorKind::Unexpected,
                        message: format!("match {match_id} confirmed without us in it"),
                    });
                    continue;
                };
                let found = MatchmakingMatchFound {
                    match_id,
                    lobby_id,
                    lobby_code,
                    category: category.clone(),
                    me,
                    others,
                };
                session.lobby_id = Some(lobby_id);
                status.category = Some(category);
                status.match_id = Some(match_id);
                status.queued_since = None;
                status.position = None;
                status.waited = Duration::ZERO;
                status.found = Some(found.clone());
                next.set(MatchmakingClientState::Matched);
                out.found.write(found);
            }
            ServerMessage::MatchCancelled {
                match_id,
                status: match_status,
                reason,
                requeued,
            } => {
                let cancelled = MatchmakingMatchCancelled {
                    match_id,
                    status: match_status,
                    reason,
                    requeued,
                };
                status.match_id = None;
                status.last_cancel = Some(cancelled.clone());
                if requeued {
                    next.set(MatchmakingClientState::Queued);
                } else {
                    status.queued_since = None;
                    status.waited = Duration::ZERO;
                    status.position = None;
                    next.set(MatchmakingClientState::Idle);
                }
                out.cancelled.write(cancelled);
            }
            ServerMessage::LobbyLeft { lobby_id } => {
                session.lobby_id = None;
                status.found = None;
                status.match_id = None;
                next.set(MatchmakingClientState::Idle);
                out.lobby_left.write(MatchmakingLobbyLeft { lobby_id });
            }
            ServerMessage::Error { kind, message } => {
                warn!("matchmaking server refused a request ({kind:?}): {message}");
                let error = MatchmakingClientError { kind, message };
                status.last_error = Some(error.clone());
                out.errors.write(error);
            }
        }
    }
}

fn send_requests(
    mut client: ResMut<RenetClient>,
    channel: Res<MatchmakingChannel>,
    mut session: ResMut<ClientSession>,
    mut joins: MessageReader<MatchmakingJoinQueue>,
    mut leaves: MessageReader<MatchmakingLeaveQueue>,
    mut lobby_leaves: MessageReader<MatchmakingLeaveLobby>,
    mut errors: MessageWriter<MatchmakingClientError>,
) {
    for join in joins.read() {
        if session.welcomed {
            send(
                &mut client,
                &channel,
                &ClientMessage::JoinQueue {
                    category: join.category.clone(),
                },
            );
        } else {
            // joins as soon as the server welcomes us
            session.pending_join = Some(join.category.clone());
        }
    }
    for _ in leaves.read() {
        if session.welcomed {
            send(&mut client, &channel, &ClientMessage::LeaveQueue);
        } else {
            session.pending_join = None;
        }
    }
    for _ in lobby_leaves.read() {
        match session.lobby_id {
            Some(lobby_id) if session.welcomed => {
                send(
                    &mut client,
                    &channel,
                    &ClientMessage::LeaveLobby { lobby_id },
                );
            }
            _ => {
                errors.write(MatchmakingClientError {
                    kind: MatchmakingErrorKind::NotAMember,
                    message: "not in a lobby".into(),
                });
            }
        }
    }
}

fn send_due_pongs(
    mut client: ResMut<RenetClient>,
    channel: Res<MatchmakingChannel>,
    time: Res<Time<Real>>,
    mut session: ResMut<ClientSession>,
) {
    let now = time.elapsed();
    session.pending_pongs.retain(|(due, nonce)| {
        if now >= *due {
            send(
                &mut client,
                &channel,
                &ClientMessage::Pong { nonce: *nonce },
            );
            false
        } else {
            true
        }
    });
}

fn update_waited(time: Res<Time<Real>>, mut status: ResMut<MatchmakingClientStatus>) {
    if let Some(since) = status.queued_since {
        let waited = time.elapsed().saturating_sub(since);
        if status.waited != waited {
            status.waited = waited;
        }
    }
}
