//! A node's upkeep at every poll: its lease, reaping dead nodes, clearing what departed
//! players left in the store, and checking its players' seats against the store now and
//! then (an outcome lost with a dead coordinator is found out there).

use std::time::Duration;

use crate::atomic::core::protocol::{AtomicErrorKind, AtomicMatchedPlayer, AtomicServerMessage};
use crate::atomic::core::store::{
    AtomicNodeLease, AtomicStore, AtomicStoreError, AtomicStoreJoin, AtomicStoreSeat,
};
use crate::shared::player::PlayerId;

use super::home::called_off;
use super::node::{AtomicClusterNode, AtomicClusterOutput, AtomicLocalSeat, Departure, queued};
use super::{AtomicClusterInbox, AtomicClusterMessage};

/// How often a node reads the whole cluster's numbers.
const CLUSTER_EVERY: Duration = Duration::from_secs(1);

impl AtomicClusterNode {
    /// Takes or renews the lease. While the store is unreachable for longer than the
    /// lease lives, the lease is taken for lost (a partition from the store).
    pub(super) fn hold_lease(
        &mut self,
        now: Duration,
        store: &mut dyn AtomicStore,
    ) -> Result<(), AtomicStoreError> {
        let ttl = self.settings.lease_ttl;
        if let Some(since) = self.unavailable_since
            && now.saturating_sub(since) > ttl
        {
            self.lease_lost();
        }
        match self.lease.clone() {
            Some(lease) if now >= self.renew_at => {
                store.renew_lease(&lease, ttl)?;
                self.renew_at = now + ttl / 3;
            }
            Some(_) => {}
            None => {
                // read first: messages of matches claimed before this lease are of its last
                // life (and a failed read takes no lease)
                let floor = store.match_floor()?;
                let lease = store.acquire_lease(&self.settings.node, ttl)?;
                self.renew_at = now + ttl / 3;
                self.lease = Some(lease.clone());
                self.outputs.push(AtomicClusterOutput::LeaseAcquired(lease));
                for local in self.players.values_mut() {
                    local.last_match = local.last_match.max(floor);
                    local.resolved = local.resolved.max(floor);
                }
                self.rejoin_all(store)?;
            }
        }
        Ok(())
    }

    /// Puts back every queued player the store lost, with its seniority.
    fn rejoin_all(&mut self, store: &mut dyn AtomicStore) -> Result<(), AtomicStoreError> {
        let Some(lease) = self.lease.clone() else {
            return Ok(());
        };
        let waiting: Vec<(PlayerId, String, Option<u64>)> = self
            .players
            .iter()
            .filter(|(_, l)| l.rejoin)
            .filter_map(|(p, l)| match &l.seat {
                AtomicLocalSeat::Queued {
                    category,
                    enqueued_at_us,
                } => Some((*p, category.clone(), *enqueued_at_us)),
                _ => None,
            })
            .collect();
        for (player, category, seniority) in waiting {
            self.rejoin(&lease, player, &category, seniority, store)?;
        }
        Ok(())
    }

    /// Queues a connected, waiting player again whose ticket the store lost.
    fn rejoin(
        &mut self,
        lease: &AtomicNodeLease,
        player: PlayerId,
        category: &str,
        seniority: Option<u64>,
        store: &mut dyn AtomicStore,
    ) -> Result<(), AtomicStoreError> {
        let limits = self.settings.limits;
        match store.join(lease, player, category, limits, seniority)? {
            AtomicStoreJoin::Queued { enqueued_at_us } => {
                self.set_seat(player, queued(category, Some(enqueued_at_us)));
            }
            AtomicStoreJoin::AlreadyQueued => self.set_seat(player, queued(category, seniority)),
            refused => {
                self.set_seat(player, AtomicLocalSeat::Idle);
                let error = AtomicServerMessage::Error {
                    kind: AtomicErrorKind::QueueFull,
                    message: format!("your ticket could not be queued again: {refused:?}"),
                };
                self.tell(player, error);
            }
        }
        Ok(())
    }

    /// Reaps dead nodes now and then; the homes of the players it puts back in front are
    /// told to check them at once.
    pub(super) fn reap(
        &mut self,
        now: Duration,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
    ) -> Result<(), AtomicStoreError> {
        if now < self.reap_at {
            return Ok(());
        }
        self.reap_at = now + self.settings.reap_every;
        let Some(lease) = self.lease.clone() else {
            return Ok(());
        };
        for dead in store.dead_nodes()? {
            let reaped = store.reap(&lease, &dead)?;
            self.counters.reaped += 1;
            // what the dead node left unread in its inbox is for nobody now (unless it took
            // a lease again meanwhile: then nothing was reaped)
            if reaped != crate::atomic::core::store::AtomicReaped::default() {
                let _ = inbox.close(&dead);
            }
            for (player, home) in reaped.requeued {
                self.deliver(&home, AtomicClusterMessage::Reaped { player }, inbox);
            }
        }
        Ok(())
    }

