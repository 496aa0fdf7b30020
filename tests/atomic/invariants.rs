//! Property tests over the real plugins: random joins, leaves, disconnects, stalled and
//! misbehaving links and clients, reconnections under the same id and long server frames
//! (driven by [`faults::AtomicRun`](crate::faults::AtomicRun)), with the server's invariants checked
//! after every frame by [`Checker`]:
//!
//! - each player is in at most one match or lobby, and the server's location of each
//!   player agrees with match and lobby membership;
//! - matches formed = committed + rolled back + in flight; stats agree with the entities;
//! - no lobby outlives its match (an uncommitted lobby exists only while its match is in
//!   flight);
//! - a healthy player is never dropped: a player the commit machine said to re-queue, or
//!   that the test kept healthy (well-behaved, on a good link), still connected on the
//!   connection it was matched on, is re-queued (and one the test kept healthy is
//!   reported healthy);
//! - re-queues keep seniority: re-queued tickets stand ahead of the others, ordered by
//!   original enqueue time.
//!
//! Every run ends with a drain until nothing is in flight, within a bound derived from
//! the settings and the number of players ([`AtomicRun::drain_bound`](crate::faults::AtomicRun::drain_bound)).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use crate::faults::{AtomicRun, Op, PLAYERS, fault_op, op};

// ---------------------------------------------------------------------------------------
// what the test knows about each player's health, and the checks

/// Why a player may fairly fail a match (kept while it lasts).
#[derive(Debug, Clone, Copy)]
pub enum Taint {
    /// Its link is stopped.
    LinkDown = 1,
    /// Its link loses packets or is too slow for the latency limit.
    BadWire = 2,
    /// It answers pings late or never acknowledges proposals.
    Misbehaves = 4,
}

/// Packets already on their way when a taint ends may still be late for this long.
const TAINT_MARGIN: Duration = Duration::from_millis(500);

/// Per player (by index): ongoing taints, when the last one ended, and its session
/// (counts the connections the test dropped or reopened).
#[derive(Debug, Default)]
pub struct Taints {
    ongoing: Vec<u8>,
    until: Vec<Duration>,
    session: Vec<u64>,
    now: Duration,
}

impl Taints {
    fn new(players: usize) -> Self {
        Self {
            ongoing: vec![0; players],
            until: vec![Duration::ZERO; players],
            session: vec![0; players],
            now: Duration::ZERO,
        }
    }

    /// The player did something that may fairly fail its match (left, withdrew).
    pub fn mark(&mut self, p: usize) {
        self.until[p] = self.until[p].max(self.now + TAINT_MARGIN);
    }

    pub fn set(&mut self, p: usize, taint: Taint, on: bool) {
        let bit = taint as u8;
        if on || self.ongoing[p] & bit != 0 {
            self.mark(p);
        }
        if on {
            self.ongoing[p] |= bit;
        } else {
            self.ongoing[p] &= !bit;
        }
    }

    pub fn hold(&mut self, p: usize, ms: u16) {
        let end = self.now + Duration::from_millis(ms.into()) + TAINT_MARGIN;
        self.until[p] = self.until[p].max(end);
    }

    pub fn new_session(&mut self, p: usize) {
        self.session[p] += 1;
        self.mark(p);
    }

    /// Whether the player behaved, on a good link, from before `since` until now.
    fn healthy_since(&self, p: usize, since: Duration) -> bool {
        self.ongoing[p] == 0 && self.until[p] < since
    }
}

/// A match as first seen in flight: when, and each player's session then.
#[derive(Debug)]
struct Formed {
    at: Duration,
    sessions: Vec<(PlayerId, u64)>,
}

/// The server's entities: (match entity, match id, players, lobby) and lobbies.
struct Snapshot {
    matches: Vec<(Entity, u64, Vec<PlayerId>, Option<Entity>)>,
    lobbies: Vec<(Entity, AtomicLobby)>,
}

