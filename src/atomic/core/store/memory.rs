//! [`AtomicMemoryStore`]: the store of one process, in memory, on a clock its owner sets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::shared::player::PlayerId;

use super::{
    AtomicClaim, AtomicCommit, AtomicNodeLease, AtomicReaped, AtomicStore, AtomicStoreError,
    AtomicStoreJoin, AtomicStoreLimits, AtomicStoreLobby, AtomicStoreMatch, AtomicStorePlayer,
    AtomicStoreSeat, AtomicStoreStats, AtomicStoreTicket,
};

/// Where a ticket stands in its category: re-queued tickets (class 0) before joined ones
/// (class 1), each by enqueue time; `seq` breaks ties in arrival order.
type OrderKey = (u8, u64, u64);

#[derive(Debug, Clone)]
struct PlayerRecord {
    node: String,
    seat: AtomicStoreSeat,
    enqueued_at_us: u64,
    /// The ticket's key while queued.
    key: OrderKey,
}

#[derive(Debug, Clone)]
struct Lobby {
    code: String,
    members: Vec<PlayerId>,
}

/// The store of one process: every rule of [`AtomicStore`] in memory. Its clock is set by
/// its owner ([`set_clock`](Self::set_clock)): leases expire and tickets are stamped on it.
#[derive(Debug, Default)]
pub struct AtomicMemoryStore {
    now_us: u64,
    last_stamp_us: u64,
    next_epoch: u64,
    next_seq: u64,
    next_match: u64,
    /// node -> (epoch, lease expiry µs)
    leases: HashMap<String, (u64, u64)>,
    /// Nodes that took a lease and were not reaped since.
    nodes: HashSet<String>,
    queues: HashMap<String, BTreeMap<OrderKey, PlayerId>>,
    players: HashMap<PlayerId, PlayerRecord>,
    matches: HashMap<u64, AtomicStoreMatch>,
    lobbies: HashMap<u64, Lobby>,
    codes: HashSet<String>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl AtomicMemoryStore {
    /// An empty store at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store's clock.
    pub fn clock(&self) -> Duration {
        Duration::from_micros(self.now_us)
    }

    /// Moves the store's clock on by `elapsed`.
    pub fn advance(&mut self, elapsed: Duration) {
        self.now_us = self.now_us.saturating_add(micros(elapsed));
    }

    /// Sets the store's clock (it never goes back).
    pub fn set_clock(&mut self, now: Duration) {
        self.now_us = self.now_us.max(micros(now));
    }

    /// Forgets every lease and record, as a Redis that restarted empty does; its clock,
    /// fencing epochs and match ids go on growing, so nothing old is mistaken for new.
    pub fn forget_everything(&mut self) {
        self.leases.clear();
        self.nodes.clear();
        self.queues.clear();
        self.players.clear();
        self.matches.clear();
        self.lobbies.clear();
        self.codes.clear();
    }

    fn is_live(&self, node: &str) -> bool {
        self.leases
            .get(node)
            .is_some_and(|&(_, expiry)| expiry > self.now_us)
    }

    fn check(&self, lease: &AtomicNodeLease) -> Result<(), AtomicStoreError> {
        match self.leases.get(&lease.node) {
            Some(&(epoch, expiry)) if epoch == lease.epoch && expiry > self.now_us => Ok(()),
            _ => Err(AtomicStoreError::LeaseLost),
        }
    }

    /// A strictly growing enqueue stamp.
    fn stamp(&mut self) -> u64 {
        self.last_stamp_us = self.now_us.max(self.last_stamp_us + 1);
        self.last_stamp_us
    }

    fn enqueue(&mut self, player: PlayerId, category: &str, class: u8) {
        let Some(record) = self.players.get_mut(&player) else {
            return;
        };
        self.next_seq += 1;
        let key = (class, record.enqueued_at_us, self.next_seq);
        record.key = key;
        record.seat = AtomicStoreSeat::Queued {
            category: category.to_owned(),
        };
        self.queues
            .entry(category.to_owned())
            .or_default()
            .insert(key, player);
    }

    fn dequeue(&mut self, player: PlayerId) {
        let Some(record) = self.players.get(&player) else {
            return;
        };
        if let AtomicStoreSeat::Queued { category } = &record.seat
            && let Some(queue) = self.queues.get_mut(category)
        {
            queue.remove(&record.key);
            if queue.is_empty() {
                self.queues.remove(category);
            }
        }
    }

    fn close_lobby(&mut self, lobby_id: u64) {
        if let Some(lobby) = self.lobbies.remove(&lobby_id) {
            self.codes.remove(&lobby.code);
        }
    }

    /// Resolves a match: re-queues the players in `requeue` whose home node is alive and
    /// forgets the others; deletes its lobby.
    fn unwind(&mut self, match_id: u64, requeue: &[PlayerId]) -> Vec<PlayerId> {
        let Some(record) = self.matches.remove(&match_id) else {
            return Vec::new();
        };
        if let Some((lobby_id, _)) = record.lobby {
            self.close_lobby(lobby_id);
        }
        let mut requeued = Vec::new();
        for player in record.players {
            let here = AtomicStoreSeat::Matching { match_id };
            let Some(seat) = self
                .players
                .get(&player)
                .map(|r| (r.seat.clone(), r.node.clone()))
            else {
                continue;
            };
            if seat.0 != here {
                continue;
            }
            if requeue.contains(&player) && self.is_live(&seat.1) && !requeued.contains(&player) {
                self.enqueue(player, &record.category, 0);
                requeued.push(player);
            } else {
                self.players.remove(&player);
            }
        }
        requeued
    }

    fn reap_node(&mut self, dead: &str) -> AtomicReaped {
        let mut reaped = AtomicReaped::default();
        let mut own: Vec<PlayerId> = self
            .players
            .iter()
            .filter(|(_, r)| r.node == dead)
            .map(|(p, _)| *p)
            .collect();
        own.sort_unstable();
        for player in own {
            match self.players.get(&player).map(|r| r.seat.clone()) {
                Some(AtomicStoreSeat::Queued { .. }) => {
                    self.dequeue(player);
                    reaped.tickets_removed += 1;
                }
                Some(AtomicStoreSeat::InLobby { lobby_id }) => {
                    self.drop_member(lobby_id, player);
                    reaped.left_lobbies += 1;
                }
                _ => {}
            }
            self.players.remove(&player);
        }
        let mut coordinated: Vec<u64> = self
            .matches
            .iter()
            .filter(|(_, m)| m.coordinator == dead)
            .map(|(id, _)| *id)
            .collect();
        coordinated.sort_unstable();
        for match_id in coordinated {
            let players = self.matches[&match_id].players.clone();
            for player in self.unwind(match_id, &players) {
                let node = self.players[&player].node.clone();
                reaped.requeued.push((player, node));
            }
            reaped.matches_rolled_back.push(match_id);
        }
        self.nodes.remove(dead);
        if !self.is_live(dead) {
            self.leases.remove(dead);
        }
        reaped
    }

    fn drop_member(&mut self, lobby_id: u64, player: PlayerId) {
        if let Some(lobby) = self.lobbies.get_mut(&lobby_id) {
            lobby.members.retain(|p| *p != player);
            if lobby.members.is_empty() {
                self.close_lobby(lobby_id);
            }
        }
    }
}

impl AtomicStore for AtomicMemoryStore {
    fn acquire_lease(
        &mut self,
        node: &str,
        ttl: Duration,
    ) -> Result<AtomicNodeLease, AtomicStoreError> {
        if self.is_live(node) {
            return Err(AtomicStoreError::NodeNameTaken(node.to_owned()));
        }
        // an earlier life of this node left records: they are a dead node's
        self.reap_node(node);
        self.next_epoch += 1;
        let expiry = self.now_us.saturating_add(micros(ttl));
        self.leases
            .insert(node.to_owned(), (self.next_epoch, expiry));
        self.nodes.insert(node.to_owned());
        Ok(AtomicNodeLease {
            node: node.to_owned(),
            epoch: self.next_epoch,
        })
    }

