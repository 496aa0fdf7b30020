//! Server-authoritative atomic matchmaking: [`MatchmakingServerPlugin`].
//!
//! The plugin reads the matchmaking channel of every connection, keeps the per-category
//! queues, forms a match entity ([`MatchmakingMatch`]) whenever a category holds enough
//! players and advances each match's two-phase commit every frame. Committed matches leave
//! a lobby entity ([`MatchmakingLobby`]) that lives until its last member leaves or the game
//! despawns it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bevy::prelude::*;
use bevy_renet::renet::ServerEvent;
use bevy_renet::{RenetReceive, RenetServer, RenetServerEvent, RenetServerPlugin};

use crate::atomic::MatchmakingChannel;
use crate::atomic::core::commit::{
    CommitAction, CommitMachine, CommitOutcome, CommitTimings, HealthCheck, MatchStatus,
    PlayerReport,
};
use crate::atomic::core::lobby_code::generate_lobby_code;
use crate::atomic::core::protocol::{
    ClientMessage, MAX_PLAYERS_PER_MATCH, MatchCancelReason, MatchedPlayer, MatchmakingErrorKind,
    PROTOCOL_VERSION, QueueLeftReason, ServerMessage,
};
use crate::atomic::core::queue::{MatchQueue, QueueError, QueueTicket};
use crate::atomic::core::stats::DurationWindow;
use crate::shared::codec::{self, CodecError};
use crate::shared::guard::{StrikeGuard, StrikeVerdict};
use crate::shared::player::{PlayerId, validate_category};

/// Server settings. Change the resource at run time: new matches use the new values,
/// matches already forming keep the timings they started with.
#[derive(Resource, Debug, Clone, PartialEq)]
pub struct MatchmakingServerSettings {
    /// How long a player has to answer the health ping (seed: 2 s).
    pub ping_timeout: Duration,
    /// Highest acceptable health-ping round trip (seed: 500 ms).
    pub max_latency: Duration,
    /// How long to wait for each proposal acknowledgement (seed: 2 s).
    pub notification_timeout: Duration,
    /// Proposal attempts per player (seed: 3).
    pub notification_attempts: u32,
    /// Pause between a timed-out proposal and the next attempt (seed: 100 ms).
    pub notification_backoff: Duration,
    /// Players per match, 2..=16 (default 2). Values outside are clamped.
    pub players_per_match: usize,
    /// Most tickets one category holds; joins beyond it get `QueueFull`. Priority
    /// re-queues after a rollback always fit.
    pub queue_capacity: usize,
    /// Bad messages (undecodable, oversized, before hello) a connection may send before
    /// it is disconnected.
    pub max_strikes: u32,
    /// How long a connection refused for a version mismatch or abuse stays open so that
    /// the error reaches it.
    pub disconnect_grace: Duration,
}

impl Default for MatchmakingServerSettings {
    fn default() -> Self {
        let timings = CommitTimings::default();
        Self {
            ping_timeout: timings.ping_timeout,
            max_latency: timings.max_latency,
            notification_timeout: timings.notification_timeout,
            notification_attempts: timings.notification_attempts,
            notification_backoff: timings.notification_backoff,
            players_per_match: 2,
            queue_capacity: 10_000,
            max_strikes: 3,
            disconnect_grace: Duration::from_millis(250),
        }
    }
}

impl MatchmakingServerSettings {
    /// The commit timings a new match snapshots.
    pub fn timings(&self) -> CommitTimings {
        CommitTimings {
            ping_timeout: self.ping_timeout,
            max_latency: self.max_latency,
            notification_timeout: self.notification_timeout,
            notification_attempts: self.notification_attempts.max(1),
            notification_backoff: self.notification_backoff,
        }
    }

    /// Players per match, clamped to 2..=16.
    pub fn group_size(&self) -> usize {
        self.players_per_match.clamp(2, MAX_PLAYERS_PER_MATCH)
    }
}

/// Live numbers about the server. Updated as things happen; percentiles on demand.
#[derive(Resource, Debug, Clone, Default)]
pub struct MatchmakingServerStats {
    /// Tickets per category (only non-empty categories).
    pub players_queued: BTreeMap<String, usize>,
    /// Match entities in phase 1 or 2.
    pub matches_in_flight: usize,
    /// Lobby entities alive.
    pub lobbies_open: usize,
    /// Matches formed since start.
    pub matches_formed: u64,
    /// Matches committed since start.
    pub matches_committed: u64,
    /// Matches rolled back since start.
    pub matches_rolled_back: u64,
    /// Rollbacks by [`MatchStatus::as_str`].
    pub rollbacks_by_status: BTreeMap<&'static str, u64>,
    /// Players put back at the front of a queue since start.
    pub players_requeued: u64,
    /// Connections closed for a version mismatch or abuse.
    pub connections_refused: u64,
    /// From first joining the queue to being taken into a match (per player).
    pub time_in_queue: DurationWindow,
    /// From a match forming to its commit (per committed match).
    pub time_to_commit: DurationWindow,
}