impl Snapshot {
    fn take(h: &mut AtomicTestHarness) -> Self {
        let world = h.server.world_mut();
        let mut query = world.query::<(Entity, &AtomicMatch)>();
        let state = world.resource::<AtomicServerState>();
        // a player counts as in a match only on the session it was taken in with: after a
        // reconnection under the same id, the old match still lists the old session
        let matches = query
            .iter(world)
            .map(|(e, m)| {
                let players = m
                    .players()
                    .filter(|p| m.session(*p) == state.session(*p))
                    .collect();
                (e, m.match_id(), players, m.lobby())
            })
            .collect();
        let lobbies = world
            .query::<(Entity, &AtomicLobby)>()
            .iter(world)
            .map(|(e, l)| (e, l.clone()))
            .collect();
        Self { matches, lobbies }
    }

    fn in_match(&self, entity: Entity, p: PlayerId) -> bool {
        self.matches
            .iter()
            .any(|(e, _, players, _)| *e == entity && players.contains(&p))
    }

    fn in_lobby(&self, entity: Entity, p: PlayerId) -> bool {
        self.lobbies
            .iter()
            .any(|(e, l)| *e == entity && l.committed && l.members.contains(&p))
    }
}

/// The server's invariants, checked after every frame.
#[derive(Debug)]
pub struct Checker {
    pub taint: Taints,
    players: Vec<PlayerId>,
    outcomes_seen: usize,
    formed: HashMap<u64, Formed>,
    /// Players holding a ticket a rollback gave back, with its original enqueue time.
    requeued: BTreeMap<PlayerId, Duration>,
    /// Matches formed when the server was first seen draining.
    formed_at_drain: Option<u64>,
}

impl Checker {
    pub fn new(players: &[PlayerId]) -> Self {
        Self {
            taint: Taints::new(players.len()),
            players: players.to_vec(),
            outcomes_seen: 0,
            formed: HashMap::new(),
            requeued: BTreeMap::new(),
            formed_at_drain: None,
        }
    }

    fn index(&self, p: PlayerId) -> usize {
        self.players.iter().position(|q| *q == p).expect("a player")
    }

    pub fn check(&mut self, h: &mut AtomicTestHarness) -> Result<(), TestCaseError> {
        self.taint.now = h.now();
        let snap = Snapshot::take(h);
        check_places(h, &snap)?;
        check_counts(h, &snap)?;
        // a draining server forms no match
        let formed = h.stats().matches_formed;
        if h.server_state().is_draining() {
            let at_start = *self.formed_at_drain.get_or_insert(formed);
            prop_assert_eq!(formed, at_start, "a match formed while draining");
        }
        for (_, id, players, _) in &snap.matches {
            let sessions = players
                .iter()
                .map(|p| (*p, self.taint.session[self.index(*p)]))
                .collect();
            let at = h.now();
            self.formed.entry(*id).or_insert(Formed { at, sessions });
        }
        self.check_outcomes(h)?;
        self.check_seniority(h)
    }

