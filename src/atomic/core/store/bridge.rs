//! [`AtomicStoreBridge`]: a store's blocking calls on their own thread, so a frame never
//! waits for the network.
//!
//! The frame sends [`AtomicStoreCommand`]s and reads [`AtomicBridgeEvent`]s without
//! blocking. The thread holds the node's lease: it takes it, renews it every third of its
//! time to live, and reaps dead nodes. When the store cannot be reached it retries with
//! backoff (50 ms doubling to 2 s) and answers every command at once with
//! [`AtomicStoreError::Unavailable`], so joins are refused with a clear error instead of
//! waiting. When the lease is lost (it expired during an outage, or the store was flushed)
//! it says so ([`AtomicBridgeEvent::LeaseLost`]); the node then rolls back what it holds,
//! and re-joins its queued players once a new lease is taken
//! ([`AtomicBridgeEvent::LeaseAcquired`]).

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{
    AtomicClaim, AtomicCommit, AtomicNodeLease, AtomicReaped, AtomicStore, AtomicStoreError,
    AtomicStoreJoin, AtomicStoreLimits, AtomicStoreTicket,
};
use crate::shared::player::PlayerId;

/// A write or read for the bridge to run with the node's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AtomicStoreCommand {
    /// [`AtomicStore::join`].
    Join {
        /// The player.
        player: PlayerId,
        /// Its category.
        category: String,
        /// Limits to check.
        limits: AtomicStoreLimits,
        /// The original enqueue time of a re-join.
        seniority: Option<u64>,
    },
    /// [`AtomicStore::leave`].
    Leave {
        /// The player.
        player: PlayerId,
    },
    /// Forms up to `max` FIFO groups of `group_size` in every ready category
    /// ([`claim_fifo`]).
    ClaimFifo {
        /// Players per match.
        group_size: usize,
        /// Most matches.
        max: usize,
    },
    /// [`AtomicStore::open_lobby`].
    OpenLobby {
        /// The match.
        match_id: u64,
        /// The lobby id drawn.
        lobby_id: u64,
        /// The code drawn.
        code: String,
    },
    /// [`AtomicStore::commit`].
    Commit {
        /// The match.
        match_id: u64,
    },
    /// [`AtomicStore::rollback`].
    Rollback {
        /// The match.
        match_id: u64,
        /// The players to put back in front.
        requeue: Vec<PlayerId>,
    },
    /// [`AtomicStore::leave_lobby`].
    LeaveLobby {
        /// The lobby.
        lobby_id: u64,
        /// The player.
        player: PlayerId,
    },
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AtomicStoreAnswer {
    /// Of [`AtomicStoreCommand::Join`].
    Joined(AtomicStoreJoin),
    /// Of `Leave`, `OpenLobby` and `LeaveLobby`: whether it changed something.
    Done(bool),
    /// Of [`AtomicStoreCommand::ClaimFifo`]: the groups claimed, with their category.
    Claimed(Vec<(u64, String, Vec<AtomicStoreTicket>)>),
    /// Of [`AtomicStoreCommand::Commit`].
    Committed(AtomicCommit),
    /// Of [`AtomicStoreCommand::Rollback`]: the players re-queued.
    RolledBack(Vec<PlayerId>),
}

/// What the bridge reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AtomicBridgeEvent {
    /// The answer to the command sent with this tag.
    Answer {
        /// The caller's tag.
        tag: u64,
        /// What the store did.
        result: Result<AtomicStoreAnswer, AtomicStoreError>,
    },
    /// The node holds this lease now.
    LeaseAcquired(AtomicNodeLease),
    /// The node's lease is lost: everything it held in the store is a dead node's.
    LeaseLost,
    /// The store cannot be reached (once per outage).
    Unavailable(String),
    /// The store is reachable again.
    Available,
    /// A dead node was reaped.
    Reaped {
        /// The dead node.
        node: String,
        /// What changed.
        reaped: AtomicReaped,
    },
}

