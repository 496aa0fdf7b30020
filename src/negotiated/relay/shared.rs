//! A relay that shares its facts with other relays ([`NegotiatedSharedFacts`]): its posts,
//! connects and closes go to the shared store, and what the store's log says comes back
//! to the relay's replica and clients (see [`core::shared`](crate::negotiated::core::shared)).
//!
//! The store is called from the frame when it is in memory (relays of one process, tests:
//! deterministic), and from the relay's own thread otherwise (Redis: the frame never waits
//! on the network; the thread reconnects with backoff and keeps the calls in order while
//! the store is unreachable).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy::prelude::*;

use crate::negotiated::core::clock::as_us;
use crate::negotiated::core::fact::{NegotiatedFact, NegotiatedFactId, NegotiatedSignedFact};
use crate::negotiated::core::frame::NegotiatedFrames;
use crate::negotiated::core::relay_core::{NegotiatedRelayCore, NegotiatedRelayLimits};
use crate::negotiated::core::shared::{
    NegotiatedConnection, NegotiatedLogEvent, NegotiatedMemorySharedStore, NegotiatedSharedOp,
    NegotiatedSharedPump, NegotiatedSharedReply, NegotiatedSharedStore, NegotiatedSharedStoreError,
};
use crate::shared::player::PlayerId;

use super::NegotiatedRelayLink;
use super::lag::NegotiatedLagHistogram;
use super::state::NegotiatedRelayState;

/// Opens a shared store, on the relay's thread, for this frame grid and these limits.
pub type NegotiatedSharedOpen = Arc<
    dyn Fn(
            NegotiatedFrames,
            NegotiatedRelayLimits,
        ) -> Result<Box<dyn NegotiatedSharedStore>, NegotiatedSharedStoreError>
        + Send
        + Sync,
>;

/// Where a relay's shared store is.
#[derive(Clone)]
pub enum NegotiatedSharedBackend {
    /// In memory, called from the frame: relay apps of one process (tests).
    Memory(NegotiatedMemorySharedStore),
    /// Opened and called on the relay's own thread (Redis).
    Thread(NegotiatedSharedOpen),
}

impl fmt::Debug for NegotiatedSharedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory(_) => f.write_str("Memory"),
            Self::Thread(_) => f.write_str("Thread"),
        }
    }
}

/// A store of facts this relay shares with other relays, and the name this relay goes by
/// there ([`NegotiatedRelaySettings::shared`](super::NegotiatedRelaySettings::shared)).
/// Every relay sharing it must run the same frame duration and limits, and a clock close
/// to wall-clock time (the default epoch).
#[derive(Clone, Debug)]
pub struct NegotiatedSharedFacts {
    /// Where the store is.
    pub backend: NegotiatedSharedBackend,
    /// The relay's name in the store's records of connections (a random part is added
    /// per run, so a restarted relay is another instance).
    pub relay_name: String,
}

impl NegotiatedSharedFacts {
    /// Relays of one process sharing `store`.
    pub fn memory(store: NegotiatedMemorySharedStore, relay_name: impl Into<String>) -> Self {
        Self {
            backend: NegotiatedSharedBackend::Memory(store),
            relay_name: relay_name.into(),
        }
    }

    /// A store opened on the relay's thread by `open`.
    pub fn thread(
        relay_name: impl Into<String>,
        open: impl Fn(
            NegotiatedFrames,
            NegotiatedRelayLimits,
        ) -> Result<Box<dyn NegotiatedSharedStore>, NegotiatedSharedStoreError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            backend: NegotiatedSharedBackend::Thread(Arc::new(open)),
            relay_name: relay_name.into(),
        }
    }

    /// The store on the Redis at `url` under the key prefix `prefix` (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis(
        url: impl Into<String>,
        prefix: impl Into<String>,
        relay_name: impl Into<String>,
    ) -> Self {
        let (url, prefix) = (url.into(), prefix.into());
        Self::thread(relay_name, move |frames, limits| {
            crate::negotiated::redis::NegotiatedRedisStore::open(&url, &prefix, frames, limits)
                .map(|store| Box::new(store) as Box<dyn NegotiatedSharedStore>)
        })
    }
}

