//! Several nodes against one store, in a random interleaving per seed: joins, leaves,
//! views that go stale before their claim, lobbies with colliding ids and codes, commits,
//! rollbacks, node deaths, reaps and restarts. The invariants are checked after every
//! step, and the run ends by draining everything and checking the store is empty.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::{AtomicStoreUnderTest, LONG_TTL};
use crate::atomic::core::store::{
    AtomicClaim, AtomicCommit, AtomicNodeLease, AtomicStoreError, AtomicStoreJoin,
    AtomicStoreLimits, AtomicStoreSeat,
};
use crate::shared::player::PlayerId;

const CATEGORIES: [&str; 2] = ["duel", "ffa"];
const KILL_TTL: Duration = Duration::from_millis(2);
const KILL_WAIT: Duration = Duration::from_millis(20);

/// What one node knows.
#[derive(Debug, Default)]
struct Node {
    lease: Option<AtomicNodeLease>,
    /// A group seen in an earlier step, claimed in a later one.
    view: Option<(String, Vec<PlayerId>)>,
    /// Matches it claimed and coordinates.
    forming: BTreeSet<u64>,
}

/// Counts of what a run did, so a caller can check it exercised the store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AtomicInterleaveReport {
    /// Successful claims.
    pub claims: usize,
    /// Claims refused as stale.
    pub stale_claims: usize,
    /// Commits.
    pub commits: usize,
    /// Rollbacks that re-queued someone.
    pub rollbacks: usize,
    /// Node deaths.
    pub deaths: usize,
    /// Writes refused for a lost lease.
    pub fenced: usize,
}

struct Run<'s, S> {
    store: &'s mut S,
    rng: fastrand::Rng,
    nodes: Vec<Node>,
    /// The node each player is connected to.
    home: HashMap<PlayerId, usize>,
    /// Lobbies committed and their members still in them (the model).
    lobbies: BTreeMap<u64, BTreeSet<PlayerId>>,
    players: u64,
    report: AtomicInterleaveReport,
}

/// Runs `steps` random steps of `nodes` nodes and `players` players on `store`.
pub fn interleave<S: AtomicStoreUnderTest>(
    store: &mut S,
    seed: u64,
    nodes: usize,
    players: u64,
    steps: usize,
) -> AtomicInterleaveReport {
    let mut run = Run {
        store,
        rng: fastrand::Rng::with_seed(seed),
        nodes: (0..nodes).map(|_| Node::default()).collect(),
        home: HashMap::new(),
        lobbies: BTreeMap::new(),
        players,
        report: AtomicInterleaveReport::default(),
    };
    for n in 0..nodes {
        run.start(n);
    }
    for step in 0..steps {
        run.step();
        run.check(step);
    }
    run.drain();
    run.report
}

fn name(n: usize) -> String {
    format!("n{n}")
}

