//! [`AtomicClusterNode`]: one node's players, its lease and its inbox. The matches it
//! coordinates are in `coordinate`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::atomic::core::commit::AtomicCommitTimings;
use crate::atomic::core::protocol::{AtomicErrorKind, AtomicQueueLeftReason, AtomicServerMessage};
use crate::atomic::core::store::{
    AtomicNodeLease, AtomicStore, AtomicStoreError, AtomicStoreJoin, AtomicStoreLimits,
    AtomicStoreSeat,
};
use crate::shared::player::PlayerId;

use super::coordinate::Coordinated;
use super::{AtomicClusterInbox, AtomicClusterMessage};

/// How a node of a cluster runs.
#[derive(Debug, Clone, PartialEq)]
pub struct AtomicClusterSettings {
    /// The node's name, unique in the cluster.
    pub node: String,
    /// Its lease's time to live (renewed every third of it).
    pub lease_ttl: Duration,
    /// How often dead nodes are looked for and reaped.
    pub reap_every: Duration,
    /// How often the seats of this node's queued and matching players are checked against
    /// the store (a lost inbox message is found out then).
    pub reconcile_every: Duration,
    /// Players per match.
    pub group_size: usize,
    /// Most matches claimed per poll.
    pub claims_per_poll: usize,
    /// Queue limits.
    pub limits: AtomicStoreLimits,
    /// The commit's timings.
    pub timings: AtomicCommitTimings,
}

impl AtomicClusterSettings {
    /// A node named `node`: 3 s lease, reaping every 500 ms, reconciling every 2 s, duels.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            lease_ttl: Duration::from_secs(3),
            reap_every: Duration::from_millis(500),
            reconcile_every: Duration::from_secs(2),
            group_size: 2,
            claims_per_poll: 64,
            limits: AtomicStoreLimits::default(),
            timings: AtomicCommitTimings::default(),
        }
    }
}

/// Where one of this node's players stands, as the node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtomicLocalSeat {
    /// Connected, not queued.
    Idle,
    /// Holds a ticket (or will again, once the node holds a lease).
    Queued {
        /// The category.
        category: String,
        /// The ticket's enqueue time in the store's clock, kept for a re-join.
        enqueued_at_us: Option<u64>,
    },
    /// In a match still forming.
    Matching {
        /// The match.
        match_id: u64,
        /// The node coordinating it.
        coordinator: String,
    },
    /// In a committed match's lobby.
    InLobby {
        /// The lobby.
        lobby_id: u64,
    },
}

/// What the node asks its owner to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AtomicClusterOutput {
    /// Send this message to this connected player.
    ToPlayer(PlayerId, AtomicServerMessage),
    /// The node holds this lease now.
    LeaseAcquired(AtomicNodeLease),
    /// The node's lease is lost: what it held in flight was rolled back.
    LeaseLost,
    /// The store cannot be reached (once per outage).
    StoreUnavailable(String),
    /// A match this node coordinated was decided at the store's commit point.
    Outcome(AtomicClusterOutcome),
}

/// How a match a node coordinated ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicClusterOutcome {
    /// The match.
    pub match_id: u64,
    /// Its category.
    pub category: String,
    /// `Committed`, or why it rolled back.
    pub status: crate::atomic::core::commit::AtomicMatchStatus,
    /// Its lobby's code, when it committed.
    pub lobby_code: Option<String>,
    /// Its players, in match order.
    pub players: Vec<PlayerId>,
    /// The players put back in front (a rollback).
    pub requeued: Vec<PlayerId>,
}

#[derive(Debug, Clone)]
pub(super) struct Local {
    pub(super) seat: AtomicLocalSeat,
    /// The health ping in flight.
    pub(super) ping: Option<PingInFlight>,
    /// Queued, but the store does not hold the ticket yet (re-join after a lost lease).
    pub(super) rejoin: bool,
    /// The category and enqueue time of its last ticket (kept while it is matched).
    pub(super) ticket: Option<(String, Option<u64>)>,
    /// The newest match a coordinator told it about: messages of older ones are stale.
    pub(super) last_match: u64,
    /// The newest match whose outcome it was given: a second copy changes nothing.
    pub(super) resolved: u64,
}

