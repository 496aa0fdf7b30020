//! Where a cluster node runs: on its own thread next to a blocking store and inbox
//! (Redis), or in the frame for a store that never blocks (in memory). Either way the
//! plugin hands it player events and takes what it asks to send.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy::prelude::*;

use crate::atomic::core::cluster::{
    AtomicClusterCommand, AtomicClusterCounters, AtomicClusterInbox, AtomicClusterNode,
    AtomicClusterOutput, AtomicClusterSettings, AtomicMemoryInbox,
};
use crate::atomic::core::store::{AtomicMemoryStore, AtomicStore, AtomicStoreStats};

/// A node's store and inbox.
pub type AtomicClusterParts = (
    Box<dyn AtomicStore + Send>,
    Box<dyn AtomicClusterInbox + Send>,
);

/// Opens a node's store and inbox (on the node's thread).
pub type AtomicClusterOpen = Arc<dyn Fn() -> Result<AtomicClusterParts, String> + Send + Sync>;

/// Where a node's store and inbox live.
#[derive(Clone)]
pub enum AtomicClusterBackend {
    /// A blocking store and inbox (Redis), opened by the function on the node's own
    /// thread: the frame never waits for them.
    Thread(AtomicClusterOpen),
    /// The in-memory store and inbox, shared by the nodes of one process: each node runs
    /// in its frame, and the store on the frame's clock (tests, and a cluster in one
    /// process).
    Memory(Arc<Mutex<(AtomicMemoryStore, AtomicMemoryInbox)>>),
}

impl std::fmt::Debug for AtomicClusterBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AtomicClusterBackend::Thread(_) => f.write_str("AtomicClusterBackend::Thread"),
            AtomicClusterBackend::Memory(_) => f.write_str("AtomicClusterBackend::Memory"),
        }
    }
}

impl AtomicClusterBackend {
    /// A new in-memory store and inbox, in the frame; clone it into every node's plugin of
    /// the process to share them.
    pub fn memory() -> Self {
        let parts = (AtomicMemoryStore::new(), AtomicMemoryInbox::new());
        AtomicClusterBackend::Memory(Arc::new(Mutex::new(parts)))
    }

    /// Redis at `url` (feature `redis`): the store and inbox of every node under the key
    /// `prefix`, on the node's own thread.
    #[cfg(feature = "redis")]
    pub fn redis(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        let (url, prefix) = (url.into(), prefix.into());
        AtomicClusterBackend::Thread(Arc::new(move || {
            let store = super::AtomicRedisStore::open(&url, &prefix).map_err(|e| e.to_string())?;
            let inbox = super::AtomicRedisInbox::new(&url, &prefix, Duration::from_millis(500))?;
            Ok((Box::new(store) as _, Box::new(inbox) as _))
        }))
    }
}

/// How often a node on its own thread polls (and at most how long a command waits).
const POLL: Duration = Duration::from_millis(5);
/// The longest pause between polls while the store is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a node on its own thread reports its counters.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// A node's numbers, as the plugin shows them.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    pub(super) counters: AtomicClusterCounters,
    pub(super) reachable: bool,
    /// Matches it coordinates now.
    pub(super) forming: usize,
    /// The whole cluster, as the node last read it.
    pub(super) cluster: Option<AtomicStoreStats>,
}

impl Snapshot {
    fn of(node: &AtomicClusterNode) -> Self {
        Self {
            counters: node.counters().clone(),
            reachable: node.store_reachable(),
            forming: node.forming(),
            cluster: node.cluster().cloned(),
        }
    }
}

/// What a node on its own thread sends back.
enum Report {
    Output(AtomicClusterOutput),
    Numbers(Box<Snapshot>),
    OpenFailed(String),
}

enum Kind {
    Thread {
        commands: Option<Sender<AtomicClusterCommand>>,
        /// In a mutex only for the resource to be `Sync`; never contended.
        reports: Mutex<Receiver<Report>>,
        handle: Option<JoinHandle<()>>,
    },
    Inline {
        node: Box<AtomicClusterNode>,
        parts: Arc<Mutex<(AtomicMemoryStore, AtomicMemoryInbox)>>,
    },
}

/// The node of this server, wherever it runs.
#[derive(Resource)]
pub(super) struct Runner {
    kind: Kind,
    /// Its numbers, as last reported.
    pub(super) numbers: Snapshot,
}

