//! Where every connected player stands, the queues and the open lobbies.
//!
//! [`AtomicServerState::move_player`] is the only place a player's location changes,
//! and it checks the player's session as well as its location: every connection is a new
//! session, and a match or lobby touches only the sessions that were taken into it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use bevy::prelude::*;

use crate::atomic::core::lobby_code::generate_lobby_code;
use crate::atomic::core::queue::{AtomicQueue, AtomicQueueTicket};
use crate::shared::gate::ConnectionGate;
use crate::shared::player::PlayerId;

/// Where each connected player stands, and the queues. Read it for inspection; the
/// plugin's systems are the only writers.
///
/// Reflects where each player is, the open lobbies and codes and the id counters; the
/// queue (read it with [`queue`](Self::queue)), the connection gate and the random source
/// are internal and not reflected.
#[derive(Resource, Reflect, Debug)]
#[reflect(Resource, Debug, Default)]
pub struct AtomicServerState {
    #[reflect(ignore)]
    pub(super) queue: AtomicQueue<PlayerId>,
    players: HashMap<PlayerId, PlayerEntry>,
    lobbies: HashMap<u64, Entity>,
    codes: HashSet<String>,
    /// Hello flags, strikes and refusals of every connection.
    #[reflect(ignore)]
    pub(super) gate: ConnectionGate,
    next_match_id: u64,
    next_session: u64,
    #[reflect(ignore)]
    rng: fastrand::Rng,
    /// The drain under way, if any.
    #[reflect(ignore)]
    pub(super) drain: Option<Drain>,
}

/// A drain under way: its deadline, who was told the server is closing, and whether it
/// finished.
#[derive(Debug, Clone, Default)]
pub(super) struct Drain {
    /// When matches still in flight are called off.
    pub(super) deadline: Duration,
    /// The sessions told the server is closing (each is told once).
    pub(super) told: HashSet<u64>,
    /// `AtomicDrainFinished` was written.
    pub(super) finished: bool,
}

impl Default for AtomicServerState {
    fn default() -> Self {
        Self {
            queue: AtomicQueue::new(2, usize::MAX),
            players: HashMap::new(),
            lobbies: HashMap::new(),
            codes: HashSet::new(),
            gate: ConnectionGate::default(),
            next_match_id: 1,
            next_session: 1,
            rng: fastrand::Rng::new(),
            drain: None,
        }
    }
}

/// Where a connected player is.
#[derive(Reflect, Debug, Clone, Copy, PartialEq, Eq)]
#[reflect(Debug, Clone, PartialEq)]
pub enum AtomicPlayerLocation {
    /// Connected, not queued.
    Idle,
    /// Holds a ticket.
    Queued,
    /// In the match entity, still forming.
    Matching(Entity),
    /// In the lobby entity of a committed match.
    InLobby(Entity),
}

/// How many recent proposals and health pings of a session the server remembers, so that
/// late answers to them (crossing a rollback or a new ping on the wire) are ignored rather
/// than taken for forgeries.
const RECENT: usize = 8;

#[derive(Reflect, Debug, Clone)]
#[reflect(Debug, Clone)]
struct PlayerEntry {
    location: AtomicPlayerLocation,
    /// The connection: a reconnection under the same id is a new session.
    session: u64,
    /// (match id, lobby id) of the last proposals this session was sent, newest last.
    proposals: VecDeque<(u64, u64)>,
    /// Nonces of the last health pings this session was sent, newest last.
    nonces: VecDeque<u64>,
    /// Whether the current ticket's wait was sampled (a re-queue keeps the ticket).
    wait_sampled: bool,
}

fn remember<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() == RECENT {
        list.pop_front();
    }
    list.push_back(item);
}

impl AtomicServerState {
    /// Where a connected player is (`None` if unknown or disconnected).
    pub fn location(&self, player: PlayerId) -> Option<AtomicPlayerLocation> {
        self.players.get(&player).map(|e| e.location)
    }

    /// The session of a connected player: each connection gets a new one, so a player who
    /// reconnects under the same id is not mistaken for its old connection.
    pub fn session(&self, player: PlayerId) -> Option<u64> {
        self.players.get(&player).map(|e| e.session)
    }