impl MatchmakingServerStats {
    /// Tickets over all categories.
    pub fn total_queued(&self) -> usize {
        self.players_queued.values().sum()
    }
}

/// A match being formed: its entity lives from formation until commit or rollback.
#[derive(Component, Debug)]
pub struct MatchmakingMatch {
    match_id: u64,
    category: String,
    tickets: Vec<QueueTicket<PlayerId>>,
    machine: CommitMachine<PlayerId>,
    formed_at: Duration,
    lobby: Option<MatchLobby>,
}

/// The lobby phase 2 created for a match.
#[derive(Debug, Clone)]
struct MatchLobby {
    entity: Entity,
    lobby_id: u64,
    code: String,
}

impl MatchmakingMatch {
    /// The match id.
    pub fn match_id(&self) -> u64 {
        self.match_id
    }

    /// The category.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The players in match order (the first hosts).
    pub fn players(&self) -> impl Iterator<Item = PlayerId> + '_ {
        self.machine.players()
    }

    /// The commit state machine (read only).
    pub fn machine(&self) -> &CommitMachine<PlayerId> {
        &self.machine
    }

    /// The lobby entity, once phase 2 created it.
    pub fn lobby(&self) -> Option<Entity> {
        self.lobby.as_ref().map(|l| l.entity)
    }
}

/// A lobby: created in phase 2, deleted on rollback, kept after commit until its last
/// member leaves. Despawn the entity to close it (members are freed).
#[derive(Component, Debug, Clone)]
pub struct MatchmakingLobby {
    /// Unique id.
    pub lobby_id: u64,
    /// Short human-readable code, unique among open lobbies.
    pub code: String,
    /// The category it was formed in.
    pub category: String,
    /// The hosting player (first in match order).
    pub host: PlayerId,
    /// Players in the lobby.
    pub members: Vec<PlayerId>,
    /// The match that created it.
    pub match_id: u64,
    /// Whether the match committed (false while phase 2 runs).
    pub committed: bool,
}

/// One player's part in a [`MatchmakingOutcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingPlayerHealth {
    /// The player.
    pub player: PlayerId,
    /// What the health check (or a later disconnect) found.
    pub health: HealthCheck,
    /// Whether it acknowledged the proposal.
    pub acknowledged: bool,
    /// Whether it went back to the front of its queue.
    pub requeued: bool,
}

/// How one match attempt ended: written once per match, on commit or rollback.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingOutcome {
    /// The match.
    pub match_id: u64,
    /// The category.
    pub category: String,
    /// Success or why it rolled back (for a pair, one of the seed's five).
    pub status: MatchStatus,
    /// The lobby id, if phase 2 created one (on rollback it no longer exists).
    pub lobby_id: Option<u64>,
    /// The lobby code, if phase 2 created one.
    pub lobby_code: Option<String>,
    /// Every player in match order.
    pub players: Vec<MatchmakingPlayerHealth>,
    /// Players re-queued at the front, in match order.
    pub requeued: Vec<PlayerId>,
    /// From formation to the end.
    pub elapsed: Duration,
}

/// A committed match: start the game from this.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingMatchCommitted {
    /// The match.
    pub match_id: u64,
    /// The lobby entity.
    pub lobby: Entity,
    /// The lobby id.
    pub lobby_id: u64,
    /// The lobby code.
    pub lobby_code: String,
    /// The category.
    pub category: String,
    /// The players in match order with their measured latency (the first hosts).
    pub players: Vec<MatchedPlayer>,
}

/// Where each connected player stands, and the queues. Read it for inspection; the
/// plugin's systems are the only writers.
#[derive(Resource, Debug)]
pub struct MatchmakingServerState {
    queue: MatchQueue<PlayerId>,
    players: HashMap<PlayerId, PlayerEntry>,
    lobbies: HashMap<u64, Entity>,
    codes: HashSet<String>,
    guard: StrikeGuard,
    next_match_id: u64,
    rng: fastrand::Rng,
}

impl Default for MatchmakingServerState {
    fn default() -> Self {
        Self {
            queue: MatchQueue::new(2, usize::MAX),
            players: HashMap::new(),
            lobbies: HashMap::new(),
            codes: HashSet::new(),
            guard: StrikeGuard::default(),
            next_match_id: 1,
            rng: fastrand::Rng::new(),
        }
    }
}