/// Forms up to `max` FIFO groups: in every category holding `group_size` tickets, the
/// first `group_size`, claimed atomically. A group that went stale (another node claimed
/// one of its tickets) is looked at again, up to `max` tries per category.
pub fn claim_fifo<S: AtomicStore + ?Sized>(
    store: &mut S,
    lease: &AtomicNodeLease,
    group_size: usize,
    max: usize,
) -> Result<Vec<(u64, String, Vec<AtomicStoreTicket>)>, AtomicStoreError> {
    let mut claimed = Vec::new();
    claim_fifo_into(store, lease, group_size, max, &mut claimed)?;
    Ok(claimed)
}

/// A claimed FIFO group: its match id, category and tickets.
pub type AtomicFifoClaim = (u64, String, Vec<AtomicStoreTicket>);

/// [`claim_fifo`], pushing each group into `claimed` as soon as the store claimed it: after
/// an error, the groups claimed before it are there (their matches must be run, or they
/// would hold their players until the node dies).
pub fn claim_fifo_into<S: AtomicStore + ?Sized>(
    store: &mut S,
    lease: &AtomicNodeLease,
    group_size: usize,
    max: usize,
    claimed: &mut Vec<AtomicFifoClaim>,
) -> Result<(), AtomicStoreError> {
    let group_size = group_size.max(1);
    let already = claimed.len();
    for category in store.ready_categories(group_size)? {
        let mut tries = 0;
        while claimed.len() - already < max && tries < max {
            tries += 1;
            let group = store.front(&category, group_size)?;
            if group.len() < group_size {
                break;
            }
            let players: Vec<PlayerId> = group.iter().map(|t| t.player).collect();
            if let AtomicClaim::Claimed { match_id } = store.claim(lease, &category, &players)? {
                claimed.push((match_id, category.clone(), group));
            }
        }
    }
    Ok(())
}

/// How the bridge holds its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicBridgeSettings {
    /// The node's name.
    pub node: String,
    /// The lease's time to live; renewed every third of it.
    pub lease_ttl: Duration,
    /// How often dead nodes are looked for and reaped.
    pub reap_every: Duration,
}

impl AtomicBridgeSettings {
    /// A node named `node` with a 3 s lease, reaping every 500 ms.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            lease_ttl: Duration::from_secs(3),
            reap_every: Duration::from_millis(500),
        }
    }
}

const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A store on its own thread; see the [module](self).
#[derive(Debug)]
pub struct AtomicStoreBridge {
    commands: Option<Sender<(u64, AtomicStoreCommand)>>,
    events: Receiver<AtomicBridgeEvent>,
    thread: Option<JoinHandle<()>>,
}

