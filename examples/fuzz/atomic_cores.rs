//! The atomic mode's pure cores: the matchmaking queue against a model of it, and the
//! two-phase commit machine fed every event in any order, with its promises checked
//! after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bevy_atomic_matchmaking::atomic::core::commit::{
    ATOMIC_MAX_HEALTH_PINGS, AtomicAckState, AtomicCommitAction, AtomicCommitMachine,
    AtomicCommitOutcome, AtomicCommitTimings, AtomicHealthCheck, AtomicMatchStatus,
};
use bevy_atomic_matchmaking::atomic::core::queue::{
    AtomicQueue, AtomicQueueError, AtomicQueueTicket,
};
use bevy_atomic_matchmaking::atomic::server::AtomicServerSettings;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::inputs::{Draw, edge_duration};
use crate::target::{Target, count};

const CATEGORIES: [&str; 3] = ["a", "b", "c"];

/// One queue operation (players and categories by index).
#[derive(Debug, Clone)]
pub enum QueueOp {
    Enqueue {
        player: u8,
        category: u8,
    },
    Requeue {
        player: u8,
        category: u8,
        enqueued_at: Duration,
    },
    Remove {
        player: u8,
    },
    Pop {
        category: u8,
    },
    GroupSize(usize),
    Capacity(usize),
}

fn queue_op() -> impl Strategy<Value = QueueOp> {
    let player = 0u8..12;
    let category = 0u8..3;
    prop_oneof![
        6 => (player.clone(), category.clone())
            .prop_map(|(player, category)| QueueOp::Enqueue { player, category }),
        3 => (player.clone(), category.clone(), edge_duration()).prop_map(
            |(player, category, enqueued_at)| QueueOp::Requeue { player, category, enqueued_at }
        ),
        3 => player.prop_map(|player| QueueOp::Remove { player }),
        3 => category.prop_map(|category| QueueOp::Pop { category }),
        1 => prop_oneof![0usize..6, Just(usize::MAX)].prop_map(QueueOp::GroupSize),
        1 => prop_oneof![0usize..6, Just(usize::MAX)].prop_map(QueueOp::Capacity),
    ]
}

/// The queue's model: per player, its category and order key (class, time, sequence).
#[derive(Default)]
struct QueueModel {
    tickets: BTreeMap<u8, (u8, (u8, Duration, u64))>,
    seq: u64,
    group: usize,
    capacity: usize,
}

impl QueueModel {
    fn len(&self, category: u8) -> usize {
        self.tickets
            .values()
            .filter(|(c, _)| *c == category)
            .count()
    }

    /// A category's players, front first.
    fn order(&self, category: u8) -> Vec<u8> {
        let mut players: Vec<(&(u8, Duration, u64), u8)> = self
            .tickets
            .iter()
            .filter(|(_, (c, _))| *c == category)
            .map(|(p, (_, key))| (key, *p))
            .collect();
        players.sort();
        players.into_iter().map(|(_, p)| p).collect()
    }

    fn add(&mut self, player: u8, category: u8, class: u8, at: Duration) {
        self.seq += 1;
        self.tickets
            .insert(player, (category, (class, at, self.seq)));
    }
}

/// The queue against its model.
pub struct Queue;

impl Target for Queue {
    type Input = (usize, usize, Vec<QueueOp>);
    const NAME: &'static str = "queue";

    fn generate(draw: &mut Draw) -> Self::Input {
        draw.value((0usize..5, 0usize..8, vec(queue_op(), 1..120)))
    }

    fn execute((group, capacity, ops): &Self::Input) {
        let mut queue: AtomicQueue<u8> = AtomicQueue::new(*group, *capacity);
        let mut model = QueueModel {
            group: (*group).max(1),
            capacity: *capacity,
            ..QueueModel::default()
        };
        for op in ops {
            queue_step(&mut queue, &mut model, op);
            check_queue(&queue, &model);
        }
    }
}

fn ticket(player: u8, category: u8, enqueued_at: Duration) -> AtomicQueueTicket<u8> {
    AtomicQueueTicket {
        player,
        category: CATEGORIES[category as usize].to_owned(),
        enqueued_at,
    }
}