/// Where a connected player is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchmakingPlayerLocation {
    /// Connected, not queued.
    Idle,
    /// Holds a ticket.
    Queued,
    /// In the match entity, still forming.
    Matching(Entity),
    /// In the lobby entity of a committed match.
    InLobby(Entity),
}

#[derive(Debug, Clone)]
struct PlayerEntry {
    hello: bool,
    location: MatchmakingPlayerLocation,
    /// The last match this player was taken into: late acknowledgements for it (crossing
    /// a rollback on the wire) are ignored rather than reported as foreign.
    last_match: Option<u64>,
}

impl MatchmakingServerState {
    /// Where a connected player is (`None` if unknown or disconnected).
    pub fn location(&self, player: PlayerId) -> Option<MatchmakingPlayerLocation> {
        self.players.get(&player).map(|e| e.location)
    }

    /// The queue (read only).
    pub fn queue(&self) -> &MatchQueue<PlayerId> {
        &self.queue
    }

    /// The lobby entity with this id.
    pub fn lobby(&self, lobby_id: u64) -> Option<Entity> {
        self.lobbies.get(&lobby_id).copied()
    }

    /// Seeds the random source of lobby ids, codes and nonces (for reproducible runs).
    pub fn seed(&mut self, seed: u64) {
        self.rng = fastrand::Rng::with_seed(seed);
    }
}

/// System sets of the server plugin.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchmakingServerSystems {
    /// `PreUpdate`, after [`RenetReceive`]: decodes and applies client messages.
    Receive,
    /// `Update`: applies settings, forms matches from ready categories, advances every
    /// match's state machine and carries out its actions, closes refused connections.
    Advance,
}

/// The server side of atomic matchmaking.
///
/// Needs a [`RenetServer`] resource (with a transport, or local clients in tests) whose
/// connection config includes the [`MatchmakingChannel`]. Adds bevy_renet's
/// [`RenetServerPlugin`] if the app has not.
#[derive(Debug, Clone, Default)]
pub struct MatchmakingServerPlugin {
    /// The channel carrying matchmaking messages.
    pub channel: MatchmakingChannel,
    /// Initial settings (kept if the app inserted its own resource first).
    pub settings: MatchmakingServerSettings,
}

impl Plugin for MatchmakingServerPlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<RenetServerPlugin>() {
            app.add_plugins(RenetServerPlugin);
        }
        if !app.world().contains_resource::<MatchmakingServerSettings>() {
            app.insert_resource(self.settings.clone());
        }
        app.insert_resource(self.channel)
            .init_resource::<MatchmakingServerState>()
            .init_resource::<MatchmakingServerStats>()
            .add_message::<MatchmakingOutcome>()
            .add_message::<MatchmakingMatchCommitted>()
            .configure_sets(
                PreUpdate,
                MatchmakingServerSystems::Receive.after(RenetReceive),
            )
            .add_observer(on_server_event)
            .add_observer(on_lobby_removed)
            .add_systems(
                PreUpdate,
                receive_messages
                    .in_set(MatchmakingServerSystems::Receive)
                    .run_if(resource_exists::<RenetServer>),
            )
            .add_systems(
                Update,
                (
                    apply_settings,
                    form_matches,
                    advance_matches,
                    close_refused_connections,
                )
                    .chain()
                    .in_set(MatchmakingServerSystems::Advance)
                    .run_if(resource_exists::<RenetServer>),
            );
    }
}

fn send(server: &mut RenetServer, channel: &MatchmakingChannel, to: PlayerId, msg: &ServerMessage) {
    if server.is_connected(to) {
        server.send_message(to, channel.id, codec::encode(msg));
    }
}

fn send_error(
    server: &mut RenetServer,
    channel: &MatchmakingChannel,
    to: PlayerId,
    kind: MatchmakingErrorKind,
    message: impl Into<String>,
) {
    send(
        server,
        channel,
        to,
        &ServerMessage::Error {
            kind,
            message: message.into(),
        },
    );
}

fn sync_queued(stats: &mut MatchmakingServerStats, queue: &MatchQueue<PlayerId>, category: &str) {
    match queue.len(category) {
        0 => {
            stats.players_queued.remove(category);
        }
        n => {
            stats.players_queued.insert(category.to_owned(), n);
        }
    }
}