    fn renew_lease(
        &mut self,
        lease: &AtomicNodeLease,
        ttl: Duration,
    ) -> Result<(), AtomicStoreError> {
        self.check(lease)?;
        let expiry = self.now_us.saturating_add(micros(ttl));
        self.leases
            .insert(lease.node.clone(), (lease.epoch, expiry));
        Ok(())
    }

    fn release_lease(&mut self, lease: &AtomicNodeLease) -> Result<(), AtomicStoreError> {
        self.check(lease)?;
        self.leases.remove(&lease.node);
        self.reap_node(&lease.node);
        Ok(())
    }

    fn join(
        &mut self,
        lease: &AtomicNodeLease,
        player: PlayerId,
        category: &str,
        limits: AtomicStoreLimits,
        seniority: Option<u64>,
    ) -> Result<AtomicStoreJoin, AtomicStoreError> {
        self.check(lease)?;
        if let Some(record) = self.players.get(&player) {
            return Ok(if record.node == lease.node {
                AtomicStoreJoin::AlreadyQueued
            } else {
                AtomicStoreJoin::HeldByAnotherNode {
                    node: record.node.clone(),
                }
            });
        }
        let len = self.queues.get(category).map_or(0, BTreeMap::len);
        if len >= limits.capacity {
            return Ok(AtomicStoreJoin::Full {
                capacity: limits.capacity,
            });
        }
        if len == 0 && self.queues.len() >= limits.max_categories {
            return Ok(AtomicStoreJoin::TooManyCategories {
                max: limits.max_categories,
            });
        }
        let enqueued_at_us = match seniority {
            Some(at) => at,
            None => self.stamp(),
        };
        let record = PlayerRecord {
            node: lease.node.clone(),
            seat: AtomicStoreSeat::Matching { match_id: 0 },
            enqueued_at_us,
            key: (1, 0, 0),
        };
        self.players.insert(player, record);
        self.enqueue(player, category, 1);
        Ok(AtomicStoreJoin::Queued { enqueued_at_us })
    }