    /// Reads the whole cluster's numbers from the store about once a second.
    pub(super) fn read_cluster(
        &mut self,
        now: Duration,
        store: &mut dyn AtomicStore,
        _inbox: &mut dyn AtomicClusterInbox,
    ) -> Result<(), AtomicStoreError> {
        if now >= self.cluster_at {
            self.cluster_at = now + CLUSTER_EVERY;
            self.cluster = Some(store.stats()?);
        }
        Ok(())
    }

    /// Clears what departed players were put in after they left (as a poll step).
    pub(super) fn take_out_departed(
        &mut self,
        _now: Duration,
        store: &mut dyn AtomicStore,
        _inbox: &mut dyn AtomicClusterInbox,
    ) -> Result<(), AtomicStoreError> {
        self.leave_departed(store)
    }

    /// Clears what departed players were put in after they left: a lobby, a ticket. What
    /// the store refuses stays for the next poll.
    pub(super) fn leave_departed(
        &mut self,
        store: &mut dyn AtomicStore,
    ) -> Result<(), AtomicStoreError> {
        let Some(lease) = self.lease.clone() else {
            return Ok(());
        };
        while let Some(departure) = self.departed.last().cloned() {
            match departure {
                Departure::Lobby(lobby_id, player) => {
                    store.leave_lobby(&lease, lobby_id, player)?;
                }
                Departure::Ticket(player) if !self.players.contains_key(&player) => {
                    store.leave(&lease, player)?;
                }
                Departure::Ticket(player) => {
                    // connected again: only a ticket it did not take itself goes
                    if self.seat(player) == Some(&AtomicLocalSeat::Idle) {
                        store.leave(&lease, player)?;
                    }
                }
            }
            self.departed.pop();
        }
        Ok(())
    }

    /// Checks the seats of this node's queued and matching players against the store,
    /// now and then: an outcome whose coordinator died is found out here.
    pub(super) fn reconcile(
        &mut self,
        now: Duration,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
    ) -> Result<(), AtomicStoreError> {
        let Some(lease) = self.lease.clone() else {
            return Ok(());
        };
        // players a reaper named are checked at once, every other one now and then
        let mut players = std::mem::take(&mut self.recheck);
        if now >= self.reconcile_at {
            self.reconcile_at = now + self.settings.reconcile_every;
            self.left
                .retain(|_, l| now.saturating_sub(l.at) < super::node::LEFT_KEPT);
            self.clear_left_records(&lease, store, inbox)?;
            self.roll_back_orphans(&lease, store, inbox)?;
            players.extend(self.players.keys().copied());
        }
        players.sort_unstable();
        players.dedup();
        for player in players {
            let seat = match self.seat(player) {
                Some(
                    seat @ (AtomicLocalSeat::Queued { .. } | AtomicLocalSeat::Matching { .. }),
                ) => seat.clone(),
                _ => continue,
            };
            let found = store.player(player)?.filter(|r| r.node == lease.node);
            self.reconcile_one(&lease, player, seat, found.map(|r| r.seat), store)?;
        }
        Ok(())
    }

    /// Clears what players that left still hold in the store: a ticket a match put back
    /// after they left, a lobby; a match still forming hears again that they are gone.
    fn clear_left_records(
        &mut self,
        lease: &AtomicNodeLease,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
    ) -> Result<(), AtomicStoreError> {
        let left: Vec<PlayerId> = self
            .left
            .iter()
            .filter(|(p, l)| {
                l.unchecked && self.seat(**p).is_none_or(|s| *s == AtomicLocalSeat::Idle)
            })
            .map(|(p, _)| *p)
            .collect();
        for player in left {
            let found = store.player(player)?.filter(|r| r.node == lease.node);
            let cleared = match found.map(|r| r.seat) {
                None => true,
                Some(AtomicStoreSeat::Queued { .. }) => store.leave(lease, player).map(|_| true)?,
                Some(AtomicStoreSeat::InLobby { lobby_id }) => {
                    store.leave_lobby(lease, lobby_id, player).map(|_| true)?
                }
                Some(AtomicStoreSeat::Matching { match_id }) => {
                    if let Some(m) = store.match_record(match_id)? {
                        let gone = AtomicClusterMessage::Gone { match_id, player };
                        self.deliver(&m.coordinator, gone, inbox);
                    }
                    false
                }
            };
            if cleared && let Some(l) = self.left.get_mut(&player) {
                l.unchecked = false;
            }
        }
        Ok(())
    }