fn on_server_event(
    event: On<RenetServerEvent>,
    mut state: ResMut<MatchmakingServerState>,
    mut stats: ResMut<MatchmakingServerStats>,
    mut matches: Query<&mut MatchmakingMatch>,
    mut lobbies: Query<&mut MatchmakingLobby>,
    mut commands: Commands,
) {
    match event.event().0 {
        ServerEvent::ClientConnected { client_id } => {
            state.players.insert(
                client_id,
                PlayerEntry {
                    hello: false,
                    location: MatchmakingPlayerLocation::Idle,
                    last_match: None,
                },
            );
        }
        ServerEvent::ClientDisconnected { client_id, reason } => {
            debug!("matchmaking: player {client_id} disconnected ({reason})");
            let Some(entry) = state.players.remove(&client_id) else {
                return;
            };
            state.guard.forget(client_id);
            match entry.location {
                MatchmakingPlayerLocation::Idle => {}
                MatchmakingPlayerLocation::Queued => {
                    if let Some(ticket) = state.queue.remove(&client_id) {
                        sync_queued(&mut stats, &state.queue, &ticket.category);
                    }
                }
                MatchmakingPlayerLocation::Matching(entity) => {
                    if let Ok(mut m) = matches.get_mut(entity) {
                        let _ = m.machine.disconnected(client_id);
                    }
                }
                MatchmakingPlayerLocation::InLobby(entity) => {
                    if let Ok(mut lobby) = lobbies.get_mut(entity) {
                        lobby.members.retain(|p| *p != client_id);
                        if lobby.members.is_empty() {
                            commands.entity(entity).despawn();
                        }
                    }
                }
            }
        }
    }
}

/// Keeps the lobby index, the open codes and the members' locations right however a
/// lobby entity goes away (rollback, last member leaving, or the game despawning it).
fn on_lobby_removed(
    event: On<Remove, MatchmakingLobby>,
    lobbies: Query<&MatchmakingLobby>,
    mut state: ResMut<MatchmakingServerState>,
    mut stats: ResMut<MatchmakingServerStats>,
) {
    let entity = event.event().entity;
    let Ok(lobby) = lobbies.get(entity) else {
        return;
    };
    state.lobbies.remove(&lobby.lobby_id);
    state.codes.remove(&lobby.code);
    stats.lobbies_open = stats.lobbies_open.saturating_sub(1);
    for member in &lobby.members {
        if let Some(entry) = state.players.get_mut(member)
            && entry.location == MatchmakingPlayerLocation::InLobby(entity)
        {
            entry.location = MatchmakingPlayerLocation::Idle;
        }
    }
}

