//! The storage seam of atomic matchmaking: queues, tickets, matches in flight and lobbies
//! behind one small trait, [`AtomicStore`], so one node and a cluster of nodes run the
//! same rules.
//!
//! - [`AtomicMemoryStore`]: one process, in memory (the default).
//! - `AtomicRedisStore` (feature `redis`): every node of a cluster on one Redis, each
//!   step one Lua script, so it is atomic across nodes.
//!
//! [`AtomicStoreBridge`] runs a store's blocking calls on their own thread, off the frame,
//! and holds the node's lease.
//!
//! Both pass the same suite (`crate::testing::store_suite`, feature `testing`).
//!
//! # The rules every store keeps
//!
//! - **One ticket per player, cluster-wide.** A player holds at most one record: queued,
//!   in a match still forming, or in a lobby. Joining again from the node that holds it is
//!   [`AtomicStoreJoin::AlreadyQueued`]; from another node it is
//!   [`AtomicStoreJoin::HeldByAnotherNode`].
//! - **Seniority.** A category's tickets stand in order of their enqueue time, re-queued
//!   tickets (after a rollback) in front of every joined one, still by their original
//!   enqueue time.
//! - **Claims are all or none.** A rule proposes a group from [`AtomicStore::front`]; the
//!   store claims it only if every ticket of the group is still queued
//!   ([`AtomicStore::claim`]). No player is ever claimed twice, however many nodes claim at
//!   the same moment.
//! - **Fencing.** Every write carries the writer's [`AtomicNodeLease`]. A node whose lease
//!   expired (or whose store was flushed) gets [`AtomicStoreError::LeaseLost`] and writes
//!   nothing.
//! - **The commit point** checks the coordinator's lease and that every player's home node
//!   is alive, in one step. A rollback deletes the lobby and puts the players it names
//!   back in front, in one step.
//! - **A dead node** (its lease expired) is reaped by a survivor
//!   ([`AtomicStore::reap`]): its queued tickets go, its matches still forming roll back
//!   (the players of live nodes go back in front), and its players leave the lobbies they
//!   were in.

pub mod bridge;
mod memory;

use std::time::Duration;

pub use bridge::{
    AtomicBridgeEvent, AtomicBridgeSettings, AtomicFifoClaim, AtomicStoreAnswer, AtomicStoreBridge,
    AtomicStoreCommand, claim_fifo, claim_fifo_into,
};
pub use memory::AtomicMemoryStore;

use crate::shared::player::PlayerId;

/// A node's hold on the store: its name and the fencing epoch the store gave it. Every
/// write checks that the lease is still the node's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AtomicNodeLease {
    /// The node's name, unique in the cluster.
    pub node: String,
    /// The fencing epoch: grows with every lease the store grants, so a node that lost its
    /// lease and took a new one is never confused with its old self.
    pub epoch: u64,
}

/// Limits a join checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicStoreLimits {
    /// Most tickets in one category.
    pub capacity: usize,
    /// Most categories with tickets.
    pub max_categories: usize,
}

impl Default for AtomicStoreLimits {
    fn default() -> Self {
        Self {
            capacity: usize::MAX,
            max_categories: usize::MAX,
        }
    }
}

/// What a join did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtomicStoreJoin {
    /// The player holds a new ticket, enqueued at this store time (µs).
    Queued {
        /// The ticket's enqueue time in the store's clock, µs.
        enqueued_at_us: u64,
    },
    /// The player already holds a record made through this node: nothing changed.
    AlreadyQueued,
    /// The player's record belongs to another node: a player connected to two nodes is
    /// refused on the second.
    HeldByAnotherNode {
        /// The node holding it.
        node: String,
    },
    /// The category holds `capacity` tickets.
    Full {
        /// The limit reached.
        capacity: usize,
    },
    /// The ticket would open a category past the limit.
    TooManyCategories {
        /// The limit reached.
        max: usize,
    },
}

