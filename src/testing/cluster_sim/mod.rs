//! A cluster of [`AtomicClusterNode`]s on one store, with simulated players and faults,
//! deterministic per seed: nodes killed and restarted, nodes stalled past their lease,
//! players that disconnect and come back under the same id (sometimes in the same
//! step), inbox messages delivered twice, the store restarted empty.
//!
//! Checked at every step: a player and its home agree on the lobby it is in, nobody is in
//! two lobbies, nobody is told of a match without it, no match has two lobbies, a healthy
//! player that nothing interrupted is never dropped. At the end, once faults stop and the
//! cluster is quiet: every committed match was seen by each of its players (or the player
//! was interrupted meanwhile), each player's belief, its home's seat and the store agree,
//! and once everyone has gone nothing is left in the store.

mod player;

use std::time::Duration;

use crate::atomic::core::cluster::{
    AtomicClusterNode, AtomicClusterOutput, AtomicClusterSettings, AtomicLocalSeat,
    AtomicMemoryInbox,
};

use super::partitioned_store::AtomicPartitionedStore;
use super::store_suite::AtomicStoreUnderTest;
use player::{Action, Belief, Observed, SimPlayer};

const CATEGORIES: [&str; 2] = ["duel", "ranked"];

/// How a simulation runs.
#[derive(Debug, Clone, PartialEq)]
pub struct AtomicClusterSimSettings {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Players.
    pub players: u64,
    /// Steps with faults, then the same again quiet.
    pub steps: usize,
    /// Simulated time per step.
    pub step: Duration,
    /// Whether faults are injected.
    pub faults: bool,
    /// How often each fault strikes.
    pub rates: AtomicClusterSimRates,
    /// Share of inbox messages delivered twice.
    pub duplicate: f64,
    /// Share of players whose round trip is 700 ms (unhealthy).
    pub unhealthy: f64,
    /// Share of store calls that fail as unreachable while faults are on: half before they
    /// reach the store, half done with their reply lost (a Redis timeout).
    pub store_failures: f64,
    /// Time for the cluster to become quiet once faults stop: longer than a lease, a dead
    /// node's reaping and a few matches' commits one after the other.
    pub quiet: Duration,
    /// Time for the store to empty once every player has gone.
    pub empty: Duration,
    /// Prints to stderr what happens to this player (to debug a violation).
    pub trace: Option<u64>,
}

impl Default for AtomicClusterSimSettings {
    fn default() -> Self {
        Self {
            nodes: 3,
            players: 30,
            steps: 3000,
            step: Duration::from_millis(20),
            faults: true,
            rates: AtomicClusterSimRates::default(),
            duplicate: 0.05,
            unhealthy: 0.15,
            store_failures: 0.01,
            quiet: Duration::from_secs(30),
            empty: Duration::from_secs(10),
            trace: None,
        }
    }
}

/// How often each fault strikes: once in so many steps, on average (0: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicClusterSimRates {
    /// A node is killed (while every node is up), and restarted 4 to 8 s later.
    pub kill: u32,
    /// A node stalls for 0.5, 1.5 or 4 s (longer than its lease).
    pub stall: u32,
    /// A player's connection closes (one in five comes back in the same step).
    pub disconnect: u32,
    /// The store restarts empty.
    pub restart: u32,
}

impl Default for AtomicClusterSimRates {
    fn default() -> Self {
        Self {
            kill: 800,
            stall: 600,
            disconnect: 60,
            restart: 2500,
        }
    }
}

fn strikes(rng: &mut fastrand::Rng, one_in: u32) -> bool {
    one_in > 0 && rng.u32(..one_in) == 0
}

/// What a simulation did, so a caller can check it exercised the cluster.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AtomicClusterSimReport {
    /// Matches seen committed.
    pub commits: usize,
    /// Match cancellations told to players.
    pub cancelled: usize,
    /// Players dropped from a match (not re-queued).
    pub dropped: usize,
    /// Nodes killed.
    pub deaths: usize,
    /// Nodes stalled.
    pub stalls: usize,
    /// Leases lost.
    pub lease_losses: usize,
    /// Disconnects of players.
    pub disconnects: usize,
    /// Store restarts.
    pub restarts: usize,
    /// Inbox messages posted, and delivered twice.
    pub posted: u64,
    /// Inbox messages delivered twice.
    pub duplicated: u64,
    /// Store calls that failed before reaching the store, and done with their reply lost.
    pub store_refused: u64,
    /// Store calls done whose reply was lost.
    pub store_replies_lost: u64,
}