fn receive_messages(
    mut server: ResMut<RenetServer>,
    channel: Res<MatchmakingChannel>,
    settings: Res<MatchmakingServerSettings>,
    time: Res<Time<Real>>,
    mut state: ResMut<MatchmakingServerState>,
    mut stats: ResMut<MatchmakingServerStats>,
    mut matches: Query<&mut MatchmakingMatch>,
    mut lobbies: Query<&mut MatchmakingLobby>,
    mut commands: Commands,
) {
    let now = time.elapsed();
    let state = &mut *state;
    for client in server.clients_id() {
        while let Some(bytes) = server.receive_message(client, channel.id) {
            if !state.players.contains_key(&client) {
                break;
            }
            if state.guard.is_refused(client) {
                continue;
            }
            let message = match codec::decode::<ClientMessage>(&bytes) {
                Ok(message) => message,
                Err(err) => {
                    let kind = match err {
                        CodecError::TooLarge { .. } => MatchmakingErrorKind::TooLarge,
                        _ => MatchmakingErrorKind::Malformed,
                    };
                    strike(
                        state,
                        &mut stats,
                        &settings,
                        &mut server,
                        &channel,
                        client,
                        kind,
                        err.to_string(),
                        now,
                    );
                    continue;
                }
            };
            let hello = state.players[&client].hello;
            match message {
                ClientMessage::Hello { protocol_version } => {
                    if hello {
                        send_error(
                            &mut server,
                            &channel,
                            client,
                            MatchmakingErrorKind::Unexpected,
                            "hello was already accepted",
                        );
                    } else if protocol_version != PROTOCOL_VERSION {
                        send_error(
                            &mut server,
                            &channel,
                            client,
                            MatchmakingErrorKind::VersionMismatch,
                            format!(
                                "client speaks matchmaking protocol {protocol_version}, server speaks {PROTOCOL_VERSION}; update the game"
                            ),
                        );
                        refuse(state, &mut stats, &settings, client, now);
                    } else {
                        state.players.get_mut(&client).expect("checked").hello = true;
                        send(
                            &mut server,
                            &channel,
                            client,
                            &ServerMessage::Welcome {
                                protocol_version: PROTOCOL_VERSION,
                                player: client,
                            },
                        );
                    }
                }
                _ if !hello => {
                    strike(
                        state,
                        &mut stats,
                        &settings,
                        &mut server,
                        &channel,
                        client,
                        MatchmakingErrorKind::HelloRequired,
                        "send Hello with the protocol version first".into(),
                        now,
                    );
                }
                ClientMessage::JoinQueue { category } => {
                    join_queue(
                        state,
                        &mut stats,
                        &mut server,
                        &channel,
                        client,
                        category,
                        now,
                    );
                }
                ClientMessage::LeaveQueue => match state.players[&client].location {
                    MatchmakingPlayerLocation::Queued => {
                        if let Some(ticket) = state.queue.remove(&client) {
                            sync_queued(&mut stats, &state.queue, &ticket.category);
                            state.players.get_mut(&client).expect("checked").location =
                                MatchmakingPlayerLocation::Idle;
                            send(
                                &mut server,
                                &channel,
                                client,
                                &ServerMessage::QueueLeft {
                                    category: ticket.category,
                                    reason: QueueLeftReason::Requested,
                                },
                            );
                        }
                    }
                    MatchmakingPlayerLocation::Matching(entity) => {
                        // withdrawing from a forming match rolls it back at the next advance
                        if let Ok(mut m) = matches.get_mut(entity) {
                            let _ = m.machine.withdrew(client);
                        }
                    }
                    MatchmakingPlayerLocation::Idle | MatchmakingPlayerLocation::InLobby(_) => {
                        send_error(
                            &mut server,
                            &channel,
                            client,
                            MatchmakingErrorKind::NotQueued,
                            "you hold no ticket",
                        );
                    }
                },
                ClientMessage::Pong { nonce } => {
                    if let MatchmakingPlayerLocation::Matching(entity) =
                        state.players[&client].location
                        && let Ok(mut m) = matches.get_mut(entity)
                        && m.machine.pong(client, nonce, now)
                            == Err(crate::atomic::core::commit::CommitEventError::WrongNonce)
                    {
                        send_error(
                            &mut server,
                            &channel,
                            client,
                            MatchmakingErrorKind::NotAMember,
                            "that ping was not sent to you",
                        );
                    }
                    // a pong outside a match is a late answer to a finished check: ignored
                }
                ClientMessage::Acknowledge { match_id, lobby_id } => {
                    let own = match state.players[&client].location {
                        MatchmakingPlayerLocation::Matching(entity) => matches
                            .get_mut(entity)
                            .ok()
                            .filter(|m| {
                                m.match_id == match_id
                                    && m.lobby.as_ref().is_some_and(|l| l.lobby_id == lobby_id)
                            })
                            .map(|mut m| {
                                // a duplicate acknowledgement of a resent proposal is fine
                                let _ = m.machine.acknowledge(client);
                            })
                            .is_some(),
                        MatchmakingPlayerLocation::InLobby(entity) => lobbies
                            .get(entity)
                            .is_ok_and(|l| l.match_id == match_id && l.lobby_id == lobby_id),
                        _ => false,
                    };
                    let entry = &state.players[&client];
                    let stale = entry.last_match == Some(match_id)
                        && matches!(
                            entry.location,
                            MatchmakingPlayerLocation::Idle | MatchmakingPlayerLocation::Queued
                        );
                    if !own && !stale {
                        send_error(
                            &mut server,
                            &channel,
                            client,
                            MatchmakingErrorKind::NotAMember,
                            format!("match {match_id} / lobby {lobby_id} is not proposed to you"),
                        );
                    }
                }
                ClientMessage::LeaveLobby { lobby_id } => {
                    let location = state.players[&client].location;
                    match location {
                        MatchmakingPlayerLocation::InLobby(entity)
                            if lobbies.get(entity).is_ok_and(|l| l.lobby_id == lobby_id) =>
                        {
                            let mut lobby = lobbies.get_mut(entity).expect("checked");
                            lobby.members.retain(|p| *p != client);
                            if lobby.members.is_empty() {
                                commands.entity(entity).despawn();
                            }
                            state.players.get_mut(&client).expect("checked").location =
                                MatchmakingPlayerLocation::Idle;
                            send(
                                &mut server,
                                &channel,
                                client,
                                &ServerMessage::LobbyLeft { lobby_id },
                            );
                        }
                        _ => send_error(
                            &mut server,
                            &channel,
                            client,
                            MatchmakingErrorKind::NotAMember,
                            format!("you are not in lobby {lobby_id}"),
                        ),
                    }
                }
            }
        }
    }
}