    /// Rolls back the matches the store says this node coordinates that it does not know
    /// (a claim whose reply was lost): every player goes back in front and is told.
    fn roll_back_orphans(
        &mut self,
        lease: &AtomicNodeLease,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
    ) -> Result<(), AtomicStoreError> {
        for match_id in store.coordinated_by(&lease.node)? {
            if self.coordinated.contains_key(&match_id) {
                continue;
            }
            let Some(m) = store.match_record(match_id)? else {
                continue;
            };
            let requeued = store.rollback(lease, match_id, &m.players)?;
            *self
                .counters
                .rolled_back
                .entry("aborted".into())
                .or_default() += 1;
            for player in requeued {
                let Some(home) = store.player(player)?.map(|r| r.node) else {
                    continue;
                };
                let seat = super::AtomicClusterSeat::Requeued {
                    category: m.category.clone(),
                };
                let message = AtomicClusterMessage::ToPlayer {
                    match_id,
                    coordinator: lease.node.clone(),
                    player,
                    message: called_off(match_id, true),
                    seat,
                };
                self.deliver(&home, message, inbox);
            }
        }
        Ok(())
    }

    fn reconcile_one(
        &mut self,
        lease: &AtomicNodeLease,
        player: PlayerId,
        seat: AtomicLocalSeat,
        found: Option<AtomicStoreSeat>,
        store: &mut dyn AtomicStore,
    ) -> Result<(), AtomicStoreError> {
        let forming = match &seat {
            AtomicLocalSeat::Matching { match_id, .. } => Some(*match_id),
            _ => None,
        };
        match (seat, found) {
            (AtomicLocalSeat::Queued { .. }, Some(AtomicStoreSeat::Queued { .. })) => {}
            (_, Some(AtomicStoreSeat::Matching { match_id })) => {
                // claimed: its ping is on its way (or it is the match it is in)
                if forming != Some(match_id)
                    && let Some(m) = store.match_record(match_id)?
                {
                    if let Some(old) = forming {
                        self.tell(player, called_off(old, true));
                        self.mark_resolved(player, old);
                    }
                    let coordinator = m.coordinator;
                    let seat = AtomicLocalSeat::Matching {
                        match_id,
                        coordinator,
                    };
                    self.set_seat(player, seat);
                }
            }
            (_, Some(AtomicStoreSeat::Queued { category })) => {
                if let Some(match_id) = forming {
                    self.tell(player, called_off(match_id, true));
                    self.mark_resolved(player, match_id);
                }
                self.set_seat(player, queued(&category, None));
            }
            (_, Some(AtomicStoreSeat::InLobby { lobby_id })) => {
                self.found_in_lobby(player, forming, lobby_id, store)?;
            }
            (
                AtomicLocalSeat::Queued {
                    category,
                    enqueued_at_us,
                },
                None,
            ) => self.rejoin(lease, player, &category, enqueued_at_us, store)?,
            (_, None) => {
                if let Some(match_id) = forming {
                    self.tell(player, called_off(match_id, false));
                    self.mark_resolved(player, match_id);
                }
                self.set_seat(player, AtomicLocalSeat::Idle);
            }
        }
        Ok(())
    }

    /// The store holds the player in a committed lobby its home was never told of (the
    /// coordinator died after the commit point): it is told now.
    fn found_in_lobby(
        &mut self,
        player: PlayerId,
        forming: Option<u64>,
        lobby_id: u64,
        store: &mut dyn AtomicStore,
    ) -> Result<(), AtomicStoreError> {
        let Some(lobby) = store.lobby(lobby_id)? else {
            return Ok(());
        };
        let Some(local) = self.players.get(&player) else {
            return Ok(());
        };
        let match_id = forming.unwrap_or(local.last_match);
        let category = local
            .ticket
            .as_ref()
            .map(|(c, _)| c.clone())
            .unwrap_or_default();
        let players = lobby
            .members
            .iter()
            .enumerate()
            .map(|(i, p)| AtomicMatchedPlayer {
                player: *p,
                latency: Duration::ZERO,
                host: i == 0,
            })
            .collect();
        let found = AtomicServerMessage::MatchFound {
            match_id,
            lobby_id,
            lobby_code: lobby.code,
            category,
            players,
        };
        self.set_seat(player, AtomicLocalSeat::InLobby { lobby_id });
        self.mark_resolved(player, match_id);
        self.tell(player, found);
        Ok(())
    }

    /// Messages of `match_id` and older are done with for this player.
    pub(super) fn mark_resolved(&mut self, player: PlayerId, match_id: u64) {
        if let Some(local) = self.players.get_mut(&player) {
            local.last_match = local.last_match.max(match_id);
            local.resolved = local.resolved.max(match_id);
            local.ping = None;
        }
    }
}