struct SimNode {
    name: String,
    node: Option<AtomicClusterNode>,
    stalled_until: Duration,
    revive_at: Duration,
}

struct Sim<'s, S> {
    /// The store, behind random failures of its calls while faults are on.
    store: AtomicPartitionedStore<&'s mut S>,
    restart: &'s mut dyn FnMut(&mut S),
    settings: AtomicClusterSimSettings,
    inbox: AtomicMemoryInbox,
    nodes: Vec<SimNode>,
    players: Vec<SimPlayer>,
    rng: fastrand::Rng,
    /// The faults' own draws: which fault strikes at which step depends on the seed alone.
    faults_rng: fastrand::Rng,
    now: Duration,
    step: usize,
    seed: u64,
    observed: Observed,
    report: AtomicClusterSimReport,
}

/// Runs a simulation on `store`; `restart` empties it as a restarted Redis would.
/// Returns what it did, or every violation found.
pub fn run_cluster_sim<S: AtomicStoreUnderTest>(
    store: &mut S,
    restart: &mut dyn FnMut(&mut S),
    seed: u64,
    settings: AtomicClusterSimSettings,
) -> Result<AtomicClusterSimReport, Vec<String>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut inbox = AtomicMemoryInbox::new();
    inbox.duplicate(settings.duplicate, seed ^ 0x5eed);
    let nodes = (0..settings.nodes)
        .map(|i| SimNode {
            name: format!("node-{i}"),
            node: Some(new_node(i, seed)),
            stalled_until: Duration::ZERO,
            revive_at: Duration::MAX,
        })
        .collect();
    let players = (1..=settings.players)
        .map(|id| {
            let rtt = if rng.f64() < settings.unhealthy {
                Duration::from_millis(700)
            } else {
                Duration::from_millis(rng.u64(10..150))
            };
            let home = rng.usize(..settings.nodes);
            let mut p = SimPlayer::new(id, home, rtt);
            p.schedule(Duration::ZERO, Action::Connect);
            p
        })
        .collect();
    let failures = settings.store_failures;
    let mut sim = Sim {
        store: AtomicPartitionedStore::new(store),
        restart,
        settings,
        inbox,
        nodes,
        players,
        rng,
        faults_rng: fastrand::Rng::with_seed(seed ^ 0xfa17),
        now: Duration::ZERO,
        step: 0,
        seed,
        observed: Observed::default(),
        report: AtomicClusterSimReport::default(),
    };
    if sim.settings.faults && failures > 0.0 {
        sim.store.flaky = Some((failures, fastrand::Rng::with_seed(seed ^ 0x57_0e)));
    }
    for _ in 0..sim.settings.steps {
        sim.tick(sim.settings.faults);
    }
    sim.quiet();
    sim.check_end();
    sim.drain();
    if sim.observed.violations.is_empty() {
        sim.report.commits = sim.observed.matches.len();
        sim.report.cancelled = sim.observed.cancelled;
        sim.report.dropped = sim.observed.dropped_unhealthy;
        sim.report.posted = sim.inbox.posted();
        sim.report.duplicated = sim.inbox.duplicated();
        sim.report.store_refused = sim.store.refused;
        sim.report.store_replies_lost = sim.store.lost_replies;
        Ok(sim.report)
    } else {
        Err(sim.observed.violations)
    }
}

fn new_node(index: usize, seed: u64) -> AtomicClusterNode {
    let settings = AtomicClusterSettings::new(format!("node-{index}"));
    AtomicClusterNode::new(settings, seed.wrapping_mul(31).wrapping_add(index as u64))
}