/// A queued ticket, as a rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicStoreTicket {
    /// The player.
    pub player: PlayerId,
    /// When it first joined, in the store's clock (µs); kept across re-queues.
    pub enqueued_at_us: u64,
    /// The node the player is connected to.
    pub node: String,
}

/// What a claim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtomicClaim {
    /// Every ticket was queued: they are out of the queue and in a new match forming,
    /// coordinated by the claiming node.
    Claimed {
        /// The match id, unique in the store.
        match_id: u64,
    },
    /// This player's ticket is no longer queued: nothing was claimed.
    Stale {
        /// The first player found not queued.
        player: PlayerId,
    },
}

/// What the commit point decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtomicCommit {
    /// Committed: the players are in the match's lobby.
    Committed,
    /// The match is not one this node coordinates still forming (already resolved, or
    /// reaped): nothing changed.
    NotForming,
    /// This player's home node is dead: nothing changed; roll the match back.
    PlayerNodeGone {
        /// The player.
        player: PlayerId,
    },
    /// The match has no lobby yet: nothing changed.
    NoLobby,
}

/// Where a player's record stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtomicStoreSeat {
    /// Holds a ticket in the category.
    Queued {
        /// The category.
        category: String,
    },
    /// In a match still forming.
    Matching {
        /// The match id.
        match_id: u64,
    },
    /// In a committed match's lobby.
    InLobby {
        /// The lobby id.
        lobby_id: u64,
    },
}

/// A player's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicStorePlayer {
    /// The node it is connected to.
    pub node: String,
    /// Where it stands.
    pub seat: AtomicStoreSeat,
    /// Its ticket's enqueue time (µs), kept across re-queues.
    pub enqueued_at_us: u64,
}

/// A match still forming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicStoreMatch {
    /// The coordinating node.
    pub coordinator: String,
    /// The category.
    pub category: String,
    /// The players, in claim order.
    pub players: Vec<PlayerId>,
    /// Its lobby's id and code, once opened.
    pub lobby: Option<(u64, String)>,
}

/// A committed match's lobby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicStoreLobby {
    /// Its short code, unique in the store.
    pub code: String,
    /// Its members, in match order.
    pub members: Vec<PlayerId>,
}

/// The whole cluster at a glance, as the store holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AtomicStoreStats {
    /// Nodes holding a live lease.
    pub live_nodes: usize,
    /// Matches still forming, every node's.
    pub matches_forming: usize,
    /// Queued tickets by category.
    pub queued_by_category: std::collections::BTreeMap<String, usize>,
}

/// What reaping a dead node changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AtomicReaped {
    /// Its queued tickets that were removed.
    pub tickets_removed: usize,
    /// Its matches still forming, rolled back.
    pub matches_rolled_back: Vec<u64>,
    /// Players of live nodes put back in front, with their node (to be told).
    pub requeued: Vec<(PlayerId, String)>,
    /// Its players taken out of other nodes' lobbies.
    pub left_lobbies: usize,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AtomicStoreError {
    /// The writer's lease expired, was taken over, or the store forgot it (a flushed or
    /// restarted Redis): nothing was written. The node must stop, roll back what it holds
    /// and take a new lease.
    #[error("the node's lease is lost")]
    LeaseLost,
    /// Another live node holds this node name.
    #[error("node name {0:?} is held by a live node")]
    NodeNameTaken(String),
    /// The store cannot be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this crate did not write.
    #[error("store holds unexpected data: {0}")]
    Corrupt(String),
}

/// Queues, tickets, matches in flight and lobbies, shared by every node of a cluster (or
/// held by one node). See the [module](self) for the rules every implementation keeps.
///
/// Every method is one atomic step of the store.
pub trait AtomicStore {
    /// Takes a lease for `node` that lives `ttl` unless renewed.
    fn acquire_lease(
        &mut self,
        node: &str,
        ttl: Duration,
    ) -> Result<AtomicNodeLease, AtomicStoreError>;