fn queue_step(queue: &mut AtomicQueue<u8>, model: &mut QueueModel, op: &QueueOp) {
    match *op {
        QueueOp::Enqueue { player, category } => {
            let expected = if model.tickets.contains_key(&player) {
                Err(AtomicQueueError::AlreadyQueued)
            } else if model.len(category) >= model.capacity {
                Err(AtomicQueueError::Full {
                    capacity: model.capacity,
                })
            } else {
                Ok(model.len(category) + 1)
            };
            assert_eq!(
                queue.enqueue(ticket(player, category, Duration::ZERO)),
                expected
            );
            if expected.is_ok() {
                model.add(player, category, 1, Duration::ZERO);
            }
        }
        QueueOp::Requeue {
            player,
            category,
            enqueued_at,
        } => {
            let result = queue.requeue_front(ticket(player, category, enqueued_at));
            if model.tickets.contains_key(&player) {
                assert_eq!(result, Err(AtomicQueueError::AlreadyQueued));
            } else {
                model.add(player, category, 0, enqueued_at);
                let position = model.order(category).iter().position(|p| *p == player);
                assert_eq!(result, Ok(position.expect("just added") + 1));
            }
        }
        QueueOp::Remove { player } => {
            let removed = queue.remove(&player);
            let expected = model.tickets.remove(&player);
            assert_eq!(removed.map(|t| t.player), expected.map(|_| player));
        }
        QueueOp::Pop { category } => {
            let front = model.order(category);
            let group = queue.pop_group(CATEGORIES[category as usize]);
            if front.len() < model.group {
                assert!(group.is_none(), "a group from {} tickets", front.len());
            } else {
                let players: Vec<u8> = group
                    .expect("a full group")
                    .iter()
                    .map(|t| t.player)
                    .collect();
                assert_eq!(players, front[..model.group], "the group is the front");
                for p in players {
                    model.tickets.remove(&p);
                }
            }
        }
        QueueOp::GroupSize(n) => {
            queue.set_group_size(n);
            model.group = n.max(1);
        }
        QueueOp::Capacity(n) => {
            queue.set_capacity(n);
            model.capacity = n;
        }
    }
}

fn check_queue(queue: &AtomicQueue<u8>, model: &QueueModel) {
    assert_eq!(queue.total(), model.tickets.len());
    assert_eq!(queue.is_empty(), model.tickets.is_empty());
    let mut ready = BTreeSet::new();
    for (i, name) in CATEGORIES.iter().enumerate() {
        let order = model.order(i as u8);
        assert_eq!(queue.len(name), order.len(), "length of {name}");
        let tickets: Vec<u8> = queue.tickets(name).iter().map(|t| t.player).collect();
        assert_eq!(tickets, order, "order of {name}");
        for (at, p) in order.iter().enumerate() {
            assert_eq!(queue.position(p), Some(at + 1));
            assert_eq!(queue.category_of(p), Some(*name));
        }
        if order.len() >= model.group {
            ready.insert(*name);
        }
    }
    let got: BTreeSet<&str> = queue.ready_categories().collect();
    assert_eq!(got, ready, "ready categories");
    assert_eq!(queue.first_ready(), ready.first().copied());
}

/// One event of a commit (players by index; an index past the match is a stranger).
#[derive(Debug, Clone)]
pub enum CommitOp {
    /// Time passes by this much, then a poll.
    Poll(Duration),
    /// The pings left this long after the last poll.
    PingsSent(Duration),
    /// A pong with the nonce the player was last sent, or another.
    Pong {
        player: u8,
        right: bool,
        nonce: u64,
        late: Duration,
    },
    Acknowledge(u8),
    Disconnected(u8),
    Withdrew(u8),
    Cancel,
    Abort,
}

fn commit_op() -> impl Strategy<Value = CommitOp> {
    let step = prop_oneof![
        8 => (0u64..300).prop_map(Duration::from_millis),
        2 => (0u64..10_000).prop_map(Duration::from_millis),
        1 => select(vec![Duration::from_secs(600), Duration::from_secs(3600)]),
    ];
    let player = 0u8..18;
    prop_oneof![
        8 => step.clone().prop_map(CommitOp::Poll),
        3 => step.clone().prop_map(CommitOp::PingsSent),
        6 => (player.clone(), prop::bool::weighted(0.8), any::<u64>(), step)
            .prop_map(|(player, right, nonce, late)| CommitOp::Pong { player, right, nonce, late }),
        5 => player.clone().prop_map(CommitOp::Acknowledge),
        1 => player.clone().prop_map(CommitOp::Disconnected),
        1 => player.prop_map(CommitOp::Withdrew),
        1 => Just(CommitOp::Cancel),
        1 => Just(CommitOp::Abort),
    ]
}

