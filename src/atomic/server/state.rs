//! Where every connected player stands, the queues and the open lobbies.
//!
//! [`MatchmakingServerState::move_player`] is the only place a player's location changes.

use std::collections::{HashMap, HashSet};

use bevy::prelude::*;

use crate::atomic::core::lobby_code::generate_lobby_code;
use crate::atomic::core::queue::{MatchQueue, QueueTicket};
use crate::shared::gate::ConnectionGate;
use crate::shared::player::PlayerId;

/// Where each connected player stands, and the queues. Read it for inspection; the
/// plugin's systems are the only writers.
#[derive(Resource, Debug)]
pub struct MatchmakingServerState {
    pub(super) queue: MatchQueue<PlayerId>,
    players: HashMap<PlayerId, PlayerEntry>,
    lobbies: HashMap<u64, Entity>,
    codes: HashSet<String>,
    /// Hello flags, strikes and refusals of every connection.
    pub(super) gate: ConnectionGate,
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
            gate: ConnectionGate::default(),
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

    /// A connection opened: the player is idle and has not said hello (a reconnection
    /// under the same id starts over).
    pub(super) fn connect(&mut self, player: PlayerId) {
        let entry = PlayerEntry {
            location: MatchmakingPlayerLocation::Idle,
            last_match: None,
        };
        self.players.insert(player, entry);
        self.gate.connect(player);
    }

    /// A connection closed: forgets the player and returns where it was.
    pub(super) fn disconnect(&mut self, player: PlayerId) -> Option<MatchmakingPlayerLocation> {
        let entry = self.players.remove(&player)?;
        self.gate.disconnect(player);
        Some(entry.location)
    }

    /// Moves a player from `from` to `to`: the one place a location changes.
    ///
    /// Moves only a player that is still connected and still at `from`, and says whether
    /// it did. A caller acting on what it saw earlier (a match finishing, a lobby going
    /// away) thus leaves alone a player who disconnected since, or reconnected under the
    /// same id and went elsewhere.
    #[must_use]
    pub(super) fn move_player(
        &mut self,
        player: PlayerId,
        from: MatchmakingPlayerLocation,
        to: MatchmakingPlayerLocation,
    ) -> bool {
        match self.players.get_mut(&player) {
            Some(entry) if entry.location == from => {
                entry.location = to;
                true
            }
            _ => false,
        }
    }

    /// Moves a player whose ticket was just taken out of the queue into the match
    /// `entity`, and remembers the match id. False if it was not queued.
    #[must_use]
    pub(super) fn enter_match(&mut self, player: PlayerId, entity: Entity, match_id: u64) -> bool {
        let to = MatchmakingPlayerLocation::Matching(entity);
        if !self.move_player(player, MatchmakingPlayerLocation::Queued, to) {
            return false;
        }
        if let Some(entry) = self.players.get_mut(&player) {
            entry.last_match = Some(match_id);
        }
        true
    }

    /// Moves a player of the match `entity` back to the front of its queue with its old
    /// ticket. False, and nothing changed, if the player is no longer in that match.
    #[must_use]
    pub(super) fn requeue(&mut self, ticket: QueueTicket<PlayerId>, entity: Entity) -> bool {
        let player = ticket.player;
        let from = MatchmakingPlayerLocation::Matching(entity);
        if !self.move_player(player, from, MatchmakingPlayerLocation::Queued) {
            return false;
        }
        if self.queue.requeue_front(ticket).is_ok() {
            return true;
        }
        // unreachable while a player in a match holds no ticket; never queued without one
        warn!("matchmaking: player {player} already held a ticket; not re-queued");
        let _ = self.move_player(player, MatchmakingPlayerLocation::Queued, from);
        false
    }

    /// The last match the player was taken into.
    pub(super) fn last_match(&self, player: PlayerId) -> Option<u64> {
        self.players.get(&player).and_then(|e| e.last_match)
    }

    /// Applies the queue settings.
    pub(super) fn configure_queue(&mut self, group_size: usize, capacity: usize) {
        self.queue.set_group_size(group_size);
        self.queue.set_capacity(capacity);
    }

    /// Takes the tickets of the first category that holds a full group.
    pub(super) fn pop_ready_group(&mut self) -> Option<(String, Vec<QueueTicket<PlayerId>>)> {
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
    /// [`MatchmakingServerState::close_lobby`]).
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