    fn leave(
        &mut self,
        lease: &AtomicNodeLease,
        player: PlayerId,
    ) -> Result<bool, AtomicStoreError> {
        self.check(lease)?;
        match self.players.get(&player) {
            Some(r) if r.node == lease.node && matches!(r.seat, AtomicStoreSeat::Queued { .. }) => {
                self.dequeue(player);
                self.players.remove(&player);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn ready_categories(&mut self, group_size: usize) -> Result<Vec<String>, AtomicStoreError> {
        let mut ready: Vec<String> = self
            .queues
            .iter()
            .filter(|(_, q)| q.len() >= group_size.max(1))
            .map(|(c, _)| c.clone())
            .collect();
        ready.sort_unstable();
        Ok(ready)
    }

    fn front(
        &mut self,
        category: &str,
        count: usize,
    ) -> Result<Vec<AtomicStoreTicket>, AtomicStoreError> {
        let Some(queue) = self.queues.get(category) else {
            return Ok(Vec::new());
        };
        Ok(queue
            .values()
            .take(count)
            .map(|p| {
                let record = &self.players[p];
                AtomicStoreTicket {
                    player: *p,
                    enqueued_at_us: record.enqueued_at_us,
                    node: record.node.clone(),
                }
            })
            .collect())
    }

    fn claim(
        &mut self,
        lease: &AtomicNodeLease,
        category: &str,
        players: &[PlayerId],
    ) -> Result<AtomicClaim, AtomicStoreError> {
        self.check(lease)?;
        let queued = AtomicStoreSeat::Queued {
            category: category.to_owned(),
        };
        for (i, player) in players.iter().enumerate() {
            let stale = players[..i].contains(player)
                || self.players.get(player).is_none_or(|r| r.seat != queued);
            if stale {
                return Ok(AtomicClaim::Stale { player: *player });
            }
        }
        self.next_match += 1;
        let match_id = self.next_match;
        for player in players {
            self.dequeue(*player);
            if let Some(record) = self.players.get_mut(player) {
                record.seat = AtomicStoreSeat::Matching { match_id };
            }
        }
        let record = AtomicStoreMatch {
            coordinator: lease.node.clone(),
            category: category.to_owned(),
            players: players.to_vec(),
            lobby: None,
        };
        self.matches.insert(match_id, record);
        Ok(AtomicClaim::Claimed { match_id })
    }

    fn open_lobby(
        &mut self,
        lease: &AtomicNodeLease,
        match_id: u64,
        lobby_id: u64,
        code: &str,
    ) -> Result<bool, AtomicStoreError> {
        self.check(lease)?;
        let taken = self.lobbies.contains_key(&lobby_id) || self.codes.contains(code);
        let Some(record) = self.matches.get_mut(&match_id) else {
            return Ok(false);
        };
        if taken || record.coordinator != lease.node || record.lobby.is_some() {
            return Ok(false);
        }
        record.lobby = Some((lobby_id, code.to_owned()));
        self.codes.insert(code.to_owned());
        let lobby = Lobby {
            code: code.to_owned(),
            members: Vec::new(),
        };
        self.lobbies.insert(lobby_id, lobby);
        Ok(true)
    }

    fn commit(
        &mut self,
        lease: &AtomicNodeLease,
        match_id: u64,
    ) -> Result<AtomicCommit, AtomicStoreError> {
        self.check(lease)?;
        let Some(record) = self.matches.get(&match_id) else {
            return Ok(AtomicCommit::NotForming);
        };
        if record.coordinator != lease.node {
            return Ok(AtomicCommit::NotForming);
        }
        let Some((lobby_id, _)) = record.lobby else {
            return Ok(AtomicCommit::NoLobby);
        };
        let here = AtomicStoreSeat::Matching { match_id };
        for player in &record.players {
            let alive = self
                .players
                .get(player)
                .is_some_and(|r| r.seat == here && self.is_live(&r.node));
            if !alive {
                return Ok(AtomicCommit::PlayerNodeGone { player: *player });
            }
        }
        let Some(record) = self.matches.remove(&match_id) else {
            return Ok(AtomicCommit::NotForming);
        };
        for player in &record.players {
            if let Some(r) = self.players.get_mut(player) {
                r.seat = AtomicStoreSeat::InLobby { lobby_id };
            }
        }
        if let Some(lobby) = self.lobbies.get_mut(&lobby_id) {
            lobby.members = record.players;
        }
        Ok(AtomicCommit::Committed)
    }

    fn rollback(
        &mut self,
        lease: &AtomicNodeLease,
        match_id: u64,
        requeue: &[PlayerId],
    ) -> Result<Vec<PlayerId>, AtomicStoreError> {
        self.check(lease)?;
        match self.matches.get(&match_id) {
            Some(record) if record.coordinator == lease.node => Ok(self.unwind(match_id, requeue)),
            _ => Ok(Vec::new()),
        }
    }

    fn leave_lobby(
        &mut self,
        lease: &AtomicNodeLease,
        lobby_id: u64,
        player: PlayerId,
    ) -> Result<bool, AtomicStoreError> {
        self.check(lease)?;
        let here = AtomicStoreSeat::InLobby { lobby_id };
        match self.players.get(&player) {
            Some(r) if r.node == lease.node && r.seat == here => {
                self.players.remove(&player);
                self.drop_member(lobby_id, player);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn dead_nodes(&mut self) -> Result<Vec<String>, AtomicStoreError> {
        let mut dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !self.is_live(n))
            .cloned()
            .collect();
        dead.sort_unstable();
        Ok(dead)
    }

    fn reap(
        &mut self,
        lease: &AtomicNodeLease,
        dead: &str,
    ) -> Result<AtomicReaped, AtomicStoreError> {
        self.check(lease)?;
        if self.is_live(dead) || !self.nodes.contains(dead) {
            return Ok(AtomicReaped::default());
        }
        Ok(self.reap_node(dead))
    }

    fn player(&mut self, player: PlayerId) -> Result<Option<AtomicStorePlayer>, AtomicStoreError> {
        Ok(self.players.get(&player).map(|r| AtomicStorePlayer {
            node: r.node.clone(),
            seat: r.seat.clone(),
            enqueued_at_us: r.enqueued_at_us,
        }))
    }

    fn match_record(
        &mut self,
        match_id: u64,
    ) -> Result<Option<AtomicStoreMatch>, AtomicStoreError> {
        Ok(self.matches.get(&match_id).cloned())
    }

    fn lobby(&mut self, lobby_id: u64) -> Result<Option<AtomicStoreLobby>, AtomicStoreError> {
        Ok(self.lobbies.get(&lobby_id).map(|l| AtomicStoreLobby {
            code: l.code.clone(),
            members: l.members.clone(),
        }))
    }

    fn match_floor(&mut self) -> Result<u64, AtomicStoreError> {
        Ok(self.next_match)
    }

    fn coordinated_by(&mut self, node: &str) -> Result<Vec<u64>, AtomicStoreError> {
        let mut ids: Vec<u64> = self
            .matches
            .iter()
            .filter(|(_, m)| m.coordinator == node)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn stats(&mut self) -> Result<AtomicStoreStats, AtomicStoreError> {
        let live_nodes = self.leases.keys().filter(|n| self.is_live(n)).count();
        let queued_by_category = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(c, q)| (c.clone(), q.len()))
            .collect();
        Ok(AtomicStoreStats {
            live_nodes,
            matches_forming: self.matches.len(),
            queued_by_category,
        })
    }

    fn residue(&mut self) -> Result<usize, AtomicStoreError> {
        let tickets: usize = self.queues.values().map(BTreeMap::len).sum();
        Ok(tickets
            + self.players.len()
            + self.matches.len()
            + self.lobbies.len()
            + self.codes.len())
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::AtomicMemoryStore;
    use crate::testing::store_suite::{interleave::interleave, run_all};

    #[test]
    fn memory_store_passes_the_suite() {
        run_all(AtomicMemoryStore::new);
    }

    #[test]
    fn nodes_interleaved_on_one_memory_store_keep_the_invariants() {
        let (mut commits, mut stale, mut deaths) = (0, 0, 0);
        for seed in 0..200 {
            let report = interleave(&mut AtomicMemoryStore::new(), seed, 3, 16, 400);
            assert!(report.claims > 0, "seed {seed} claimed nothing: {report:?}");
            commits += report.commits;
            stale += report.stale_claims;
            deaths += report.deaths;
        }
        // the runs exercised what they claim to: commits, stale views and node deaths
        assert!(
            commits > 300 && stale > 300 && deaths > 300,
            "{commits} {stale} {deaths}"
        );
    }
}