impl<S: AtomicStoreUnderTest> Sim<'_, S> {
    fn tick(&mut self, faults: bool) {
        self.step += 1;
        self.now += self.settings.step;
        self.store.inner.pass(self.settings.step);
        if faults {
            self.inject();
        }
        self.revive_due();
        self.act();
        self.poll_nodes();
        self.check_step();
    }

    fn usable(&self, node: usize) -> bool {
        let n = &self.nodes[node];
        n.node.is_some() && n.stalled_until <= self.now
    }

    /// Each player does what is due, if its home is up.
    fn act(&mut self) {
        for i in 0..self.players.len() {
            let home = self.players[i].home;
            if home.is_some_and(|h| !self.usable(h)) {
                continue; // its home is stalled: its packets wait in the socket
            }
            for action in self.players[i].take_due(self.now) {
                self.carry_out(i, action);
            }
        }
    }

    fn carry_out(&mut self, i: usize, action: Action) {
        let id = self.players[i].id;
        if self.settings.trace == Some(id) {
            eprintln!(
                "{} {id} does {action:?} (home {:?})",
                self.step, self.players[i].home
            );
        }
        let now = self.now;
        if action == Action::Connect {
            let alive: Vec<usize> = (0..self.nodes.len()).filter(|n| self.usable(*n)).collect();
            if alive.is_empty() {
                self.players[i].schedule(now + Duration::from_millis(200), Action::Connect);
                return;
            }
            let n = alive[self.rng.usize(..alive.len())];
            return self.connect(i, n);
        }
        let Some(h) = self.players[i].home else {
            return;
        };
        let Some(node) = self.nodes[h].node.as_mut() else {
            return;
        };
        let (store, inbox) = (&mut self.store, &mut self.inbox);
        match action {
            Action::Join if self.players[i].belief == Belief::Idle => {
                let category = CATEGORIES[self.rng.usize(..CATEGORIES.len())];
                let p = &mut self.players[i];
                p.belief = Belief::Joining;
                node.join(id, category, store, now);
            }
            Action::Pong(nonce) => node.pong(id, nonce, now, inbox),
            Action::Ack(match_id) => node.acknowledge(id, match_id, inbox),
            Action::LeaveLobby if matches!(self.players[i].belief, Belief::InLobby { .. }) => {
                node.leave_lobby(id, store, now);
            }
            _ => {}
        }
        self.dispatch(h);
    }

    fn connect(&mut self, i: usize, n: usize) {
        let id = self.players[i].id;
        let Some(node) = self.nodes[n].node.as_mut() else {
            return;
        };
        node.connect(id, &mut self.store, &mut self.inbox, self.now);
        let p = &mut self.players[i];
        p.home = Some(n);
        p.belief = Belief::Idle;
        p.due.clear();
        if !self.observed.draining {
            let at = self.now + Duration::from_millis(self.rng.u64(0..300));
            p.schedule(at, Action::Join);
        }
        self.dispatch(n);
    }

    fn poll_nodes(&mut self) {
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        self.rng.shuffle(&mut order);
        for n in order {
            if !self.usable(n) {
                continue;
            }
            if let Some(node) = self.nodes[n].node.as_mut() {
                node.poll(self.now, &mut self.store, &mut self.inbox);
            }
            self.dispatch(n);
        }
    }

    /// Carries out what node `n` asked: its messages reach its connected players.
    fn dispatch(&mut self, n: usize) {
        let Some(node) = self.nodes[n].node.as_mut() else {
            return;
        };
        for output in node.take_outputs() {
            if self.settings.trace.is_some() && !matches!(output, AtomicClusterOutput::ToPlayer(..))
            {
                eprintln!("{} node-{n}: {output:?}", self.step);
            }
            match output {
                AtomicClusterOutput::ToPlayer(player, message) => {
                    let i = (player - 1) as usize;
                    let p = &mut self.players[i];
                    if self.settings.trace == Some(player) {
                        eprintln!(
                            "{} node-{n} -> {player}: {message:?} (home {:?})",
                            self.step, p.home
                        );
                    }
                    if p.home == Some(n) {
                        let (now, step) = (self.now, self.step);
                        self.observed.deliver(p, message, now, step, &mut self.rng);
                    }
                }
                AtomicClusterOutput::LeaseLost => {
                    self.report.lease_losses += 1;
                    let step = self.step;
                    for p in self.players.iter_mut().filter(|p| p.home == Some(n)) {
                        p.interrupt(step);
                    }
                }
                _ => {}
            }
        }
    }

    /// The faults of one step, each drawn from the run's seed.
    fn inject(&mut self) {
        let rates = self.settings.rates;
        let alive = self.nodes.iter().filter(|n| n.node.is_some()).count();
        if strikes(&mut self.faults_rng, rates.kill) && alive == self.nodes.len() && alive >= 2 {
            let n = self.faults_rng.usize(..self.nodes.len());
            self.kill(n);
        }
        if strikes(&mut self.faults_rng, rates.stall) {
            let n = self.faults_rng.usize(..self.nodes.len());
            let ms = [500, 1500, 4000][self.faults_rng.usize(..3)];
            self.stall(n, Duration::from_millis(ms));
        }
        if strikes(&mut self.faults_rng, rates.disconnect) {
            let i = self.faults_rng.usize(..self.players.len());
            let again = self.faults_rng.u32(..5) == 0;
            self.disconnect(i, again);
        }
        if strikes(&mut self.faults_rng, rates.restart) {
            if self.settings.trace.is_some() {
                eprintln!("{} the store restarts empty", self.step);
            }
            (self.restart)(self.store.inner);
            self.inbox.flush();
            self.report.restarts += 1;
            let step = self.step;
            self.players.iter_mut().for_each(|p| p.interrupt(step));
        }
    }

    fn kill(&mut self, n: usize) {
        if self.settings.trace.is_some() {
            eprintln!("{} node-{n} killed", self.step);
        }
        self.nodes[n].node = None;
        self.nodes[n].revive_at = self.now + Duration::from_millis(self.rng.u64(4000..8000));
        self.report.deaths += 1;
        for i in 0..self.players.len() {
            if self.players[i].home == Some(n) {
                self.lose_connection(i);
            }
        }
    }

    fn stall(&mut self, n: usize, length: Duration) {
        if self.settings.trace.is_some() {
            eprintln!("{} node-{n} stalls {length:?}", self.step);
        }
        self.nodes[n].stalled_until = self.now + length;
        self.report.stalls += 1;
        if length >= Duration::from_secs(1) {
            let step = self.step;
            for p in self.players.iter_mut().filter(|p| p.home == Some(n)) {
                p.interrupt(step);
            }
        }
    }

    /// A player's connection closes; it connects again later, or in this very step.
    fn disconnect(&mut self, i: usize, again_now: bool) {
        let Some(h) = self.players[i].home else {
            return;
        };
        if !self.usable(h) {
            return;
        }
        let id = self.players[i].id;
        if self.settings.trace == Some(id) {
            eprintln!(
                "{} {id} disconnects from node-{h} (back now: {again_now})",
                self.step
            );
        }
        if let Some(node) = self.nodes[h].node.as_mut() {
            node.disconnect(id, &mut self.store, &mut self.inbox, self.now);
        }
        self.dispatch(h);
        self.report.disconnects += 1;
        self.lose_connection(i);
        if again_now {
            self.connect(i, h);
        }
    }

    fn lose_connection(&mut self, i: usize) {
        let step = self.step;
        let p = &mut self.players[i];
        p.home = None;
        p.belief = Belief::Idle;
        p.due.clear();
        p.interrupt(step);
        let at = self.now + Duration::from_millis(self.rng.u64(100..1500));
        p.schedule(at, Action::Connect);
    }

    fn revive_due(&mut self) {
        for n in 0..self.nodes.len() {
            if self.nodes[n].node.is_none() && self.nodes[n].revive_at <= self.now {
                self.nodes[n].node = Some(new_node(n, self.seed ^ self.step as u64));
                self.nodes[n].revive_at = Duration::MAX;
            }
        }
    }

    /// Every step: a player and its home agree on the lobby it is in.
    fn check_step(&mut self) {
        for p in &self.players {
            let Some(node) = p.home.and_then(|h| self.nodes[h].node.as_ref()) else {
                continue;
            };
            let seat = node.seat(p.id);
            let node_lobby = match seat {
                Some(AtomicLocalSeat::InLobby { lobby_id }) => Some(*lobby_id),
                _ => None,
            };
            let believed = match p.belief {
                Belief::InLobby { lobby_id } => Some(lobby_id),
                _ => None,
            };
            if node_lobby != believed {
                let why = format!(
                    "step {}: player {} believes lobby {believed:?}, its home {node_lobby:?}",
                    self.step, p.id
                );
                self.observed.violations.push(why);
            }
        }
    }
}

mod end;