fn join_queue(
    state: &mut MatchmakingServerState,
    stats: &mut MatchmakingServerStats,
    server: &mut RenetServer,
    channel: &MatchmakingChannel,
    client: PlayerId,
    category: String,
    now: Duration,
) {
    let location = state.players[&client].location;
    let refusal = match location {
        MatchmakingPlayerLocation::Idle => None,
        MatchmakingPlayerLocation::Queued => Some((
            MatchmakingErrorKind::AlreadyQueued,
            format!(
                "you already hold a ticket in {}",
                state.queue.category_of(&client).unwrap_or("a queue")
            ),
        )),
        MatchmakingPlayerLocation::Matching(_) => Some((
            MatchmakingErrorKind::AlreadyMatching,
            "your match is being formed".to_owned(),
        )),
        MatchmakingPlayerLocation::InLobby(_) => Some((
            MatchmakingErrorKind::AlreadyInLobby,
            "leave your lobby before queueing again".to_owned(),
        )),
    };
    if let Some((kind, message)) = refusal {
        return send_error(server, channel, client, kind, message);
    }
    if let Err(why) = validate_category(&category) {
        return send_error(
            server,
            channel,
            client,
            MatchmakingErrorKind::InvalidCategory,
            why,
        );
    }
    let ticket = QueueTicket {
        player: client,
        category: category.clone(),
        enqueued_at: now,
    };
    match state.queue.enqueue(ticket) {
        Ok(position) => {
            sync_queued(stats, &state.queue, &category);
            state.players.get_mut(&client).expect("checked").location =
                MatchmakingPlayerLocation::Queued;
            send(
                server,
                channel,
                client,
                &ServerMessage::QueueJoined {
                    category,
                    position: position as u32,
                    requeued: false,
                },
            );
        }
        Err(QueueError::Full { capacity }) => send_error(
            server,
            channel,
            client,
            MatchmakingErrorKind::QueueFull,
            format!("the {category} queue is full ({capacity} players); try again later"),
        ),
        Err(QueueError::AlreadyQueued) => send_error(
            server,
            channel,
            client,
            MatchmakingErrorKind::AlreadyQueued,
            "you already hold a ticket",
        ),
    }
}

fn strike(
    state: &mut MatchmakingServerState,
    stats: &mut MatchmakingServerStats,
    settings: &MatchmakingServerSettings,
    server: &mut RenetServer,
    channel: &MatchmakingChannel,
    client: PlayerId,
    kind: MatchmakingErrorKind,
    message: String,
    now: Duration,
) {
    let verdict = state
        .guard
        .strike(client, settings.max_strikes, settings.disconnect_grace, now);
    warn!("matchmaking: bad message from player {client} ({verdict:?}): {message}");
    send_error(server, channel, client, kind, message);
    if let StrikeVerdict::Refused(strikes) = verdict {
        stats.connections_refused += 1;
        send_error(
            server,
            channel,
            client,
            MatchmakingErrorKind::Abuse,
            format!("{strikes} bad messages: disconnecting"),
        );
    }
}

/// Stops serving a connection and closes it once the error had time to reach it.
fn refuse(
    state: &mut MatchmakingServerState,
    stats: &mut MatchmakingServerStats,
    settings: &MatchmakingServerSettings,
    client: PlayerId,
    now: Duration,
) {
    if state.guard.refuse(client, settings.disconnect_grace, now) {
        stats.connections_refused += 1;
    }
}

fn close_refused_connections(
    mut server: ResMut<RenetServer>,
    mut state: ResMut<MatchmakingServerState>,
    time: Res<Time<Real>>,
) {
    for client in state.guard.take_due(time.elapsed()) {
        server.disconnect(client);
    }
}

fn apply_settings(
    settings: Res<MatchmakingServerSettings>,
    mut state: ResMut<MatchmakingServerState>,
) {
    if settings.is_changed() {
        state.queue.set_group_size(settings.group_size());
        state.queue.set_capacity(settings.queue_capacity);
    }
}

fn form_matches(
    mut server: ResMut<RenetServer>,
    channel: Res<MatchmakingChannel>,
    settings: Res<MatchmakingServerSettings>,
    time: Res<Time<Real>>,
    mut state: ResMut<MatchmakingServerState>,
    mut stats: ResMut<MatchmakingServerStats>,
    mut commands: Commands,
) {
    let now = time.elapsed();
    let state = &mut *state;
    while let Some(category) = state.queue.first_ready().map(str::to_owned) {
        let tickets = state.queue.pop_group(&category).expect("category is ready");
        sync_queued(&mut stats, &state.queue, &category);
        let players: Vec<PlayerId> = tickets.iter().map(|t| t.player).collect();
        let nonces: Vec<u64> = players.iter().map(|_| state.rng.u64(..)).collect();
        let match_id = state.next_match_id;
        state.next_match_id += 1;
        for ticket in &tickets {
            stats
                .time_in_queue
                .record(now.saturating_sub(ticket.enqueued_at));
        }
        let entity = commands
            .spawn(MatchmakingMatch {
                match_id,
                category: category.clone(),
                machine: CommitMachine::new(&players, &nonces, settings.timings()),
                tickets,
                formed_at: now,
                lobby: None,
            })
            .id();
        for player in &players {
            if let Some(entry) = state.players.get_mut(player) {
                entry.location = MatchmakingPlayerLocation::Matching(entity);
                entry.last_match = Some(match_id);
            }
            send(
                &mut server,
                &channel,
                *player,
                &ServerMessage::MatchChecking {
                    match_id,
                    category: category.clone(),
                    players: players.len() as u8,
                },
            );
        }
        stats.matches_formed += 1;
        stats.matches_in_flight += 1;
        debug!("matchmaking: match {match_id} formed in {category}: {players:?}");
    }
}