    /// Renews a lease for another `ttl`; [`AtomicStoreError::LeaseLost`] if it expired.
    fn renew_lease(
        &mut self,
        lease: &AtomicNodeLease,
        ttl: Duration,
    ) -> Result<(), AtomicStoreError>;

    /// Gives up a lease at once; the node's records are reaped as a dead node's.
    fn release_lease(&mut self, lease: &AtomicNodeLease) -> Result<(), AtomicStoreError>;

    /// Queues `player` for `category` through the lease's node. `seniority` re-joins a
    /// ticket with its original enqueue time (after the store lost it); `None` is a new
    /// wait.
    fn join(
        &mut self,
        lease: &AtomicNodeLease,
        player: PlayerId,
        category: &str,
        limits: AtomicStoreLimits,
        seniority: Option<u64>,
    ) -> Result<AtomicStoreJoin, AtomicStoreError>;

    /// Takes the player's queued ticket out (it left or disconnected). False if it held
    /// none through this node.
    fn leave(
        &mut self,
        lease: &AtomicNodeLease,
        player: PlayerId,
    ) -> Result<bool, AtomicStoreError>;

    /// Categories holding at least `group_size` tickets, by name.
    fn ready_categories(&mut self, group_size: usize) -> Result<Vec<String>, AtomicStoreError>;

    /// The first `count` tickets of a category, front first.
    fn front(
        &mut self,
        category: &str,
        count: usize,
    ) -> Result<Vec<AtomicStoreTicket>, AtomicStoreError>;

    /// Claims a group atomically: all of it or none, and only if every ticket is still
    /// queued in `category`.
    fn claim(
        &mut self,
        lease: &AtomicNodeLease,
        category: &str,
        players: &[PlayerId],
    ) -> Result<AtomicClaim, AtomicStoreError>;

    /// Opens the lobby of a match this node coordinates. False if the id or the code is
    /// taken (draw others), or the match is not forming under this node.
    fn open_lobby(
        &mut self,
        lease: &AtomicNodeLease,
        match_id: u64,
        lobby_id: u64,
        code: &str,
    ) -> Result<bool, AtomicStoreError>;

    /// The commit point of a match this node coordinates.
    fn commit(
        &mut self,
        lease: &AtomicNodeLease,
        match_id: u64,
    ) -> Result<AtomicCommit, AtomicStoreError>;

    /// Rolls back a match this node coordinates: deletes its lobby, puts the players in
    /// `requeue` back in front with their original enqueue time and forgets the others.
    /// Returns the players re-queued (a player already gone is not). Rolling back a match
    /// already resolved changes nothing.
    fn rollback(
        &mut self,
        lease: &AtomicNodeLease,
        match_id: u64,
        requeue: &[PlayerId],
    ) -> Result<Vec<PlayerId>, AtomicStoreError>;

    /// A player connected to this node left its lobby (or disconnected); the lobby goes
    /// when its last member leaves. False if it was not in that lobby.
    fn leave_lobby(
        &mut self,
        lease: &AtomicNodeLease,
        lobby_id: u64,
        player: PlayerId,
    ) -> Result<bool, AtomicStoreError>;

    /// Nodes whose lease expired but whose records are still in the store.
    fn dead_nodes(&mut self) -> Result<Vec<String>, AtomicStoreError>;

    /// Reaps a dead node's records (see the [module](self)). Reaping a node that is alive,
    /// or already reaped, changes nothing.
    fn reap(
        &mut self,
        lease: &AtomicNodeLease,
        dead: &str,
    ) -> Result<AtomicReaped, AtomicStoreError>;

    /// A player's record.
    fn player(&mut self, player: PlayerId) -> Result<Option<AtomicStorePlayer>, AtomicStoreError>;

    /// A match still forming.
    fn match_record(&mut self, match_id: u64)
    -> Result<Option<AtomicStoreMatch>, AtomicStoreError>;