/// A health ping a home forwarded to its player, timed by the home.
#[derive(Debug, Clone)]
pub(super) struct PingInFlight {
    pub(super) nonce: u64,
    /// When the home sent it.
    pub(super) sent: Duration,
    /// The match that asked for it, and its coordinator.
    pub(super) match_id: u64,
    pub(super) coordinator: String,
    /// Times it was sent again after the home stalled.
    pub(super) resent: u32,
}

/// How long a home remembers the last match of a player that disconnected: longer than
/// any match takes to resolve.
pub(super) const LEFT_KEPT: Duration = Duration::from_secs(120);

/// Times a home sends a ping again because it stalled while the answer was on its way.
pub(super) const PING_RESENDS: u32 = 2;

/// A player that disconnected, as its home remembers it for [`LEFT_KEPT`].
#[derive(Debug, Clone)]
pub(super) struct Left {
    /// Its newest match: messages of it are not for its next connection.
    pub(super) last_match: u64,
    /// When it left.
    pub(super) at: Duration,
    /// It held a record when it left: the store is checked until that record is gone
    /// (a match that re-queued it after it left, with its coordinator dead).
    pub(super) unchecked: bool,
}

/// Records a departed player left in the store, taken out at the next poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Departure {
    /// It was put in this lobby after it left.
    Lobby(u64, PlayerId),
    /// It was put back in the queue after it left.
    Ticket(PlayerId),
}

/// One node of a cluster: its players, its lease, the matches it coordinates. Feed it the
/// players' events and call [`poll`](Self::poll) often; carry out what
/// [`take_outputs`](Self::take_outputs) returns.
#[derive(Debug)]
pub struct AtomicClusterNode {
    pub(super) settings: AtomicClusterSettings,
    pub(super) lease: Option<AtomicNodeLease>,
    pub(super) players: BTreeMap<PlayerId, Local>,
    pub(super) coordinated: BTreeMap<u64, Coordinated>,
    pub(super) outputs: Vec<AtomicClusterOutput>,
    pub(super) rng: fastrand::Rng,
    pub(super) renew_at: Duration,
    pub(super) reap_at: Duration,
    pub(super) reconcile_at: Duration,
    pub(super) unavailable_since: Option<Duration>,
    /// The last poll, and the end of the last stall seen between two polls.
    pub(super) last_poll: Option<Duration>,
    pub(super) last_stall: Option<Duration>,
    /// Messages to this node's own players and matches, handled in the same poll.
    pub(super) own: Vec<AtomicClusterMessage>,
    /// Records of players that left, to take out of the store at the next poll.
    pub(super) departed: Vec<Departure>,
    /// The newest match of each player that disconnected, and when: messages of it are
    /// not for the player's next connection. Kept for [`LEFT_KEPT`].
    pub(super) left: HashMap<PlayerId, Left>,
    /// Players to check against the store at the next poll (a reaper re-queued them).
    pub(super) recheck: Vec<PlayerId>,
    pub(super) counters: super::AtomicClusterCounters,
    /// The whole cluster, as last read from the store, and when to read it again.
    pub(super) cluster: Option<crate::atomic::core::store::AtomicStoreStats>,
    pub(super) cluster_at: Duration,
}