impl Runner {
    pub(super) fn start(
        settings: AtomicClusterSettings,
        backend: AtomicClusterBackend,
        seed: u64,
    ) -> Self {
        let kind = match backend {
            AtomicClusterBackend::Memory(parts) => Kind::Inline {
                node: Box::new(AtomicClusterNode::new(settings, seed)),
                parts,
            },
            AtomicClusterBackend::Thread(open) => {
                let (commands, commands_rx) = mpsc::channel();
                let (reports_tx, reports) = mpsc::channel();
                let name = format!("matchmaking node {}", settings.node);
                let handle = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || work(settings, seed, open, commands_rx, reports_tx))
                    .expect("spawn the node's thread");
                Kind::Thread {
                    commands: Some(commands),
                    reports: Mutex::new(reports),
                    handle: Some(handle),
                }
            }
        };
        Self {
            kind,
            numbers: Snapshot {
                reachable: true,
                ..Snapshot::default()
            },
        }
    }

    /// Hands the node a player event.
    pub(super) fn command(&mut self, command: AtomicClusterCommand, now: Duration) {
        match &mut self.kind {
            Kind::Thread { commands, .. } => {
                if let Some(commands) = commands {
                    let _ = commands.send(command);
                }
            }
            Kind::Inline { node, parts } => {
                let mut parts = parts.lock().unwrap_or_else(|p| p.into_inner());
                let (store, inbox) = &mut *parts;
                store.set_clock(now);
                node.apply(command, now, store, inbox);
            }
        }
    }

    /// What the node asks to do since the last call (an inline node is polled at `now`).
    pub(super) fn take(&mut self, now: Duration) -> Vec<AtomicClusterOutput> {
        match &mut self.kind {
            Kind::Thread { reports, .. } => {
                let reports = reports.get_mut().unwrap_or_else(|p| p.into_inner());
                let mut outputs = Vec::new();
                while let Ok(report) = reports.try_recv() {
                    match report {
                        Report::Output(output) => outputs.push(output),
                        Report::Numbers(numbers) => self.numbers = *numbers,
                        Report::OpenFailed(why) => {
                            self.numbers.reachable = false;
                            warn!("matchmaking cluster: cannot open the store: {why}");
                        }
                    }
                }
                outputs
            }
            Kind::Inline { node, parts } => {
                let mut parts = parts.lock().unwrap_or_else(|p| p.into_inner());
                let (store, inbox) = &mut *parts;
                store.set_clock(now);
                node.poll(now, store, inbox);
                self.numbers = Snapshot::of(node);
                node.take_outputs()
            }
        }
    }
}

impl Drop for Runner {
    /// The node gives its lease up: its records are reaped at once.
    fn drop(&mut self) {
        match &mut self.kind {
            Kind::Thread {
                commands, handle, ..
            } => {
                commands.take();
                if let Some(handle) = handle.take() {
                    let _ = handle.join();
                }
            }
            Kind::Inline { node, parts } => {
                let mut parts = parts.lock().unwrap_or_else(|p| p.into_inner());
                let _ = node.release(&mut parts.0);
                let _ = parts.1.close(node.name());
            }
        }
    }
}

/// The node's thread: opens the store and inbox, then applies commands as they come and
/// polls every [`POLL`] (backing off while the store is unreachable), until the plugin
/// goes away; then it gives its lease up.
fn work(
    settings: AtomicClusterSettings,
    seed: u64,
    open: AtomicClusterOpen,
    commands: Receiver<AtomicClusterCommand>,
    reports: Sender<Report>,
) {
    let start = Instant::now();
    let mut pause = POLL;
    let (mut store, mut inbox) = loop {
        match open() {
            Ok(parts) => break parts,
            Err(why) => {
                let _ = reports.send(Report::OpenFailed(why));
                pause = (pause * 2).min(MAX_BACKOFF);
                match commands.recv_timeout(pause) {
                    Err(RecvTimeoutError::Disconnected) => return,
                    _ => continue, // commands before the store opens are for nobody yet
                }
            }
        }
    };
    let mut node = AtomicClusterNode::new(settings, seed);
    let (mut next_poll, mut next_report) = (Duration::ZERO, Duration::ZERO);
    loop {
        let wait = next_poll.saturating_sub(start.elapsed());
        match commands.recv_timeout(wait) {
            Ok(command) => {
                node.apply(command, start.elapsed(), store.as_mut(), inbox.as_mut());
                while let Ok(command) = commands.try_recv() {
                    node.apply(command, start.elapsed(), store.as_mut(), inbox.as_mut());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = start.elapsed();
        if now >= next_poll {
            node.poll(now, store.as_mut(), inbox.as_mut());
            pause = match node.store_reachable() {
                true => POLL,
                false => (pause * 2).min(MAX_BACKOFF),
            };
            next_poll = now + pause;
        }
        if now >= next_report {
            next_report = now + REPORT_EVERY;
            let mut numbers = Snapshot::of(&node);
            numbers.counters.store_round_trips = store.round_trips();
            numbers.counters.inbox_round_trips = inbox.round_trips();
            let _ = reports.send(Report::Numbers(Box::new(numbers)));
        }
        for output in node.take_outputs() {
            if reports.send(Report::Output(output)).is_err() {
                break;
            }
        }
    }
    let _ = node.release(store.as_mut());
    let _ = inbox.close(node.name());
}