    /// A lobby's code and members (`None` if there is none by that id).
    fn lobby(&mut self, lobby_id: u64) -> Result<Option<AtomicStoreLobby>, AtomicStoreError>;

    /// An id at or above every match id handed out so far, also after the store restarted
    /// empty: every match claimed after this call has a larger id. A node that takes a new
    /// lease tells its players' messages of matches of its last lease from new ones by it.
    fn match_floor(&mut self) -> Result<u64, AtomicStoreError>;

    /// The matches still forming that `node` coordinates (a node that lost a claim's reply
    /// finds its orphans here).
    fn coordinated_by(&mut self, node: &str) -> Result<Vec<u64>, AtomicStoreError>;

    /// The whole cluster at a glance (a node reads it about once a second for its stats).
    fn stats(&mut self) -> Result<AtomicStoreStats, AtomicStoreError>;

    /// Round trips to the store so far, for the figures of commands per match (0 for a
    /// store in memory).
    fn round_trips(&self) -> u64 {
        0
    }

    /// How many records of matchmaking the store holds: tickets, player records,
    /// matches, lobbies and codes (node leases and counters not counted). Zero once
    /// every player has gone.
    fn residue(&mut self) -> Result<usize, AtomicStoreError>;
}

/// Each method: the borrowed store's.
macro_rules! borrowed {
    ($(fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            fn $name(&mut self $(, $arg: $ty)*) -> Result<$ret, AtomicStoreError> {
                (**self).$name($($arg),*)
            }
        )*
    };
}

/// A borrowed store is a store (a wrapper can hold `&mut S`).
impl<S: AtomicStore + ?Sized> AtomicStore for &mut S {
    borrowed! {
        fn acquire_lease(&mut self, node: &str, ttl: Duration) -> AtomicNodeLease;
        fn renew_lease(&mut self, lease: &AtomicNodeLease, ttl: Duration) -> ();
        fn release_lease(&mut self, lease: &AtomicNodeLease) -> ();
        fn join(
            &mut self,
            lease: &AtomicNodeLease,
            player: PlayerId,
            category: &str,
            limits: AtomicStoreLimits,
            seniority: Option<u64>
        ) -> AtomicStoreJoin;
        fn leave(&mut self, lease: &AtomicNodeLease, player: PlayerId) -> bool;
        fn ready_categories(&mut self, group_size: usize) -> Vec<String>;
        fn front(&mut self, category: &str, count: usize) -> Vec<AtomicStoreTicket>;
        fn claim(&mut self, lease: &AtomicNodeLease, category: &str, players: &[PlayerId]) -> AtomicClaim;
        fn open_lobby(&mut self, lease: &AtomicNodeLease, match_id: u64, lobby_id: u64, code: &str) -> bool;
        fn commit(&mut self, lease: &AtomicNodeLease, match_id: u64) -> AtomicCommit;
        fn rollback(&mut self, lease: &AtomicNodeLease, match_id: u64, requeue: &[PlayerId]) -> Vec<PlayerId>;
        fn leave_lobby(&mut self, lease: &AtomicNodeLease, lobby_id: u64, player: PlayerId) -> bool;
        fn dead_nodes(&mut self) -> Vec<String>;
        fn reap(&mut self, lease: &AtomicNodeLease, dead: &str) -> AtomicReaped;
        fn player(&mut self, player: PlayerId) -> Option<AtomicStorePlayer>;
        fn match_record(&mut self, match_id: u64) -> Option<AtomicStoreMatch>;
        fn lobby(&mut self, lobby_id: u64) -> Option<AtomicStoreLobby>;
        fn match_floor(&mut self) -> u64;
        fn coordinated_by(&mut self, node: &str) -> Vec<u64>;
        fn stats(&mut self) -> AtomicStoreStats;
        fn residue(&mut self) -> usize;
    }

    fn round_trips(&self) -> u64 {
        (**self).round_trips()
    }
}