impl AtomicClusterNode {
    /// A node with no lease yet (it takes one at the first poll).
    pub fn new(settings: AtomicClusterSettings, seed: u64) -> Self {
        Self {
            settings,
            lease: None,
            players: BTreeMap::new(),
            coordinated: BTreeMap::new(),
            outputs: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
            renew_at: Duration::ZERO,
            reap_at: Duration::ZERO,
            reconcile_at: Duration::ZERO,
            unavailable_since: None,
            last_poll: None,
            last_stall: None,
            own: Vec::new(),
            departed: Vec::new(),
            left: HashMap::new(),
            recheck: Vec::new(),
            counters: Default::default(),
            cluster: None,
            cluster_at: Duration::ZERO,
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.settings.node
    }

    /// The lease it holds.
    pub fn lease(&self) -> Option<&AtomicNodeLease> {
        self.lease.as_ref()
    }

    /// Where a connected player stands.
    pub fn seat(&self, player: PlayerId) -> Option<&AtomicLocalSeat> {
        self.players.get(&player).map(|l| &l.seat)
    }

    /// The matches it coordinates, still forming.
    pub fn coordinating(&self) -> impl Iterator<Item = u64> + '_ {
        self.coordinated.keys().copied()
    }

    /// What to carry out, in order.
    pub fn take_outputs(&mut self) -> Vec<AtomicClusterOutput> {
        std::mem::take(&mut self.outputs)
    }

    pub(super) fn tell(&mut self, player: PlayerId, message: AtomicServerMessage) {
        self.outputs
            .push(AtomicClusterOutput::ToPlayer(player, message));
    }

    fn refuse(&mut self, player: PlayerId, kind: AtomicErrorKind, message: String) {
        self.tell(player, AtomicServerMessage::Error { kind, message });
    }

    /// Sends a message to `node`: to this node's own queue, or through the inbox.
    pub(super) fn deliver(
        &mut self,
        node: &str,
        message: AtomicClusterMessage,
        inbox: &mut dyn AtomicClusterInbox,
    ) {
        if node == self.settings.node {
            self.own.push(message);
        } else if let Err(error) = inbox.post(node, &message) {
            // a lost message: the commit's timeouts and the reconciliation cover it
            let _ = error;
        }
    }

    /// Notes a store error: a lost lease rolls back what the node holds in flight.
    pub(super) fn store_failed(&mut self, error: AtomicStoreError, now: Duration) {
        match error {
            AtomicStoreError::LeaseLost => self.lease_lost(),
            AtomicStoreError::Unavailable(why) if self.unavailable_since.is_none() => {
                self.counters.store_unavailable += 1;
                self.unavailable_since = Some(now);
                self.outputs
                    .push(AtomicClusterOutput::StoreUnavailable(why));
            }
            _ => {}
        }
    }

    /// The lease is gone: its records in the store are a dead node's. Matches it
    /// coordinated are rolled back here (their remote players are put back in front by the
    /// node that reaps this one); its own players go back in front once a new lease is
    /// taken, with their seniority.
    pub(super) fn lease_lost(&mut self) {
        if self.lease.take().is_none() {
            return;
        }
        self.outputs.push(AtomicClusterOutput::LeaseLost);
        self.counters.leases_lost += 1;
        let coordinated = std::mem::take(&mut self.coordinated);
        for (match_id, m) in coordinated {
            self.abandon(match_id, &m);
        }
        self.own.clear();
        self.departed.clear();
        let mut matched = Vec::new();
        let mut in_lobbies = Vec::new();
        for (player, local) in self.players.iter_mut() {
            local.ping = None;
            match &local.seat {
                AtomicLocalSeat::Queued { .. } => local.rejoin = true,
                AtomicLocalSeat::Matching { match_id, .. } => {
                    matched.push((*player, *match_id, local.ticket.clone()));
                }
                AtomicLocalSeat::InLobby { lobby_id } => in_lobbies.push((*player, *lobby_id)),
                AtomicLocalSeat::Idle => {}
            }
        }
        // the store takes a dead node's players out of their lobbies: tell them
        for (player, lobby_id) in in_lobbies {
            self.set_seat(player, AtomicLocalSeat::Idle);
            self.tell(player, AtomicServerMessage::LobbyLeft { lobby_id });
        }
        // in other nodes' matches: the store counts them as disconnected now
        for (player, match_id, ticket) in matched {
            match ticket {
                Some((category, Some(since))) => {
                    self.requeue_locally(player, match_id, &category, since);
                }
                _ => self.set_seat(player, AtomicLocalSeat::Idle),
            }
        }
    }