fn advance_matches(
    mut server: ResMut<RenetServer>,
    channel: Res<MatchmakingChannel>,
    time: Res<Time<Real>>,
    mut state: ResMut<MatchmakingServerState>,
    mut stats: ResMut<MatchmakingServerStats>,
    mut matches: Query<(Entity, &mut MatchmakingMatch)>,
    mut lobbies: Query<&mut MatchmakingLobby>,
    mut outcomes: MessageWriter<MatchmakingOutcome>,
    mut committed: MessageWriter<MatchmakingMatchCommitted>,
    mut commands: Commands,
) {
    let now = time.elapsed();
    let state = &mut *state;
    let mut out = Outputs {
        server: &mut server,
        channel: &channel,
        stats: &mut stats,
    };
    for (entity, mut m) in &mut matches {
        let m = &mut *m;
        if m.machine.is_finished() {
            continue;
        }
        for action in m.machine.poll(now) {
            match action {
                CommitAction::Ping { player, nonce } => {
                    out.send(player, &ServerMessage::Ping { nonce });
                }
                CommitAction::CreateLobby => {
                    let lobby_id = loop {
                        let id = state.rng.u64(1..);
                        if !state.lobbies.contains_key(&id) {
                            break id;
                        }
                    };
                    let code = generate_lobby_code(&mut state.rng, |c| state.codes.contains(c));
                    let members: Vec<PlayerId> = m.machine.players().collect();
                    let lobby = commands
                        .spawn(MatchmakingLobby {
                            lobby_id,
                            code: code.clone(),
                            category: m.category.clone(),
                            host: members[0],
                            members,
                            match_id: m.match_id,
                            committed: false,
                        })
                        .id();
                    state.lobbies.insert(lobby_id, lobby);
                    state.codes.insert(code.clone());
                    out.stats.lobbies_open += 1;
                    m.lobby = Some(MatchLobby {
                        entity: lobby,
                        lobby_id,
                        code,
                    });
                }
                CommitAction::Propose { player, attempt } => {
                    let lobby = m.lobby.as_ref().expect("lobby created before proposals");
                    out.send(
                        player,
                        &ServerMessage::MatchProposed {
                            match_id: m.match_id,
                            lobby_id: lobby.lobby_id,
                            lobby_code: lobby.code.clone(),
                            attempt,
                        },
                    );
                }
                CommitAction::Finish(outcome) => {
                    let elapsed = now.saturating_sub(m.formed_at);
                    let requeued = if outcome.status.is_success() {
                        let lobby = m.lobby.as_ref().expect("committed matches have a lobby");
                        if let Ok(mut l) = lobbies.get_mut(lobby.entity) {
                            l.committed = true;
                        }
                        let message = commit(m, &outcome, state, &mut out);
                        out.stats.time_to_commit.record(elapsed);
                        committed.write(message);
                        Vec::new()
                    } else {
                        if let Some(lobby) = &m.lobby {
                            // the removal observer frees the id, the code and the members
                            commands.entity(lobby.entity).despawn();
                        }
                        roll_back(m, &outcome, state, &mut out)
                    };
                    outcomes.write(MatchmakingOutcome {
                        match_id: m.match_id,
                        category: m.category.clone(),
                        status: outcome.status.clone(),
                        lobby_id: m.lobby.as_ref().map(|l| l.lobby_id),
                        lobby_code: m.lobby.as_ref().map(|l| l.code.clone()),
                        players: outcome
                            .players
                            .iter()
                            .map(|r| MatchmakingPlayerHealth {
                                player: r.player,
                                health: r.health,
                                acknowledged: r.acknowledged,
                                requeued: r.requeued && requeued.contains(&r.player),
                            })
                            .collect(),
                        requeued,
                        elapsed,
                    });
                    commands.entity(entity).despawn();
                    out.stats.matches_in_flight = out.stats.matches_in_flight.saturating_sub(1);
                }
            }
        }
    }
}

/// What the finishing steps write to.
struct Outputs<'a> {
    server: &'a mut RenetServer,
    channel: &'a MatchmakingChannel,
    stats: &'a mut MatchmakingServerStats,
}

impl Outputs<'_> {
    fn send(&mut self, to: PlayerId, message: &ServerMessage) {
        send(self.server, self.channel, to, message);
    }
}