    /// Every rollback re-queued the players it should have: those the commit machine
    /// found healthy and not failing to acknowledge, and those the test kept healthy,
    /// when still connected on the connection they were matched on. A player the test
    /// kept healthy is reported healthy.
    fn check_outcomes(&mut self, h: &AtomicTestHarness) -> Result<(), TestCaseError> {
        let outcomes = h.server_recorded::<AtomicMatchOutcome>().to_vec();
        let state = h.server_state();
        for o in &outcomes[self.outcomes_seen..] {
            let formed = self.formed.remove(&o.match_id);
            let rollback = !o.status.is_success();
            for r in &o.players {
                let i = self.index(r.player);
                let session = formed
                    .as_ref()
                    .and_then(|f| f.sessions.iter().find(|(p, _)| *p == r.player));
                let same = session.is_some_and(|(_, s)| *s == self.taint.session[i]);
                // requests the server refused are strikes: a player that reached the limit
                // was refused for abuse (and withdrawn from its match), not dropped
                let max_strikes = h.server_resource::<AtomicServerSettings>().gate.max_strikes;
                let refused = h
                    .server_state()
                    .strikes(r.player)
                    .is_some_and(|s| s >= max_strikes);
                if !same || !h.is_connected(r.player) || refused {
                    continue;
                }
                // a player whose proposal timed out (or who was lost in phase 2) failed the
                // match and is not re-queued; one whose acknowledgement was still on its
                // way when another player withdrew did not fail it
                let failed_ack = o.status == AtomicMatchStatus::NotificationFailed
                    && !r.acknowledged
                    && !r.requeued;
                let healthy = formed
                    .as_ref()
                    .is_some_and(|f| self.taint.healthy_since(i, f.at));
                if healthy {
                    prop_assert!(
                        r.health.is_healthy() && !failed_ack,
                        "healthy player {} failed match {}: {:?}",
                        r.player,
                        o.match_id,
                        o
                    );
                }
                let machine_requeues = r.health.is_healthy() && !failed_ack;
                // a draining server re-queues nobody: its players are told it is closing
                // (checked at the end of the run)
                let draining = h.server_state().is_draining();
                if rollback && (machine_requeues || healthy) && !draining {
                    prop_assert!(
                        o.requeued.contains(&r.player),
                        "healthy player {} dropped by match {}: {:?}",
                        r.player,
                        o.match_id,
                        o
                    );
                }
            }
            // everyone re-queued is queued, or already in its next match
            for p in &o.requeued {
                let location = state.location(*p);
                prop_assert!(
                    matches!(
                        location,
                        Some(AtomicPlayerLocation::Queued | AtomicPlayerLocation::Matching(_))
                    ),
                    "re-queued player {} is at {:?}",
                    p,
                    location
                );
                if let Some(t) = ticket(state, *p) {
                    self.requeued.insert(*p, t);
                }
            }
        }
        self.outcomes_seen = outcomes.len();
        Ok(())
    }

    /// Re-queued tickets stand ahead of the others, by original enqueue time; the others
    /// in arrival order.
    fn check_seniority(&mut self, h: &AtomicTestHarness) -> Result<(), TestCaseError> {
        let state = h.server_state();
        self.requeued.retain(|p, at| ticket(state, *p) == Some(*at));
        for category in ["a", "b"] {
            let tickets = state.queue().tickets(category);
            let mut last: Option<(bool, Duration)> = None;
            for t in &tickets {
                let requeued = self.requeued.get(&t.player) == Some(&t.enqueued_at);
                // (true, _) < (false, _): re-queued first; then by enqueue time
                let key = (!requeued, t.enqueued_at);
                if let Some(prev) = last {
                    prop_assert!(
                        prev <= key,
                        "queue {} out of order: {:?} (re-queued: {:?})",
                        category,
                        tickets,
                        self.requeued
                    );
                }
                last = Some(key);
            }
        }
        Ok(())
    }
}

/// The enqueue time of a player's ticket, if it holds one.
fn ticket(state: &AtomicServerState, p: PlayerId) -> Option<Duration> {
    let category = state.queue().category_of(&p)?;
    let tickets = state.queue().tickets(category);
    tickets
        .iter()
        .find(|t| t.player == p)
        .map(|t| t.enqueued_at)
}