    /// A player connected (a connection under an id already here replaces it).
    pub fn connect(
        &mut self,
        player: PlayerId,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
        now: Duration,
    ) {
        if self.players.contains_key(&player) {
            self.disconnect(player, store, inbox, now);
        }
        // the matches of its last connection are over for this one
        let last = self.left.get(&player).map_or(0, |l| l.last_match);
        let local = Local {
            seat: AtomicLocalSeat::Idle,
            ping: None,
            rejoin: false,
            ticket: None,
            last_match: last,
            resolved: last,
        };
        self.players.insert(player, local);
    }

    /// A player asks for a ticket.
    pub fn join(
        &mut self,
        player: PlayerId,
        category: &str,
        store: &mut dyn AtomicStore,
        now: Duration,
    ) {
        let Some(local) = self.players.get(&player) else {
            return;
        };
        if local.seat != AtomicLocalSeat::Idle {
            let kind = match local.seat {
                AtomicLocalSeat::InLobby { .. } => AtomicErrorKind::AlreadyInLobby,
                AtomicLocalSeat::Matching { .. } => AtomicErrorKind::AlreadyMatching,
                _ => AtomicErrorKind::AlreadyQueued,
            };
            return self.refuse(
                player,
                kind,
                "already queued, matching or in a lobby".into(),
            );
        }
        let Some(lease) = self.lease.clone() else {
            let why = "the matchmaking store is unreachable; try again shortly".to_owned();
            return self.refuse(player, AtomicErrorKind::StoreUnavailable, why);
        };
        if let Err(error) = self.leave_departed(store) {
            let why = format!("the matchmaking store refused the join: {error}");
            self.refuse(player, AtomicErrorKind::StoreUnavailable, why);
            return self.store_failed(error, now);
        }
        let limits = self.settings.limits;
        match store.join(&lease, player, category, limits, None) {
            Ok(AtomicStoreJoin::Queued { enqueued_at_us }) => {
                self.hold_ticket(player, category, enqueued_at_us);
            }
            Ok(AtomicStoreJoin::AlreadyQueued) => self.adopt_ticket(player, category, store, now),
            Ok(AtomicStoreJoin::HeldByAnotherNode { node }) => {
                let why = format!("player {player} is already matchmaking through node {node}");
                self.refuse(player, AtomicErrorKind::AlreadyQueued, why);
            }
            Ok(other) => {
                let why = format!("queue refused the ticket: {other:?}");
                self.refuse(player, AtomicErrorKind::QueueFull, why);
            }
            Err(error) => {
                let why = format!("the matchmaking store refused the join: {error}");
                self.refuse(player, AtomicErrorKind::StoreUnavailable, why);
                self.store_failed(error, now);
            }
        }
    }

    /// The player holds a ticket in `category` since `since` (store time): its seat, and
    /// its answer.
    fn hold_ticket(&mut self, player: PlayerId, category: &str, since: u64) {
        self.set_seat(player, queued(category, Some(since)));
        let joined = AtomicServerMessage::QueueJoined {
            category: category.to_owned(),
            position: 0,
            requeued: false,
        };
        self.tell(player, joined);
    }