impl AtomicStoreBridge {
    /// Starts the thread; it takes the lease at once (and reports it).
    pub fn start<S: AtomicStore + Send + 'static>(
        store: S,
        settings: AtomicBridgeSettings,
    ) -> Self {
        let (commands, inbox) = channel();
        let (outbox, events) = channel();
        let worker = Worker {
            store,
            settings,
            outbox,
            lease: None,
            renew_at: Instant::now(),
            reap_at: Instant::now(),
            retry_at: None,
            backoff: BACKOFF_FIRST,
        };
        let thread = std::thread::Builder::new()
            .name("matchmaking-store".into())
            .spawn(move || worker.run(inbox))
            .expect("spawn the store bridge thread");
        Self {
            commands: Some(commands),
            events,
            thread: Some(thread),
        }
    }

    /// Sends a command; its answer comes back as [`AtomicBridgeEvent::Answer`] with `tag`.
    pub fn send(&self, tag: u64, command: AtomicStoreCommand) {
        if let Some(commands) = &self.commands {
            let _ = commands.send((tag, command));
        }
    }

    /// The next event, if one is waiting (never blocks).
    pub fn poll(&self) -> Option<AtomicBridgeEvent> {
        self.events.try_recv().ok()
    }

    /// Waits up to `timeout` for the next event (for tests and tools, never a frame).
    pub fn wait(&self, timeout: Duration) -> Option<AtomicBridgeEvent> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for AtomicStoreBridge {
    /// Stops the thread, which releases the lease (so the node's records go at once).
    fn drop(&mut self) {
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Worker<S> {
    store: S,
    settings: AtomicBridgeSettings,
    outbox: Sender<AtomicBridgeEvent>,
    lease: Option<AtomicNodeLease>,
    renew_at: Instant,
    reap_at: Instant,
    /// While the store is unreachable: when to try again.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl<S: AtomicStore> Worker<S> {
    fn run(mut self, inbox: Receiver<(u64, AtomicStoreCommand)>) {
        loop {
            self.housekeep();
            let wait = self.next_due().saturating_duration_since(Instant::now());
            match inbox.recv_timeout(wait) {
                Ok((tag, command)) => {
                    let result = self.execute(command);
                    let _ = self.outbox.send(AtomicBridgeEvent::Answer { tag, result });
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(lease) = self.lease.take() {
            let _ = self.store.release_lease(&lease);
        }
    }

    fn next_due(&self) -> Instant {
        let due = self.retry_at.unwrap_or(self.renew_at.min(self.reap_at));
        due.min(Instant::now() + Duration::from_millis(100))
    }

    fn emit(&self, event: AtomicBridgeEvent) {
        let _ = self.outbox.send(event);
    }

    /// Notes an error: an unreachable store starts the backoff, a lost lease is reported.
    fn failed(&mut self, error: &AtomicStoreError) {
        match error {
            AtomicStoreError::Unavailable(why) => {
                if self.retry_at.is_none() {
                    self.emit(AtomicBridgeEvent::Unavailable(why.clone()));
                    self.backoff = BACKOFF_FIRST;
                } else {
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
                self.retry_at = Some(Instant::now() + self.backoff);
            }
            AtomicStoreError::LeaseLost => {
                let held = self.lease.take().is_some();
                if held {
                    self.emit(AtomicBridgeEvent::LeaseLost);
                }
            }
            _ => {}
        }
    }

    fn succeeded(&mut self) {
        if self.retry_at.take().is_some() {
            self.emit(AtomicBridgeEvent::Available);
        }
    }

    fn housekeep(&mut self) {
        let now = Instant::now();
        if self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        let ttl = self.settings.lease_ttl;
        if self.lease.is_none() || now >= self.renew_at {
            let result = match &self.lease {
                None => self.store.acquire_lease(&self.settings.node, ttl).map(Some),
                Some(lease) => self.store.renew_lease(lease, ttl).map(|()| None),
            };
            match result {
                Ok(acquired) => {
                    self.succeeded();
                    self.renew_at = now + ttl / 3;
                    if let Some(lease) = acquired {
                        self.lease = Some(lease.clone());
                        self.emit(AtomicBridgeEvent::LeaseAcquired(lease));
                    }
                }
                Err(error) => return self.failed(&error),
            }
        }
        if now >= self.reap_at {
            self.reap_at = now + self.settings.reap_every;
            if let Err(error) = self.reap() {
                self.failed(&error);
            }
        }
    }

    fn reap(&mut self) -> Result<(), AtomicStoreError> {
        let Some(lease) = self.lease.clone() else {
            return Ok(());
        };
        for node in self.store.dead_nodes()? {
            let reaped = self.store.reap(&lease, &node)?;
            self.emit(AtomicBridgeEvent::Reaped { node, reaped });
        }
        Ok(())
    }

    fn execute(
        &mut self,
        command: AtomicStoreCommand,
    ) -> Result<AtomicStoreAnswer, AtomicStoreError> {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(AtomicStoreError::Unavailable(
                "the store is unreachable; retrying".into(),
            ));
        }
        let Some(lease) = self.lease.clone() else {
            return Err(AtomicStoreError::LeaseLost);
        };
        let result = self.apply(&lease, command);
        match &result {
            Ok(_) => self.succeeded(),
            Err(error) => self.failed(error),
        }
        result
    }

    fn apply(
        &mut self,
        lease: &AtomicNodeLease,
        command: AtomicStoreCommand,
    ) -> Result<AtomicStoreAnswer, AtomicStoreError> {
        let store = &mut self.store;
        Ok(match command {
            AtomicStoreCommand::Join {
                player,
                category,
                limits,
                seniority,
            } => {
                AtomicStoreAnswer::Joined(store.join(lease, player, &category, limits, seniority)?)
            }
            AtomicStoreCommand::Leave { player } => {
                AtomicStoreAnswer::Done(store.leave(lease, player)?)
            }
            AtomicStoreCommand::ClaimFifo { group_size, max } => {
                AtomicStoreAnswer::Claimed(claim_fifo(store, lease, group_size, max)?)
            }
            AtomicStoreCommand::OpenLobby {
                match_id,
                lobby_id,
                code,
            } => AtomicStoreAnswer::Done(store.open_lobby(lease, match_id, lobby_id, &code)?),
            AtomicStoreCommand::Commit { match_id } => {
                AtomicStoreAnswer::Committed(store.commit(lease, match_id)?)
            }
            AtomicStoreCommand::Rollback { match_id, requeue } => {
                AtomicStoreAnswer::RolledBack(store.rollback(lease, match_id, &requeue)?)
            }
            AtomicStoreCommand::LeaveLobby { lobby_id, player } => {
                AtomicStoreAnswer::Done(store.leave_lobby(lease, lobby_id, player)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::core::store::AtomicMemoryStore;

    const WAIT: Duration = Duration::from_secs(5);

    fn answer(bridge: &AtomicStoreBridge, tag: u64) -> Result<AtomicStoreAnswer, AtomicStoreError> {
        loop {
            match bridge.wait(WAIT).expect("an event") {
                AtomicBridgeEvent::Answer { tag: t, result } if t == tag => return result,
                _ => {}
            }
        }
    }

    #[test]
    fn the_bridge_takes_a_lease_and_runs_fifo_claims() {
        let bridge =
            AtomicStoreBridge::start(AtomicMemoryStore::new(), AtomicBridgeSettings::new("a"));
        let first = bridge.wait(WAIT).expect("an event");
        assert!(
            matches!(first, AtomicBridgeEvent::LeaseAcquired(ref l) if l.node == "a"),
            "{first:?}"
        );
        for player in 1..=5 {
            let category = "duel".to_owned();
            let limits = AtomicStoreLimits::default();
            let join = AtomicStoreCommand::Join {
                player,
                category,
                limits,
                seniority: None,
            };
            bridge.send(player, join);
            assert!(matches!(
                answer(&bridge, player),
                Ok(AtomicStoreAnswer::Joined(AtomicStoreJoin::Queued { .. }))
            ));
        }
        bridge.send(
            10,
            AtomicStoreCommand::ClaimFifo {
                group_size: 2,
                max: 10,
            },
        );
        let Ok(AtomicStoreAnswer::Claimed(groups)) = answer(&bridge, 10) else {
            panic!("no claim");
        };
        let players: Vec<Vec<PlayerId>> = groups
            .iter()
            .map(|(_, _, g)| g.iter().map(|t| t.player).collect())
            .collect();
        assert_eq!(players, vec![vec![1, 2], vec![3, 4]]);
        bridge.send(
            11,
            AtomicStoreCommand::Commit {
                match_id: groups[0].0,
            },
        );
        assert_eq!(
            answer(&bridge, 11),
            Ok(AtomicStoreAnswer::Committed(AtomicCommit::NoLobby))
        );
    }
}