/// Two handles are equal when they are the same store under the same name.
impl PartialEq for NegotiatedSharedFacts {
    fn eq(&self, other: &Self) -> bool {
        let same = match (&self.backend, &other.backend) {
            (NegotiatedSharedBackend::Memory(a), NegotiatedSharedBackend::Memory(b)) => {
                a.same_as(b)
            }
            (NegotiatedSharedBackend::Thread(a), NegotiatedSharedBackend::Thread(b)) => {
                Arc::ptr_eq(a, b)
            }
            _ => false,
        };
        same && self.relay_name == other.relay_name
    }
}

impl Eq for NegotiatedSharedFacts {}

/// How the shared store is doing, as the relay sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegotiatedSharedStatus {
    /// This relay's instance name in the store.
    pub instance: String,
    /// Calls sent and not yet answered.
    pub in_flight: u64,
    /// Why the store does not answer, while it does not.
    pub unavailable: Option<String>,
    /// Whether the relay read the log to its end once (until then, subscriptions wait:
    /// its replica would miss facts).
    pub caught_up: bool,
    /// Round trips to the store so far.
    pub round_trips: u64,
    /// Times the relay read the whole log again (it fell behind a trimmed log).
    pub resets: u64,
    /// How long requests and bids posted through other relays took to reach this one:
    /// from their creation (the poster's estimate of relay time) to this relay's frame
    /// that forwards them.
    pub replication_lag: NegotiatedLagHistogram,
    /// The same for this relay's own posts: from their creation to their verdict.
    pub verdict_lag: NegotiatedLagHistogram,
}

/// Where the calls go.
enum Driver {
    Direct {
        store: NegotiatedMemorySharedStore,
        pump: NegotiatedSharedPump,
    },
    Thread {
        ops: Sender<NegotiatedSharedOp>,
        replies: Mutex<Receiver<NegotiatedSharedReply>>,
        round_trips: Arc<AtomicU64>,
    },
}

/// The relay's side of a shared store.
pub(super) struct SharedLink {
    driver: Driver,
    status: NegotiatedSharedStatus,
    connections: u64,
    open: HashMap<PlayerId, NegotiatedConnection>,
    /// Subscriptions that wait until the replica caught up.
    held: VecDeque<(PlayerId, String, Vec<u64>)>,
    /// Posts of this relay's clients awaiting their verdicts.
    posted: HashSet<NegotiatedFactId>,
}