    /// The store already holds a record of this player through this node (it came back
    /// before its old one was cleared): a ticket in the same category is taken over, any
    /// other record is refused until its match is resolved.
    fn adopt_ticket(
        &mut self,
        player: PlayerId,
        category: &str,
        store: &mut dyn AtomicStore,
        now: Duration,
    ) {
        let record = match store.player(player) {
            Ok(record) => record,
            Err(error) => {
                let why = format!("the matchmaking store refused the join: {error}");
                self.refuse(player, AtomicErrorKind::StoreUnavailable, why);
                return self.store_failed(error, now);
            }
        };
        match record.map(|r| (r.seat, r.enqueued_at_us)) {
            Some((AtomicStoreSeat::Queued { category: held }, since)) if held == category => {
                self.hold_ticket(player, category, since);
            }
            _ => {
                let why = format!(
                    "player {player} still holds a ticket or a match from its last connection; \
                     try again shortly"
                );
                self.refuse(player, AtomicErrorKind::AlreadyMatching, why);
            }
        }
    }

    /// Every change of a local player's seat goes through here; a queued seat keeps the
    /// ticket's category and enqueue time for a re-join.
    pub(super) fn set_seat(&mut self, player: PlayerId, seat: AtomicLocalSeat) {
        let Some(local) = self.players.get_mut(&player) else {
            return;
        };
        local.seat = match seat {
            AtomicLocalSeat::Queued {
                category,
                enqueued_at_us,
            } => {
                let since = enqueued_at_us.or_else(|| {
                    let kept = local.ticket.as_ref().filter(|(c, _)| *c == category);
                    kept.and_then(|(_, at)| *at)
                });
                local.ticket = Some((category.clone(), since));
                AtomicLocalSeat::Queued {
                    category,
                    enqueued_at_us: since,
                }
            }
            AtomicLocalSeat::Matching { .. } => seat,
            other => {
                local.ticket = None;
                other
            }
        };
        local.rejoin = false;
    }