/// Each player is in at most one match or lobby, the server's location of each player
/// agrees with the matches and lobbies, and an uncommitted lobby exists only while its
/// match is in flight.
fn check_places(h: &AtomicTestHarness, snap: &Snapshot) -> Result<(), TestCaseError> {
    let state = h.server_state();
    let mut seen: HashMap<PlayerId, Entity> = HashMap::new();
    for (entity, _, players, lobby) in &snap.matches {
        for p in players {
            prop_assert!(
                seen.insert(*p, *entity).is_none(),
                "player {} in two matches",
                p
            );
        }
        if let Some(lobby) = lobby {
            let open = snap.lobbies.iter().any(|(e, l)| e == lobby && !l.committed);
            prop_assert!(open, "match {:?} lost its lobby", entity);
        }
    }
    for (entity, lobby) in &snap.lobbies {
        if lobby.committed {
            for p in &lobby.members {
                prop_assert!(
                    seen.insert(*p, *entity).is_none(),
                    "player {} in a match and a lobby",
                    p
                );
            }
        } else {
            prop_assert!(
                snap.matches.iter().any(|(_, _, _, l)| *l == Some(*entity)),
                "lobby {} outlived its match",
                lobby.code
            );
        }
        prop_assert_eq!(state.lobby(lobby.lobby_id), Some(*entity));
    }
    for c in &h.clients {
        let location = state.location(c.id);
        let agrees = match location {
            Some(AtomicPlayerLocation::Matching(e)) => snap.in_match(e, c.id),
            Some(AtomicPlayerLocation::InLobby(e)) => snap.in_lobby(e, c.id),
            _ => true,
        };
        prop_assert!(agrees, "player {} is at {:?}", c.id, location);
        if let Some(e) = seen.get(&c.id) {
            let here = [
                AtomicPlayerLocation::Matching(*e),
                AtomicPlayerLocation::InLobby(*e),
            ];
            // a player that left stays listed in its match until the match notices
            prop_assert!(
                location.is_none() || here.contains(&location.unwrap()),
                "player {} in {:?} but at {:?}",
                c.id,
                e,
                location
            );
        }
    }
    Ok(())
}

/// Stats agree with the entities and the queue: every match formed is committed, rolled
/// back or in flight; tickets and locations agree.
fn check_counts(h: &AtomicTestHarness, snap: &Snapshot) -> Result<(), TestCaseError> {
    let state = h.server_state();
    let stats = h.stats();
    prop_assert_eq!(stats.lobbies_open, snap.lobbies.len());
    prop_assert_eq!(stats.matches_in_flight, snap.matches.len());
    prop_assert_eq!(
        stats.matches_formed,
        stats.matches_committed + stats.matches_rolled_back + stats.matches_in_flight as u64
    );
    let queue = state.queue();
    prop_assert_eq!(queue.total(), stats.total_queued());
    // a player the commit machine said to re-queue, still on the same session, was re-queued
    prop_assert_eq!(stats.healthy_players_dropped, 0);
    for c in &h.clients {
        let location = state.location(c.id);
        prop_assert_eq!(
            queue.contains(&c.id),
            location == Some(AtomicPlayerLocation::Queued),
            "player {} ticket vs location {:?}",
            c.id,
            location
        );
    }
    Ok(())
}

// regressions beside this file (proptest's default would look for them in
// tests/proptest-regressions/, since this binary's directory has a main.rs)
proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::cases::cases(16),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn server_invariants_hold(ops in proptest::collection::vec(op(PLAYERS), 1..40), group in 2usize..4) {
        AtomicRun::new(group, 0).run(&ops)?;
    }

    #[test]
    fn server_invariants_hold_under_faults(
        ops in proptest::collection::vec(fault_op(PLAYERS), 1..40),
        group in 2usize..4,
        seed in any::<u64>(),
    ) {
        AtomicRun::new(group, seed).run(&ops)?;
    }
}

/// The shrunk case of seed `cc 476af554…` (in the regressions file), which failed the old
/// fixed 8.5 s drain: a re-queued player's next match (with a player that never
/// acknowledges) formed only when its first match rolled back, and was still in flight.
#[test]
fn a_chain_of_slow_matches_drains() {
    use Op::*;
    let ops = [
        Join(2, 1),
        NoAcks(1),
        NoAcks(0),
        Join(0, 1),
        Stall(0, false),
        Run(139),
        Run(124),
        Run(133),
        Run(131),
        Join(1, 1),
        Run(100),
        Join(0, 1),
    ];
    let mut run = AtomicRun::new(2, 0);
    run.run(&ops).unwrap();
    let stats = run.h.stats();
    assert_eq!(stats.matches_in_flight, 0);
    // (3, 2) rolls back at 11.6 s, then (3, 1), formed only then, rolls back at 17.8 s:
    // past the old fixed drain, which ended at 14.9 s
    assert_eq!(stats.matches_rolled_back, 2);
    assert!(
        run.h.now() > Duration::from_millis(17_800),
        "{:?}",
        run.h.now()
    );
}