impl fmt::Debug for SharedLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLink")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl SharedLink {
    /// Starts the link (the thread, for a thread backend).
    pub(super) fn start(
        facts: &NegotiatedSharedFacts,
        frames: NegotiatedFrames,
        limits: NegotiatedRelayLimits,
    ) -> Self {
        let instance = format!("{}-{:08x}", facts.relay_name, fastrand::u32(..));
        let driver = match &facts.backend {
            NegotiatedSharedBackend::Memory(store) => Driver::Direct {
                store: store.clone(),
                pump: NegotiatedSharedPump::new(),
            },
            NegotiatedSharedBackend::Thread(open) => {
                spawn(instance.clone(), open.clone(), frames, limits)
            }
        };
        Self {
            driver,
            status: NegotiatedSharedStatus {
                instance,
                ..default()
            },
            connections: 0,
            open: HashMap::new(),
            held: VecDeque::new(),
            posted: HashSet::new(),
        }
    }

    pub(super) fn status(&self) -> &NegotiatedSharedStatus {
        &self.status
    }

    fn send(&mut self, op: NegotiatedSharedOp) {
        self.status.in_flight += 1;
        match &mut self.driver {
            Driver::Direct { pump, .. } => pump.push(op),
            Driver::Thread { ops, .. } => {
                if ops.send(op).is_err() {
                    error!("negotiated relay: the shared store's thread is gone");
                }
            }
        }
    }

    /// A client posted `fact` at relay time `now`.
    pub(super) fn post(&mut self, author: PlayerId, fact: NegotiatedFact, now: Duration) {
        self.posted
            .insert(NegotiatedSignedFact::new(author, fact.clone()).id());
        self.send(NegotiatedSharedOp::Post { author, fact, now });
    }

    /// A client connected.
    pub(super) fn connect(&mut self, player: PlayerId, now: Duration) {
        self.connections += 1;
        let connection = NegotiatedConnection {
            relay: self.status.instance.clone(),
            number: self.connections,
        };
        self.open.insert(player, connection.clone());
        self.send(NegotiatedSharedOp::Connect {
            player,
            connection,
            now,
        });
    }

    /// A client's connection closed.
    pub(super) fn disconnect(&mut self, player: PlayerId, now: Duration) {
        self.held.retain(|(client, _, _)| *client != player);
        if let Some(connection) = self.open.remove(&player) {
            self.send(NegotiatedSharedOp::Disconnect {
                player,
                connection,
                now,
            });
        }
    }

    /// A subscription, answered at once when the replica caught up, held until then.
    /// Returns it when it may be answered now.
    pub(super) fn subscribe(
        &mut self,
        client: PlayerId,
        category: String,
        frames: Vec<u64>,
    ) -> Option<(String, Vec<u64>)> {
        if self.status.caught_up {
            return Some((category, frames));
        }
        self.held.retain(|(c, _, _)| *c != client);
        self.held.push_back((client, category, frames));
        None
    }

    /// What the store answered since the last call.
    fn replies(&mut self) -> Vec<NegotiatedSharedReply> {
        match &mut self.driver {
            Driver::Direct { store, pump } => {
                let replies = pump.run(store, Duration::ZERO);
                self.status.round_trips = store.round_trips();
                replies
            }
            Driver::Thread {
                replies,
                round_trips,
                ..
            } => {
                self.status.round_trips = round_trips.load(Ordering::Relaxed);
                let mut out = Vec::new();
                let replies = replies
                    .get_mut()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                loop {
                    match replies.try_recv() {
                        Ok(reply) => out.push(reply),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            self.status.unavailable =
                                Some("the shared store's thread stopped".into());
                            break;
                        }
                    }
                }
                out
            }
        }
    }
}

/// Starts the thread that opens the store and runs the pump.
fn spawn(
    instance: String,
    open: NegotiatedSharedOpen,
    frames: NegotiatedFrames,
    limits: NegotiatedRelayLimits,
) -> Driver {
    let (ops_tx, ops_rx) = mpsc::channel();
    let (replies_tx, replies_rx) = mpsc::channel();
    let round_trips = Arc::new(AtomicU64::new(0));
    let counter = round_trips.clone();
    std::thread::Builder::new()
        .name(format!("negotiated-shared-{instance}"))
        .spawn(move || pump_thread(open, frames, limits, ops_rx, replies_tx, counter))
        .expect("spawn the shared store's thread");
    Driver::Thread {
        ops: ops_tx,
        replies: Mutex::new(replies_rx),
        round_trips,
    }
}

/// How long the thread waits on the log when it has nothing to call.
const IDLE_READ_WAIT: Duration = Duration::from_millis(5);