    /// A player left the queue, or disconnected while queued or matching: its ticket goes;
    /// a match it was taken into is told it is gone. Returns whether it was queued.
    fn withdraw(
        &mut self,
        player: PlayerId,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
        now: Duration,
    ) {
        let Some(lease) = self.lease.clone() else {
            return;
        };
        match store.leave(&lease, player) {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) => {
                // the ticket may still be there: taken out at a later poll
                self.departed.push(Departure::Ticket(player));
                return self.store_failed(error, now);
            }
        }
        // claimed meanwhile: tell its coordinator, and mind that match's messages no more
        if let Ok(Some(record)) = store.player(player)
            && record.node == lease.node
            && let AtomicStoreSeat::Matching { match_id } = record.seat
            && let Ok(Some(m)) = store.match_record(match_id)
        {
            if let Some(local) = self.players.get_mut(&player) {
                local.last_match = local.last_match.max(match_id);
                local.resolved = local.resolved.max(match_id);
            }
            if let Some(left) = self.left.get_mut(&player) {
                left.last_match = left.last_match.max(match_id);
            }
            let gone = AtomicClusterMessage::Gone { match_id, player };
            self.deliver(&m.coordinator, gone, inbox);
        }
    }

    /// A player leaves the queue.
    pub fn leave(
        &mut self,
        player: PlayerId,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
        now: Duration,
    ) {
        match self.seat(player).cloned() {
            Some(AtomicLocalSeat::Queued { category, .. }) => {
                self.withdraw(player, store, inbox, now);
                self.set_seat(player, AtomicLocalSeat::Idle);
                let left = AtomicServerMessage::QueueLeft {
                    category,
                    reason: AtomicQueueLeftReason::Requested,
                };
                self.tell(player, left);
            }
            Some(AtomicLocalSeat::Matching { .. }) => {
                let why = "a match is forming for you: wait for its outcome".to_owned();
                self.refuse(player, AtomicErrorKind::AlreadyMatching, why);
            }
            Some(_) => {
                let why = "you hold no ticket".to_owned();
                self.refuse(player, AtomicErrorKind::NotQueued, why);
            }
            None => {}
        }
    }

    /// A player's connection closed.
    pub fn disconnect(
        &mut self,
        player: PlayerId,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
        now: Duration,
    ) {
        let Some(local) = self.players.remove(&player) else {
            return;
        };
        let newest = match local.seat {
            AtomicLocalSeat::Matching { match_id, .. } => match_id.max(local.last_match),
            _ => local.last_match,
        };
        let held = !matches!(local.seat, AtomicLocalSeat::Idle);
        if newest > 0 || held {
            let left = Left {
                last_match: newest,
                at: now,
                unchecked: held,
            };
            self.left.insert(player, left);
        }
        match local.seat {
            AtomicLocalSeat::Idle => {}
            AtomicLocalSeat::Queued { .. } => self.withdraw(player, store, inbox, now),
            AtomicLocalSeat::Matching {
                match_id,
                coordinator,
            } => {
                let gone = AtomicClusterMessage::Gone { match_id, player };
                self.deliver(&coordinator, gone, inbox);
            }
            AtomicLocalSeat::InLobby { lobby_id } => {
                if let Some(lease) = self.lease.clone()
                    && let Err(error) = store.leave_lobby(&lease, lobby_id, player)
                {
                    self.departed.push(Departure::Lobby(lobby_id, player));
                    self.store_failed(error, now);
                }
            }
        }
    }

    /// A player leaves its lobby.
    pub fn leave_lobby(&mut self, player: PlayerId, store: &mut dyn AtomicStore, now: Duration) {
        let Some(AtomicLocalSeat::InLobby { lobby_id }) = self.seat(player).cloned() else {
            return;
        };
        self.set_seat(player, AtomicLocalSeat::Idle);
        self.tell(player, AtomicServerMessage::LobbyLeft { lobby_id });
        if let Some(lease) = self.lease.clone()
            && let Err(error) = store.leave_lobby(&lease, lobby_id, player)
        {
            self.departed.push(Departure::Lobby(lobby_id, player));
            self.store_failed(error, now);
        }
    }

    /// Advances the node to `now`: its lease, reaping, its inbox, new claims, the commits
    /// it coordinates and the reconciliation of its players' seats.
    pub fn poll(
        &mut self,
        now: Duration,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
    ) {
        let threshold = self.settings.timings.stall_threshold;
        if self
            .last_poll
            .is_some_and(|p| now.saturating_sub(p) > threshold)
        {
            self.last_stall = Some(now);
        }
        self.last_poll = Some(now);
        if let Err(error) = self.hold_lease(now, store) {
            return self.store_failed(error, now);
        }
        // an inbox that cannot be read now is read at the next poll
        let messages = inbox.take(&self.settings.node, 4096).unwrap_or_default();
        for message in messages {
            self.handle(message, now, inbox);
        }
        self.handle_own(now, inbox);
        let steps = [
            Self::take_out_departed,
            Self::reap,
            Self::claim,
            Self::advance,
            Self::reconcile,
            Self::read_cluster,
        ];
        for step in steps {
            if self.lease.is_none() {
                return;
            }
            if let Err(error) = step(self, now, store, inbox) {
                return self.store_failed(error, now);
            }
            self.handle_own(now, inbox);
        }
        // every step reached the store (the claims ask it at every poll)
        self.unavailable_since = None;
    }

    pub(super) fn handle_own(&mut self, now: Duration, inbox: &mut dyn AtomicClusterInbox) {
        while !self.own.is_empty() {
            for message in std::mem::take(&mut self.own) {
                self.handle(message, now, inbox);
            }
        }
    }
}

pub(super) fn queued(category: &str, enqueued_at_us: Option<u64>) -> AtomicLocalSeat {
    AtomicLocalSeat::Queued {
        category: category.to_owned(),
        enqueued_at_us,
    }
}

/// For the simulation: every local seat, by player.
impl AtomicClusterNode {
    /// Every connected player and its seat.
    pub fn seats(&self) -> HashMap<PlayerId, AtomicLocalSeat> {
        self.players
            .iter()
            .map(|(p, l)| (*p, l.seat.clone()))
            .collect()
    }
}