impl<S: AtomicStoreUnderTest> Run<'_, S> {
    fn start(&mut self, n: usize) {
        let lease = self.store.acquire_lease(&name(n), LONG_TTL).expect("lease");
        self.nodes[n] = Node {
            lease: Some(lease),
            ..Node::default()
        };
    }

    fn live(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|n| self.nodes[*n].lease.is_some())
            .collect();
        (!live.is_empty()).then(|| live[self.rng.usize(..live.len())])
    }

    fn lease(&self, n: usize) -> AtomicNodeLease {
        self.nodes[n].lease.clone().expect("live node")
    }

    fn step(&mut self) {
        let Some(n) = self.live() else {
            let dead = self.rng.usize(..self.nodes.len());
            self.start(dead);
            self.forget_dead_members();
            return;
        };
        match self.rng.u32(..100) {
            0..30 => self.join(n),
            30..35 => self.leave(n),
            35..50 => self.look(n),
            50..62 => self.claim(n),
            62..72 => self.open_lobby(n),
            72..82 => self.commit(n),
            82..87 => self.rollback(n),
            87..93 => self.leave_lobby(),
            93..96 => self.kill(n),
            96..99 => self.reap(n),
            _ => self.restart(),
        }
    }

    /// Unwraps a write's result, counting a refusal for a lost lease (which the model
    /// never expects of a live node).
    fn ok<T>(&mut self, result: Result<T, AtomicStoreError>) -> T {
        match result {
            Ok(value) => value,
            Err(error) => panic!("a live node's write failed: {error}"),
        }
    }

    fn join(&mut self, n: usize) {
        let player = self.rng.u64(..self.players);
        let node = self.home.get(&player).copied().unwrap_or(n);
        let category = CATEGORIES[self.rng.usize(..CATEGORIES.len())];
        let via = if self.rng.u8(..4) == 0 { n } else { node };
        let Some(lease) = self.nodes[via].lease.clone() else {
            return;
        };
        let limits = AtomicStoreLimits::default();
        let joined = self.store.join(&lease, player, category, limits, None);
        match self.ok(joined) {
            AtomicStoreJoin::HeldByAnotherNode { node: holder } => {
                assert_ne!(holder, lease.node, "{player} is refused by its own node")
            }
            AtomicStoreJoin::Queued { .. } => {
                // it held no record: it may queue wherever it is connected now
                self.home.insert(player, via);
            }
            AtomicStoreJoin::AlreadyQueued => {
                assert_eq!(via, node, "{player} already queued on a node it never used");
            }
            _ => {}
        }
    }

    fn leave(&mut self, n: usize) {
        let player = self.rng.u64(..self.players);
        let lease = self.lease(n);
        let left = self.store.leave(&lease, player);
        self.ok(left);
    }

    fn look(&mut self, n: usize) {
        let ready = self.store.ready_categories(2).expect("ready");
        if ready.is_empty() {
            return;
        }
        let category = ready[self.rng.usize(..ready.len())].clone();
        let front = self.store.front(&category, 4).expect("front");
        let mut group: Vec<PlayerId> = front.iter().map(|t| t.player).collect();
        self.rng.shuffle(&mut group);
        group.truncate(2);
        self.nodes[n].view = Some((category, group));
    }

    fn claim(&mut self, n: usize) {
        let Some((category, group)) = self.nodes[n].view.take() else {
            return;
        };
        let lease = self.lease(n);
        let claim = self.store.claim(&lease, &category, &group);
        match self.ok(claim) {
            AtomicClaim::Claimed { match_id } => {
                self.report.claims += 1;
                assert!(self.nodes[n].forming.insert(match_id));
            }
            AtomicClaim::Stale { .. } => self.report.stale_claims += 1,
        }
    }

    fn pick_forming(&mut self, n: usize) -> Option<u64> {
        let forming: Vec<u64> = self.nodes[n].forming.iter().copied().collect();
        (!forming.is_empty()).then(|| forming[self.rng.usize(..forming.len())])
    }

    fn open_lobby(&mut self, n: usize) {
        let Some(m) = self.pick_forming(n) else {
            return;
        };
        let lease = self.lease(n);
        let (id, code) = (self.rng.u64(1..40), format!("C{}", self.rng.u8(..40)));
        let opened = self.store.open_lobby(&lease, m, id, &code);
        self.ok(opened);
    }

    fn commit(&mut self, n: usize) {
        let Some(m) = self.pick_forming(n) else {
            return;
        };
        let lease = self.lease(n);
        let record = self.store.match_record(m).expect("match");
        let commit = self.store.commit(&lease, m);
        match self.ok(commit) {
            AtomicCommit::Committed => {
                self.report.commits += 1;
                self.nodes[n].forming.remove(&m);
                let record = record.expect("a committed match was forming");
                let (lobby, _) = record.lobby.expect("a committed match has a lobby");
                for player in &record.players {
                    let elsewhere = self.lobbies.iter().find(|(_, ps)| ps.contains(player));
                    assert!(
                        elsewhere.is_none(),
                        "{player} in two matches: {elsewhere:?}"
                    );
                }
                let members = record.players.iter().copied().collect();
                assert!(
                    self.lobbies.insert(lobby, members).is_none(),
                    "lobby reused"
                );
            }
            AtomicCommit::NotForming => {
                self.nodes[n].forming.remove(&m);
            }
            AtomicCommit::PlayerNodeGone { .. } | AtomicCommit::NoLobby => {}
        }
    }

    fn rollback(&mut self, n: usize) {
        let Some(m) = self.pick_forming(n) else {
            return;
        };
        let lease = self.lease(n);
        let record = self.store.match_record(m).expect("match");
        let players = record.map(|r| r.players).unwrap_or_default();
        let healthy: Vec<PlayerId> = players.into_iter().filter(|_| self.rng.bool()).collect();
        let rolled = self.store.rollback(&lease, m, &healthy);
        if !self.ok(rolled).is_empty() {
            self.report.rollbacks += 1;
        }
        self.nodes[n].forming.remove(&m);
    }

    fn leave_lobby(&mut self) {
        let members: Vec<(u64, PlayerId)> = self
            .lobbies
            .iter()
            .flat_map(|(l, ps)| ps.iter().map(move |p| (*l, *p)))
            .collect();
        if members.is_empty() {
            return;
        }
        let (lobby, player) = members[self.rng.usize(..members.len())];
        let Some(lease) = self
            .home
            .get(&player)
            .and_then(|h| self.nodes[*h].lease.clone())
        else {
            return;
        };
        let left = self.store.leave_lobby(&lease, lobby, player);
        assert!(self.ok(left), "{player} was in lobby {lobby}");
        self.forget_member(lobby, player);
    }

    fn forget_member(&mut self, lobby: u64, player: PlayerId) {
        if let Some(members) = self.lobbies.get_mut(&lobby) {
            members.remove(&player);
            if members.is_empty() {
                self.lobbies.remove(&lobby);
            }
        }
    }

    /// The node stops: its lease runs out, its memory is gone and its players are
    /// disconnected. A write with its old lease is refused.
    fn kill(&mut self, n: usize) {
        let lease = self.lease(n);
        self.store.renew_lease(&lease, KILL_TTL).expect("renew");
        self.store.pass(KILL_WAIT);
        let fenced = self
            .store
            .join(&lease, 0, "duel", AtomicStoreLimits::default(), None);
        assert_eq!(fenced, Err(AtomicStoreError::LeaseLost));
        self.report.fenced += 1;
        self.report.deaths += 1;
        self.nodes[n] = Node::default();
        self.home.retain(|_, home| *home != n);
    }

    fn reap(&mut self, n: usize) {
        let lease = self.lease(n);
        for dead in self.store.dead_nodes().expect("dead nodes") {
            let reaped = self.store.reap(&lease, &dead);
            let reaped = self.ok(reaped);
            for (player, node) in &reaped.requeued {
                assert_ne!(node, &dead, "{player} of the dead node re-queued");
            }
            self.forget_dead_members();
        }
    }

    /// Drops from the model the lobby members the store no longer seats (a reaped node's).
    fn forget_dead_members(&mut self) {
        let members: Vec<(u64, PlayerId)> = self
            .lobbies
            .iter()
            .flat_map(|(l, ps)| ps.iter().map(move |p| (*l, *p)))
            .collect();
        for (lobby, player) in members {
            let seat = self.store.player(player).expect("player").map(|p| p.seat);
            if seat != Some(AtomicStoreSeat::InLobby { lobby_id: lobby }) {
                self.forget_member(lobby, player);
            }
        }
    }

    fn restart(&mut self) {
        let n = self.rng.usize(..self.nodes.len());
        if self.nodes[n].lease.is_none() {
            self.start(n);
            self.forget_dead_members();
        }
    }

    /// The invariants: every player has one seat, queued players stand once in their
    /// category, match and lobby records agree with their players' seats, and every
    /// lobby member of the model is seated in its lobby.
    fn check(&mut self, step: usize) {
        let mut queued = BTreeSet::new();
        for category in self.store.ready_categories(1).expect("ready") {
            for ticket in self.store.front(&category, usize::MAX).expect("front") {
                assert!(
                    queued.insert(ticket.player),
                    "step {step}: {} twice",
                    ticket.player
                );
                let seat = self
                    .store
                    .player(ticket.player)
                    .expect("player")
                    .map(|p| p.seat);
                let expected = AtomicStoreSeat::Queued {
                    category: category.clone(),
                };
                assert_eq!(seat, Some(expected), "step {step}: {}", ticket.player);
            }
        }
        for player in 0..self.players {
            let record = self.store.player(player).expect("player");
            match record.map(|r| r.seat) {
                Some(AtomicStoreSeat::Queued { .. }) => {
                    assert!(
                        queued.contains(&player),
                        "step {step}: {player} not in a queue"
                    )
                }
                Some(AtomicStoreSeat::Matching { match_id }) => {
                    let record = self.store.match_record(match_id).expect("match");
                    let players = record.map(|r| r.players).unwrap_or_default();
                    assert!(
                        players.contains(&player),
                        "step {step}: {player} match {match_id}"
                    );
                }
                Some(AtomicStoreSeat::InLobby { lobby_id }) => {
                    let members = self
                        .store
                        .lobby(lobby_id)
                        .expect("lobby")
                        .map(|l| l.members);
                    let members = members.unwrap_or_default();
                    assert!(
                        members.contains(&player),
                        "step {step}: {player} lobby {lobby_id}"
                    );
                }
                None => {}
            }
        }
        for (lobby, members) in &self.lobbies {
            for player in members {
                let seat = self.store.player(*player).expect("player").map(|p| p.seat);
                let expected = AtomicStoreSeat::InLobby { lobby_id: *lobby };
                assert_eq!(seat, Some(expected), "step {step}: {player}");
            }
        }
    }

    /// Resolves everything in flight, empties the lobbies, releases every lease, and
    /// checks that the store holds nothing.
    fn drain(&mut self) {
        for n in 0..self.nodes.len() {
            if self.nodes[n].lease.is_none() {
                self.start(n);
            }
        }
        for n in 0..self.nodes.len() {
            let lease = self.lease(n);
            for m in std::mem::take(&mut self.nodes[n].forming) {
                let rolled = self.store.rollback(&lease, m, &[]);
                self.ok(rolled);
            }
        }
        for n in 0..self.nodes.len() {
            let lease = self.lease(n);
            let released = self.store.release_lease(&lease);
            self.ok(released);
        }
        let residue = self.store.residue().expect("residue");
        assert_eq!(
            residue, 0,
            "records left after every node released its lease"
        );
    }
}