/// Moves every player into the lobby and tells them the match is confirmed.
fn commit(
    m: &MatchmakingMatch,
    outcome: &CommitOutcome<PlayerId>,
    state: &mut MatchmakingServerState,
    out: &mut Outputs,
) -> MatchmakingMatchCommitted {
    let lobby = m.lobby.as_ref().expect("committed matches have a lobby");
    let players: Vec<MatchedPlayer> = outcome
        .players
        .iter()
        .enumerate()
        .map(|(i, r)| MatchedPlayer {
            player: r.player,
            latency: r.health.latency().unwrap_or_default(),
            host: i == 0,
        })
        .collect();
    let confirmed = ServerMessage::MatchFound {
        match_id: m.match_id,
        lobby_id: lobby.lobby_id,
        lobby_code: lobby.code.clone(),
        category: m.category.clone(),
        players: players.clone(),
    };
    for report in &outcome.players {
        if let Some(entry) = state.players.get_mut(&report.player) {
            entry.location = MatchmakingPlayerLocation::InLobby(lobby.entity);
        }
        out.send(report.player, &confirmed);
    }
    out.stats.matches_committed += 1;
    info!(
        "matchmaking: match {} committed in {}: lobby {} {:?}",
        m.match_id,
        m.category,
        lobby.code,
        players.iter().map(|p| p.player).collect::<Vec<_>>()
    );
    MatchmakingMatchCommitted {
        match_id: m.match_id,
        lobby: lobby.entity,
        lobby_id: lobby.lobby_id,
        lobby_code: lobby.code.clone(),
        category: m.category.clone(),
        players,
    }
}

/// Puts the healthy players back at the front of their queue (in match order) and tells
/// every still-connected player why the match was cancelled. Returns who was re-queued.
fn roll_back(
    m: &MatchmakingMatch,
    outcome: &CommitOutcome<PlayerId>,
    state: &mut MatchmakingServerState,
    out: &mut Outputs,
) -> Vec<PlayerId> {
    let max_latency = m.machine.timings().max_latency;
    // only players still connected can be re-queued (a disconnect always shows in the
    // report, this guards the invariant anyway)
    let requeued: Vec<PlayerId> = outcome
        .requeue()
        .into_iter()
        .filter(|p| state.players.contains_key(p))
        .collect();
    for player in requeued.iter().rev() {
        let ticket = m
            .tickets
            .iter()
            .find(|t| t.player == *player)
            .expect("every player has its ticket")
            .clone();
        state
            .queue
            .requeue_front(ticket)
            .expect("a player in a match holds no ticket");
    }
    sync_queued(out.stats, &state.queue, &m.category);
    for report in &outcome.players {
        let Some(entry) = state.players.get_mut(&report.player) else {
            continue;
        };
        let requeued_at = requeued.iter().position(|p| *p == report.player);
        entry.location = if requeued_at.is_some() {
            MatchmakingPlayerLocation::Queued
        } else {
            MatchmakingPlayerLocation::Idle
        };
        out.send(
            report.player,
            &ServerMessage::MatchCancelled {
                match_id: m.match_id,
                status: outcome.status.clone(),
                reason: cancel_reason(&outcome.status, report, max_latency),
                requeued: requeued_at.is_some(),
            },
        );
        if let Some(i) = requeued_at {
            out.send(
                report.player,
                &ServerMessage::QueueJoined {
                    category: m.category.clone(),
                    position: i as u32 + 1,
                    requeued: true,
                },
            );
        }
    }
    out.stats.matches_rolled_back += 1;
    *out.stats
        .rollbacks_by_status
        .entry(outcome.status.as_str())
        .or_default() += 1;
    out.stats.players_requeued += requeued.len() as u64;
    info!(
        "matchmaking: match {} rolled back ({}), re-queued {:?}",
        m.match_id, outcome.status, requeued
    );
    requeued
}

/// Why the match was cancelled, from this player's point of view.
pub fn cancel_reason(
    status: &MatchStatus,
    report: &PlayerReport<PlayerId>,
    max_latency: Duration,
) -> MatchCancelReason {
    match report.health {
        HealthCheck::TooSlow { latency } => MatchCancelReason::YourLatencyTooHigh {
            latency,
            max: max_latency,
        },
        HealthCheck::NoAnswer => MatchCancelReason::YouDidNotAnswer,
        HealthCheck::Withdrew => MatchCancelReason::YouWithdrew,
        HealthCheck::Healthy { .. } if !report.requeued => MatchCancelReason::YouDidNotAcknowledge,
        _ if *status == MatchStatus::NotificationFailed => {
            MatchCancelReason::OtherPlayerDidNotConfirm
        }
        _ => MatchCancelReason::OtherPlayerUnavailable,
    }
}