    /// Strikes of a connected player (bad messages and refused requests; `None` if not
    /// connected).
    pub fn strikes(&self, player: PlayerId) -> Option<u32> {
        self.gate.strikes(player)
    }

    /// Where a connected player is and its session.
    pub(super) fn seat(&self, player: PlayerId) -> Option<(AtomicPlayerLocation, u64)> {
        self.players.get(&player).map(|e| (e.location, e.session))
    }

    /// Whether the server is draining: it takes no new tickets and tells every player it
    /// is closing (see `AtomicDrain`).
    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Every connected player not in a match still forming, with its session.
    pub(super) fn settled_players(&self) -> Vec<(PlayerId, u64, AtomicPlayerLocation)> {
        let mut players: Vec<_> = self
            .players
            .iter()
            .filter(|(p, e)| {
                self.gate.is_welcomed(**p)
                    && !matches!(e.location, AtomicPlayerLocation::Matching(_))
            })
            .map(|(p, e)| (*p, e.session, e.location))
            .collect();
        players.sort_unstable_by_key(|(p, _, _)| *p);
        players
    }

    /// Whether a connected player's hello was accepted.
    pub fn is_welcomed(&self, player: PlayerId) -> bool {
        self.gate.is_welcomed(player)
    }

    /// The queue (read only).
    pub fn queue(&self) -> &AtomicQueue<PlayerId> {
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

    /// A connection opened: the player is idle in a new session and has not said hello.
    /// The caller first takes out an old session still registered under the same id.
    pub(super) fn connect(&mut self, player: PlayerId) {
        let session = self.next_session;
        self.next_session += 1;
        let entry = PlayerEntry {
            location: AtomicPlayerLocation::Idle,
            session,
            proposals: VecDeque::new(),
            nonces: VecDeque::new(),
            wait_sampled: false,
        };
        self.players.insert(player, entry);
        self.gate.connect(player);
    }

    /// A connection closed: forgets the player and returns where it was.
    pub(super) fn disconnect(&mut self, player: PlayerId) -> Option<AtomicPlayerLocation> {
        let entry = self.players.remove(&player)?;
        self.gate.disconnect(player);
        Some(entry.location)
    }

    /// Moves a player from `from` to `to`: the one place a location changes.
    ///
    /// Moves only a player still connected in `session` and still at `from`, and says
    /// whether it did. A caller acting on what it saw earlier (a match finishing, a lobby
    /// going away) thus leaves alone a player who disconnected since, or reconnected under
    /// the same id (a new session) and went elsewhere.
    #[must_use]
    pub(super) fn move_player(
        &mut self,
        player: PlayerId,
        session: u64,
        from: AtomicPlayerLocation,
        to: AtomicPlayerLocation,
    ) -> bool {
        match self.players.get_mut(&player) {
            Some(entry) if entry.session == session && entry.location == from => {
                entry.location = to;
                true
            }
            _ => false,
        }
    }

    /// An idle player took a ticket (a new wait begins). False if it was not idle.
    #[must_use]
    pub(super) fn join(&mut self, player: PlayerId, session: u64) -> bool {
        let (idle, queued) = (AtomicPlayerLocation::Idle, AtomicPlayerLocation::Queued);
        if !self.move_player(player, session, idle, queued) {
            return false;
        }
        if let Some(entry) = self.players.get_mut(&player) {
            entry.wait_sampled = false;
        }
        true
    }

    /// Moves a player whose ticket was just taken out of the queue into the match
    /// `entity`; returns its session, `None` if it was not queued.
    #[must_use]
    pub(super) fn enter_match(&mut self, player: PlayerId, entity: Entity) -> Option<u64> {
        let session = self.session(player)?;
        let to = AtomicPlayerLocation::Matching(entity);
        self.move_player(player, session, AtomicPlayerLocation::Queued, to)
            .then_some(session)
    }

    /// Whether this is the first time the player's current ticket is taken into a match
    /// (its wait is sampled once, however often a rollback re-queues it).
    pub(super) fn first_take(&mut self, player: PlayerId) -> bool {
        self.players
            .get_mut(&player)
            .is_some_and(|e| !std::mem::replace(&mut e.wait_sampled, true))
    }

    /// Moves a player of the match `entity`, still in `session`, back to the front of its
    /// queue with its old ticket. False, and nothing changed, if it is no longer in that
    /// match.
    #[must_use]
    pub(super) fn requeue(
        &mut self,
        ticket: AtomicQueueTicket<PlayerId>,
        session: u64,
        entity: Entity,
    ) -> bool {
        let player = ticket.player;
        let from = AtomicPlayerLocation::Matching(entity);
        if !self.move_player(player, session, from, AtomicPlayerLocation::Queued) {
            return false;
        }
        if self.queue.requeue_front(ticket).is_ok() {
            return true;
        }
        // unreachable while a player in a match holds no ticket; never queued without one
        warn!("matchmaking: player {player} already held a ticket; not re-queued");
        let _ = self.move_player(player, session, AtomicPlayerLocation::Queued, from);
        false
    }

    /// Remembers that the player's `session` was proposed `match_id` in `lobby_id`.
    pub(super) fn note_proposal(&mut self, player: PlayerId, session: u64, ids: (u64, u64)) {
        if let Some(entry) = self.players.get_mut(&player)
            && entry.session == session
        {
            remember(&mut entry.proposals, ids);
        }
    }

    /// Remembers that the player's `session` was sent a health ping with `nonce`.
    pub(super) fn note_ping(&mut self, player: PlayerId, session: u64, nonce: u64) {
        if let Some(entry) = self.players.get_mut(&player)
            && entry.session == session
        {
            remember(&mut entry.nonces, nonce);
        }
    }

    /// Whether the player was recently proposed this match in this lobby.
    pub(super) fn was_proposed(&self, player: PlayerId, match_id: u64, lobby_id: u64) -> bool {
        self.players
            .get(&player)
            .is_some_and(|e| e.proposals.contains(&(match_id, lobby_id)))
    }

    /// Whether the player was recently sent a health ping with this nonce.
    pub(super) fn was_pinged(&self, player: PlayerId, nonce: u64) -> bool {
        self.players
            .get(&player)
            .is_some_and(|e| e.nonces.contains(&nonce))
    }

    /// Applies the queue settings.
    pub(super) fn configure_queue(
        &mut self,
        group_size: usize,
        capacity: usize,
        max_categories: usize,
    ) {
        self.queue.set_group_size(group_size);
        self.queue.set_capacity(capacity);
        self.queue.set_max_categories(max_categories);
    }

    /// Takes the tickets of the first category that holds a full group.
    pub(super) fn pop_ready_group(&mut self) -> Option<(String, Vec<AtomicQueueTicket<PlayerId>>)> {
        let category = self.queue.first_ready()?.to_owned();
        let tickets = self.queue.pop_group(&category)?;
        Some((category, tickets))
    }

    /// A new match id and one random nonce per player.
    pub(super) fn new_match(&mut self, players: usize) -> (u64, Vec<u64>) {
        let nonces = (0..players).map(|_| self.rng.u64(..)).collect();
        let match_id = self.next_match_id;
        self.next_match_id += 1;
        (match_id, nonces)
    }

    /// An unused lobby id and an unused code (reserved until
    /// [`AtomicServerState::close_lobby`]).
    pub(super) fn new_lobby(&mut self) -> (u64, String) {
        let lobby_id = loop {
            let id = self.rng.u64(1..);
            if !self.lobbies.contains_key(&id) {
                break id;
            }
        };
        let code = generate_lobby_code(&mut self.rng, |c| self.codes.contains(c));
        self.codes.insert(code.clone());
        (lobby_id, code)
    }

    /// Indexes a spawned lobby entity by its id.
    pub(super) fn open_lobby(&mut self, lobby_id: u64, entity: Entity) {
        self.lobbies.insert(lobby_id, entity);
    }

    /// Frees a lobby's id and code.
    pub(super) fn close_lobby(&mut self, lobby_id: u64, code: &str) {
        self.lobbies.remove(&lobby_id);
        self.codes.remove(code);
    }
}