/// Timings as the server makes them: any settings, brought within their minimums.
fn timings() -> impl Strategy<Value = AtomicCommitTimings> {
    let short = (1u64..3_000).prop_map(Duration::from_millis);
    let any_time = prop_oneof![6 => short, 1 => edge_duration()];
    (
        any_time.clone(),
        any_time.clone(),
        any_time.clone(),
        prop_oneof![1u32..5, Just(0u32), Just(u32::MAX)],
        any_time.clone(),
        any_time,
    )
        .prop_map(|(ping, latency, notify, attempts, backoff, stall)| {
            AtomicServerSettings {
                commit: AtomicCommitTimings {
                    ping_timeout: ping,
                    max_latency: latency,
                    notification_timeout: notify,
                    notification_attempts: attempts,
                    notification_backoff: backoff,
                    stall_threshold: stall,
                },
                ..AtomicServerSettings::default()
            }
            .clamped()
            .commit
        })
}

/// The commit machine's input: players (distinct), one nonce each, timings, the start
/// time and the events.
#[derive(Debug)]
pub struct CommitInput {
    players: Vec<u64>,
    nonces: Vec<u64>,
    timings: AtomicCommitTimings,
    start: Duration,
    ops: Vec<CommitOp>,
}

/// The commit machine fed any events.
pub struct Commit;

impl Target for Commit {
    type Input = CommitInput;
    const NAME: &'static str = "commit";

    fn generate(draw: &mut Draw) -> CommitInput {
        let n = draw.value(prop_oneof![4 => 2usize..5, 1 => 0usize..17]);
        let players: BTreeSet<u64> = draw.value(proptest::collection::btree_set(any::<u64>(), n));
        let mut players: Vec<u64> = players.into_iter().collect();
        draw.rng.shuffle(&mut players);
        CommitInput {
            nonces: draw.value(vec(any::<u64>(), players.len())),
            players,
            timings: draw.value(timings()),
            start: draw.value(prop_oneof![
                3 => (0u64..100_000).prop_map(Duration::from_millis),
                1 => (0u64..1 << 40).prop_map(Duration::from_secs),
            ]),
            ops: draw.value(vec(commit_op(), 1..80)),
        }
    }

    fn execute(input: &CommitInput) {
        let mut run = CommitRun::new(input);
        for op in &input.ops {
            run.step(op);
        }
        run.drain();
    }
}

/// A commit under test and what it said so far.
struct CommitRun<'a> {
    input: &'a CommitInput,
    m: AtomicCommitMachine<u64>,
    now: Duration,
    last_poll: Duration,
    /// The latest time an event was stamped with (pings sent, pongs).
    latest: Duration,
    nonce: BTreeMap<u64, u64>,
    lobby: bool,
    attempts: BTreeMap<u64, u32>,
    finished: Option<AtomicCommitOutcome<u64>>,
}

impl<'a> CommitRun<'a> {
    fn new(input: &'a CommitInput) -> Self {
        Self {
            m: AtomicCommitMachine::new(&input.players, &input.nonces, input.timings),
            now: input.start,
            last_poll: input.start,
            latest: input.start,
            nonce: BTreeMap::new(),
            lobby: false,
            attempts: BTreeMap::new(),
            finished: None,
            input,
        }
    }

    fn player(&self, i: u8) -> u64 {
        let players = &self.input.players;
        players
            .get(i as usize)
            .copied()
            .unwrap_or(u64::from(i) ^ 0xdead_beef)
    }

    fn step(&mut self, op: &CommitOp) {
        match *op {
            CommitOp::Poll(dt) => {
                self.now = self.now.saturating_add(dt);
                self.last_poll = self.now;
                let actions = self.m.poll(self.now);
                self.check_actions(actions);
            }
            CommitOp::PingsSent(dt) => {
                let at = self.last_poll.saturating_add(dt);
                self.latest = self.latest.max(at);
                self.m.pings_sent(at);
            }
            CommitOp::Pong {
                player,
                right,
                nonce,
                late,
            } => {
                let p = self.player(player);
                let nonce = match self.nonce.get(&p) {
                    Some(n) if right => *n,
                    _ => nonce,
                };
                let at = self.now.saturating_add(late);
                self.latest = self.latest.max(at);
                let _ = self.m.pong(p, nonce, at);
            }
            CommitOp::Acknowledge(p) => {
                let _ = self.m.acknowledge(self.player(p));
            }
            CommitOp::Disconnected(p) => {
                let _ = self.m.disconnected(self.player(p));
            }
            CommitOp::Withdrew(p) => {
                let _ = self.m.withdrew(self.player(p));
            }
            CommitOp::Cancel => {
                let _ = self.m.cancel();
            }
            CommitOp::Abort => {
                if let Some(outcome) = self.m.abort() {
                    assert_eq!(outcome.status, AtomicMatchStatus::Aborted);
                    self.finish(outcome);
                }
            }
        }
        self.check_state();
    }