/// The longest pause between attempts while the store is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The thread: opens the store (again, with backoff, until it opens), then runs the pump
/// for as long as the relay lives.
fn pump_thread(
    open: NegotiatedSharedOpen,
    frames: NegotiatedFrames,
    limits: NegotiatedRelayLimits,
    ops: Receiver<NegotiatedSharedOp>,
    replies: Sender<NegotiatedSharedReply>,
    round_trips: Arc<AtomicU64>,
) {
    let mut backoff = Duration::from_millis(20);
    let mut store = loop {
        match open(frames, limits) {
            Ok(store) => break store,
            Err(why) => {
                if replies
                    .send(NegotiatedSharedReply::Unavailable(why.to_string()))
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    let mut pump = NegotiatedSharedPump::new();
    backoff = Duration::from_millis(20);
    loop {
        loop {
            match ops.try_recv() {
                Ok(op) => pump.push(op),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        for reply in pump.run(&mut store, IDLE_READ_WAIT) {
            if replies.send(reply).is_err() {
                return;
            }
        }
        round_trips.store(store.round_trips(), Ordering::Relaxed);
        if pump.is_unavailable() {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = Duration::from_millis(20);
        }
    }
}

/// Exchanges with the shared store, every frame: what the store answered goes to the
/// replica and the clients, in order; held subscriptions are answered once caught up.
pub(super) fn exchange_shared(
    mut state: ResMut<NegotiatedRelayState>,
    mut link: NegotiatedRelayLink,
    time: Res<Time<Real>>,
) {
    let now_us = as_us(state.relay_time(time.elapsed()));
    let state = &mut *state;
    let Some(shared) = state.shared.as_mut() else {
        return;
    };
    for reply in shared.replies() {
        apply_reply(shared, &mut state.core, &mut link, reply, now_us);
    }
    if shared.status.caught_up {
        while let Some((client, category, frames)) = shared.held.pop_front() {
            match state.core.subscribe(client, category, frames) {
                Ok(out) => link.send_all(out),
                Err(refusal) => link.send(client, &refusal.to_message()),
            }
        }
    }
}

/// When a request or a bid was made (relay time, microseconds).
fn created_us(fact: &NegotiatedFact) -> Option<u64> {
    match fact {
        NegotiatedFact::Request(r) => Some(r.created_us),
        NegotiatedFact::Bid(b) => Some(b.created_us),
        _ => None,
    }
}

fn apply_reply(
    shared: &mut SharedLink,
    core: &mut NegotiatedRelayCore,
    link: &mut NegotiatedRelayLink,
    reply: NegotiatedSharedReply,
    now_us: u64,
) {
    match reply {
        NegotiatedSharedReply::Log(entry) => {
            if let NegotiatedLogEvent::Stored(signed) = &entry.event
                && let Some(created_us) = created_us(&signed.fact)
                && let id = signed.id()
                && !core.store().contains(id)
            {
                let lag = now_us.saturating_sub(created_us) / 1000;
                match shared.posted.contains(&id) {
                    true => shared.status.verdict_lag.record(lag),
                    false => shared.status.replication_lag.record(lag),
                }
            }
            link.send_all(core.apply_log(&entry.event));
        }
        NegotiatedSharedReply::Verdict {
            author,
            fact,
            verdict,
        } => {
            shared.status.in_flight = shared.status.in_flight.saturating_sub(1);
            shared.posted.remove(&fact);
            link.send_all(core.apply_verdict(author, fact, &verdict));
        }
        NegotiatedSharedReply::Answered => {
            shared.status.in_flight = shared.status.in_flight.saturating_sub(1);
        }
        NegotiatedSharedReply::CaughtUp => {
            if !shared.status.caught_up {
                info!(
                    "negotiated relay: {} read the shared log: {} facts",
                    shared.status.instance,
                    core.store().len()
                );
            }
            shared.status.caught_up = true;
        }
        NegotiatedSharedReply::Reset => {
            shared.status.resets += 1;
            warn!("negotiated relay: fell behind the shared log; reading it again");
            shared.status.caught_up = false;
            core.forget_replica();
        }
        NegotiatedSharedReply::Unavailable(why) => {
            warn!("negotiated relay: the shared store is unavailable: {why}");
            shared.status.unavailable = Some(why);
        }
        NegotiatedSharedReply::Available => {
            info!("negotiated relay: the shared store answers again");
            shared.status.unavailable = None;
        }
    }
}