    /// Without more events, a match with finite timings ends within a bound the timings
    /// give, counted from the last event (polled as a server would, without stalls):
    /// nobody waits forever.
    fn drain(&mut self) {
        let t = self.input.timings;
        let short = Duration::from_secs(10);
        let finite = [
            t.ping_timeout,
            t.notification_timeout,
            t.notification_backoff,
        ]
        .iter()
        .all(|d| *d <= short)
            && t.notification_attempts <= 8;
        if !finite || self.finished.is_some() {
            return;
        }
        let step = t.stall_threshold.min(Duration::from_millis(100));
        // a ping a stall spanned is sent once more, then every proposal attempt times out
        let worst = (t.ping_timeout + step) * 2
            + (t.notification_timeout + t.notification_backoff + step) * t.notification_attempts;
        let end = self.now.max(self.latest).saturating_add(worst + step);
        while self.finished.is_none() && self.now < end {
            self.step(&CommitOp::Poll(step));
        }
        assert!(
            self.finished.is_some(),
            "the match did not end within {worst:?} without events"
        );
    }

    fn check_actions(&mut self, actions: Vec<AtomicCommitAction<u64>>) {
        for action in actions {
            assert!(self.finished.is_none(), "{action:?} after the finish");
            match action {
                AtomicCommitAction::Ping { player, nonce } => {
                    assert!(!self.lobby, "a ping in phase 2");
                    self.nonce.insert(player, nonce);
                }
                AtomicCommitAction::CreateLobby => {
                    assert!(!self.lobby, "a second lobby");
                    self.lobby = true;
                }
                AtomicCommitAction::Propose { player, attempt } => {
                    assert!(self.lobby, "a proposal without a lobby");
                    let last = self.attempts.insert(player, attempt).unwrap_or(0);
                    assert!(
                        attempt >= 1 && attempt > last,
                        "attempt {attempt} after {last}"
                    );
                    assert!(attempt <= self.input.timings.notification_attempts.max(1));
                }
                AtomicCommitAction::Finish(outcome) => self.finish(outcome),
            }
        }
    }

    fn finish(&mut self, outcome: AtomicCommitOutcome<u64>) {
        assert!(self.finished.is_none(), "finished twice");
        let players: Vec<u64> = outcome.players.iter().map(|r| r.player).collect();
        assert_eq!(players, self.input.players, "the outcome lists the match");
        let success = outcome.status.is_success();
        for r in &outcome.players {
            assert!(!(success && r.requeued), "re-queued after a success");
            assert!(
                !success || r.acknowledged,
                "committed without an acknowledgement"
            );
            let pending = r.health == AtomicHealthCheck::Pending;
            let aborted = outcome.status == AtomicMatchStatus::Aborted;
            assert!(
                !r.requeued || r.health.is_healthy() || (aborted && pending),
                "re-queued with {:?}",
                r.health
            );
        }
        if success {
            assert!(self.lobby, "committed without a lobby");
            count("commit_successes", 1);
        } else {
            count("commit_rollbacks", 1);
        }
        let health_failure = !matches!(
            outcome.status,
            AtomicMatchStatus::Success
                | AtomicMatchStatus::NotificationFailed
                | AtomicMatchStatus::Aborted
        );
        if health_failure {
            let healthy: Vec<bool> = outcome
                .players
                .iter()
                .map(|r| r.health.is_healthy())
                .collect();
            assert_eq!(outcome.status, AtomicMatchStatus::from_health(&healthy));
            assert!(!self.lobby, "a health failure after the lobby");
        }
        self.finished = Some(outcome);
    }

    fn check_state(&self) {
        assert_eq!(self.m.is_finished(), self.finished.is_some());
        if let Some(outcome) = &self.finished {
            assert_eq!(self.m.outcome(), Some(outcome));
        }
        for p in &self.input.players {
            let pings = self.m.pings(*p).expect("a member");
            assert!(pings <= ATOMIC_MAX_HEALTH_PINGS, "{pings} pings");
            if !self.lobby {
                assert!(matches!(
                    self.m.ack_state(*p),
                    Some(AtomicAckState::NotProposed)
                ));
            }
        }
        assert_eq!(
            self.m.in_commit_phase(),
            self.lobby && self.finished.is_none()
        );
    }
}
