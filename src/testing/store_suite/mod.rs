//! The suite every [`AtomicStore`] passes: the in-memory store in the crate's unit tests,
//! the Redis store in `tests/atomic` (where a `redis-server` can be started).
//!
//! Each case takes a fresh, empty store; [`run_all`] runs every case. [`interleave`] drives
//! several nodes against one store with random interleavings, node deaths and lost
//! answers, and checks the invariants after every step.

pub mod interleave;

use std::time::Duration;

use crate::atomic::core::store::{
    AtomicClaim, AtomicCommit, AtomicNodeLease, AtomicStore, AtomicStoreError, AtomicStoreJoin,
    AtomicStoreLimits, AtomicStoreSeat,
};
use crate::shared::player::PlayerId;

/// A store under test: an [`AtomicStore`] whose time the suite can let pass.
pub trait AtomicStoreUnderTest: AtomicStore {
    /// Lets `elapsed` of the store's time pass (a manual clock moves; a real one is
    /// waited for).
    fn pass(&mut self, elapsed: Duration);
}

impl AtomicStoreUnderTest for crate::atomic::core::store::AtomicMemoryStore {
    fn pass(&mut self, elapsed: Duration) {
        self.advance(elapsed);
    }
}

/// How long the suite's short leases live. A real store waits for them, so they are short.
pub const SHORT_TTL: Duration = Duration::from_millis(300);
/// How long the suite's long leases live: longer than any case.
pub const LONG_TTL: Duration = Duration::from_secs(60);

const NO_LIMITS: AtomicStoreLimits = AtomicStoreLimits {
    capacity: usize::MAX,
    max_categories: usize::MAX,
};

/// Runs every case, each on a fresh store from `make`.
pub fn run_all<S: AtomicStoreUnderTest>(mut make: impl FnMut() -> S) {
    let cases: [(&str, fn(&mut S)); 13] = [
        (
            "join_is_idempotent_cluster_wide",
            join_is_idempotent_cluster_wide,
        ),
        (
            "seniority_keeps_requeued_in_front",
            seniority_keeps_requeued_in_front,
        ),
        ("claim_is_all_or_none", claim_is_all_or_none),
        ("joins_respect_limits", joins_respect_limits),
        (
            "leave_takes_only_own_queued_ticket",
            leave_takes_only_own_queued_ticket,
        ),
        ("commit_fills_the_lobby", commit_fills_the_lobby),
        (
            "rollback_deletes_lobby_and_requeues",
            rollback_deletes_lobby_and_requeues,
        ),
        ("fencing_refuses_a_lost_lease", fencing_refuses_a_lost_lease),
        ("dead_node_is_reaped", dead_node_is_reaped),
        (
            "commit_refuses_a_dead_players_node",
            commit_refuses_a_dead_players_node,
        ),
        ("release_leaves_nothing", release_leaves_nothing),
        (
            "match_floor_is_below_new_claims",
            match_floor_is_below_new_claims,
        ),
        (
            "stats_count_the_whole_cluster",
            stats_count_the_whole_cluster,
        ),
    ];
    for (name, case) in cases {
        eprintln!("store suite: {name}");
        case(&mut make());
    }
}

fn lease<S: AtomicStore>(store: &mut S, node: &str, ttl: Duration) -> AtomicNodeLease {
    store.acquire_lease(node, ttl).expect("lease")
}

fn join<S: AtomicStore>(store: &mut S, lease: &AtomicNodeLease, player: PlayerId, cat: &str) {
    let joined = store
        .join(lease, player, cat, NO_LIMITS, None)
        .expect("join");
    assert!(
        matches!(joined, AtomicStoreJoin::Queued { .. }),
        "{player}: {joined:?}"
    );
}

fn front<S: AtomicStore>(store: &mut S, cat: &str) -> Vec<PlayerId> {
    let tickets = store.front(cat, usize::MAX).expect("front");
    tickets.iter().map(|t| t.player).collect()
}

fn claimed<S: AtomicStore>(
    store: &mut S,
    lease: &AtomicNodeLease,
    cat: &str,
    players: &[PlayerId],
) -> u64 {
    match store.claim(lease, cat, players).expect("claim") {
        AtomicClaim::Claimed { match_id } => match_id,
        other => panic!("claim of {players:?}: {other:?}"),
    }
}

fn seat<S: AtomicStore>(store: &mut S, player: PlayerId) -> Option<AtomicStoreSeat> {
    store.player(player).expect("player").map(|p| p.seat)
}

/// A player joins once per cluster: again through its node changes nothing, through
/// another node is refused.
pub fn join_is_idempotent_cluster_wide<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    let b = lease(store, "b", LONG_TTL);
    join(store, &a, 1, "duel");
    let again = store.join(&a, 1, "duel", NO_LIMITS, None).unwrap();
    assert_eq!(again, AtomicStoreJoin::AlreadyQueued);
    let other = store.join(&b, 1, "duel", NO_LIMITS, None).unwrap();
    let held = AtomicStoreJoin::HeldByAnotherNode { node: "a".into() };
    assert_eq!(other, held);
    let other_category = store.join(&a, 1, "ffa", NO_LIMITS, None).unwrap();
    assert_eq!(other_category, AtomicStoreJoin::AlreadyQueued);
    assert_eq!(front(store, "duel"), vec![1]);
    assert_eq!(front(store, "ffa"), Vec::<PlayerId>::new());
}

/// Tickets stand by enqueue time; re-queued ones in front, still by original time.
pub fn seniority_keeps_requeued_in_front<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    let b = lease(store, "b", LONG_TTL);
    for player in 1..=4 {
        let node = if player % 2 == 0 { &b } else { &a };
        join(store, node, player, "duel");
    }
    assert_eq!(front(store, "duel"), vec![1, 2, 3, 4]);
    let m = claimed(store, &b, "duel", &[4, 3]);
    join(store, &a, 5, "duel");
    let requeued = store.rollback(&b, m, &[4, 3]).unwrap();
    assert_eq!(requeued.len(), 2);
    assert_eq!(front(store, "duel"), vec![3, 4, 1, 2, 5]);
    let tickets = store.front("duel", 2).unwrap();
    assert!(tickets[0].enqueued_at_us < tickets[1].enqueued_at_us);
    assert_eq!(tickets[1].node, "b");
    assert_eq!(store.ready_categories(5).unwrap(), vec!["duel".to_owned()]);
    assert!(store.ready_categories(6).unwrap().is_empty());
}

/// A claim takes every ticket or none, and never a ticket another claim holds.
pub fn claim_is_all_or_none<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    let b = lease(store, "b", LONG_TTL);
    for player in 1..=3 {
        join(store, &a, player, "duel");
    }
    let m = claimed(store, &a, "duel", &[1, 2]);
    let stale = store.claim(&b, "duel", &[3, 2]).unwrap();
    assert_eq!(stale, AtomicClaim::Stale { player: 2 });
    assert_eq!(front(store, "duel"), vec![3]);
    let twice = store.claim(&b, "duel", &[3, 3]).unwrap();
    assert_eq!(twice, AtomicClaim::Stale { player: 3 });
    let wrong_category = store.claim(&b, "ffa", &[3]).unwrap();
    assert_eq!(wrong_category, AtomicClaim::Stale { player: 3 });
    assert_eq!(
        seat(store, 1),
        Some(AtomicStoreSeat::Matching { match_id: m })
    );
    let record = store.match_record(m).unwrap().expect("match");
    assert_eq!(
        (record.coordinator.as_str(), record.players),
        ("a", vec![1, 2])
    );
    assert_eq!(
        seat(store, 3),
        Some(AtomicStoreSeat::Queued {
            category: "duel".into()
        })
    );
}

/// Joins stop at the category's capacity and at the number of categories.
pub fn joins_respect_limits<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    let limits = AtomicStoreLimits {
        capacity: 2,
        max_categories: 1,
    };
    for player in 1..=2 {
        let joined = store.join(&a, player, "duel", limits, None).unwrap();
        assert!(matches!(joined, AtomicStoreJoin::Queued { .. }));
    }
    let full = store.join(&a, 3, "duel", limits, None).unwrap();
    assert_eq!(full, AtomicStoreJoin::Full { capacity: 2 });
    let more = store.join(&a, 3, "ffa", limits, None).unwrap();
    assert_eq!(more, AtomicStoreJoin::TooManyCategories { max: 1 });
    assert_eq!(store.player(3).unwrap(), None);
}

/// A node takes out only the queued tickets of its own players.
pub fn leave_takes_only_own_queued_ticket<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    let b = lease(store, "b", LONG_TTL);
    for player in 1..=3 {
        join(store, &a, player, "duel");
    }
    assert!(!store.leave(&b, 1).unwrap());
    assert!(store.leave(&a, 1).unwrap());
    assert!(!store.leave(&a, 1).unwrap());
    claimed(store, &a, "duel", &[2, 3]);
    assert!(
        !store.leave(&a, 2).unwrap(),
        "a player in a match holds no ticket"
    );
    assert!(front(store, "duel").is_empty());
    assert_eq!(store.player(1).unwrap(), None);
}

/// The commit point needs a lobby, fills it once and resolves the match.
pub fn commit_fills_the_lobby<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    let b = lease(store, "b", LONG_TTL);
    join(store, &a, 1, "duel");
    join(store, &b, 2, "duel");
    join(store, &b, 3, "duel");
    join(store, &b, 4, "duel");
    let m = claimed(store, &a, "duel", &[1, 2]);
    assert_eq!(store.commit(&a, m).unwrap(), AtomicCommit::NoLobby);
    assert!(
        !store.open_lobby(&b, m, 7, "ABCD").unwrap(),
        "b does not coordinate"
    );
    assert!(store.open_lobby(&a, m, 7, "ABCD").unwrap());
    assert!(
        !store.open_lobby(&a, m, 8, "EFGH").unwrap(),
        "one lobby per match"
    );
    let other = claimed(store, &b, "duel", &[3, 4]);
    assert!(!store.open_lobby(&b, other, 7, "WXYZ").unwrap(), "id taken");
    assert!(
        !store.open_lobby(&b, other, 9, "ABCD").unwrap(),
        "code taken"
    );
    assert_eq!(store.commit(&b, m).unwrap(), AtomicCommit::NotForming);
    assert_eq!(store.commit(&a, m).unwrap(), AtomicCommit::Committed);
    assert_eq!(store.commit(&a, m).unwrap(), AtomicCommit::NotForming);
    assert_eq!(
        store.rollback(&a, m, &[1, 2]).unwrap(),
        Vec::<PlayerId>::new()
    );
    assert_eq!(
        seat(store, 2),
        Some(AtomicStoreSeat::InLobby { lobby_id: 7 })
    );
    assert_eq!(store.lobby(7).unwrap().map(|l| l.members), Some(vec![1, 2]));
    assert_eq!(store.match_record(m).unwrap(), None);
    assert!(!store.leave_lobby(&a, 7, 2).unwrap(), "2 is b's player");
    assert!(store.leave_lobby(&b, 7, 2).unwrap());
    assert!(store.leave_lobby(&a, 7, 1).unwrap());
    assert_eq!(store.lobby(7).unwrap(), None);
    store.rollback(&b, other, &[]).unwrap();
    assert_eq!(store.residue().unwrap(), 0);
}

/// A rollback deletes the lobby and its code and re-queues only whom it names.
pub fn rollback_deletes_lobby_and_requeues<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    for player in 1..=3 {
        join(store, &a, player, "duel");
    }
    let m = claimed(store, &a, "duel", &[1, 2]);
    assert!(store.open_lobby(&a, m, 7, "ABCD").unwrap());
    assert_eq!(store.rollback(&a, m, &[2, 2]).unwrap(), vec![2]);
    assert_eq!(front(store, "duel"), vec![2, 3]);
    assert_eq!(store.player(1).unwrap(), None);
    assert_eq!(store.lobby(7).unwrap(), None);
    assert_eq!(store.match_record(m).unwrap(), None);
    let again = claimed(store, &a, "duel", &[2, 3]);
    assert!(
        store.open_lobby(&a, again, 7, "ABCD").unwrap(),
        "id and code are free"
    );
    assert_eq!(
        store.rollback(&a, again, &[]).unwrap(),
        Vec::<PlayerId>::new()
    );
    assert_eq!(store.residue().unwrap(), 0);
}

/// A lease that expired writes nothing; a new one has a higher epoch.
pub fn fencing_refuses_a_lost_lease<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", SHORT_TTL);
    let taken = store.acquire_lease("a", SHORT_TTL);
    assert_eq!(taken, Err(AtomicStoreError::NodeNameTaken("a".into())));
    let forged = AtomicNodeLease {
        node: "a".into(),
        epoch: a.epoch + 1,
    };
    let refused = store.join(&forged, 1, "duel", NO_LIMITS, None);
    assert_eq!(refused, Err(AtomicStoreError::LeaseLost));
    join(store, &a, 2, "duel");
    store.pass(SHORT_TTL + Duration::from_millis(100));
    assert_eq!(
        store.renew_lease(&a, SHORT_TTL),
        Err(AtomicStoreError::LeaseLost)
    );
    let late = store.join(&a, 3, "duel", NO_LIMITS, None);
    assert_eq!(late, Err(AtomicStoreError::LeaseLost));
    assert_eq!(store.dead_nodes().unwrap(), vec!["a".to_owned()]);
    let renewed = lease(store, "a", LONG_TTL);
    assert!(renewed.epoch > a.epoch);
    assert_eq!(
        store.player(2).unwrap(),
        None,
        "the old life's tickets are reaped"
    );
    assert_eq!(store.leave(&a, 2), Err(AtomicStoreError::LeaseLost));
    assert!(store.dead_nodes().unwrap().is_empty());
    store.renew_lease(&renewed, LONG_TTL).unwrap();
}

/// A survivor reaps a dead node: its tickets go, its matches roll back, its lobby seats
/// empty; the players of live nodes go back in front.
pub fn dead_node_is_reaped<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    let b = lease(store, "b", SHORT_TTL);
    for player in [11, 12, 13] {
        join(store, &a, player, "duel");
    }
    for player in [21, 22, 23] {
        join(store, &b, player, "duel");
    }
    let by_b = claimed(store, &b, "duel", &[11, 21]);
    assert!(store.open_lobby(&b, by_b, 5, "BBBB").unwrap());
    let by_a = claimed(store, &a, "duel", &[12, 22]);
    assert!(store.open_lobby(&a, by_a, 6, "AAAA").unwrap());
    assert_eq!(store.commit(&a, by_a).unwrap(), AtomicCommit::Committed);
    assert!(
        store.reap(&a, "b").unwrap().matches_rolled_back.is_empty(),
        "b lives"
    );
    store.pass(SHORT_TTL + Duration::from_millis(100));
    store.renew_lease(&a, LONG_TTL).unwrap();
    assert_eq!(store.dead_nodes().unwrap(), vec!["b".to_owned()]);
    let reaped = store.reap(&a, "b").unwrap();
    assert_eq!(reaped.tickets_removed, 1);
    assert_eq!(reaped.matches_rolled_back, vec![by_b]);
    assert_eq!(reaped.requeued, vec![(11, "a".to_owned())]);
    assert_eq!(reaped.left_lobbies, 1);
    assert_eq!(front(store, "duel"), vec![11, 13]);
    assert_eq!(store.lobby(6).unwrap().map(|l| l.members), Some(vec![12]));
    assert_eq!(store.lobby(5).unwrap(), None);
    for gone in [21, 22, 23] {
        assert_eq!(store.player(gone).unwrap(), None, "{gone}");
    }
    assert_eq!(
        store.reap(&a, "b").unwrap(),
        Default::default(),
        "reaped once"
    );
    assert!(store.dead_nodes().unwrap().is_empty());
}

/// The commit point refuses a match with a player whose node died, even before the
/// reaper ran.
pub fn commit_refuses_a_dead_players_node<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    let b = lease(store, "b", SHORT_TTL);
    join(store, &a, 1, "duel");
    join(store, &b, 2, "duel");
    let m = claimed(store, &a, "duel", &[1, 2]);
    assert!(store.open_lobby(&a, m, 3, "CCCC").unwrap());
    store.pass(SHORT_TTL + Duration::from_millis(100));
    store.renew_lease(&a, LONG_TTL).unwrap();
    assert_eq!(
        store.commit(&a, m).unwrap(),
        AtomicCommit::PlayerNodeGone { player: 2 }
    );
    assert_eq!(store.rollback(&a, m, &[1, 2]).unwrap(), vec![1]);
    assert_eq!(front(store, "duel"), vec![1]);
    store.reap(&a, "b").unwrap();
    assert_eq!(store.player(2).unwrap(), None);
}

/// A node that shuts down releases its lease, and its records go with it.
pub fn release_leaves_nothing<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    for player in 1..=5 {
        join(store, &a, player, "duel");
    }
    let m = claimed(store, &a, "duel", &[1, 2]);
    assert!(store.open_lobby(&a, m, 1, "DDDD").unwrap());
    let done = claimed(store, &a, "duel", &[3, 4]);
    assert!(store.open_lobby(&a, done, 2, "EEEE").unwrap());
    assert_eq!(store.commit(&a, done).unwrap(), AtomicCommit::Committed);
    store.release_lease(&a).unwrap();
    assert_eq!(store.residue().unwrap(), 0);
    assert_eq!(
        store.renew_lease(&a, LONG_TTL),
        Err(AtomicStoreError::LeaseLost)
    );
    assert!(store.dead_nodes().unwrap().is_empty());
    lease(store, "a", LONG_TTL);
}

/// Every match claimed after [`AtomicStore::match_floor`] has a larger id.
fn match_floor_is_below_new_claims<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    let mut floors = Vec::new();
    for pair in [[1, 2], [3, 4], [5, 6]] {
        let floor = store.match_floor().expect("floor");
        join(store, &a, pair[0], "duel");
        join(store, &a, pair[1], "duel");
        let match_id = claimed(store, &a, "duel", &pair);
        assert!(
            match_id > floor,
            "match {match_id} at or below the floor {floor}"
        );
        assert!(store.match_floor().expect("floor") >= match_id);
        floors.push(floor);
    }
    assert!(floors.windows(2).all(|w| w[0] < w[1]), "{floors:?}");
}

/// [`AtomicStore::stats`]: live nodes, matches forming and tickets by category, every node's;
/// [`AtomicStore::coordinated_by`]: each node's matches forming.
fn stats_count_the_whole_cluster<S: AtomicStoreUnderTest>(store: &mut S) {
    let a = lease(store, "a", LONG_TTL);
    let b = lease(store, "b", LONG_TTL);
    join(store, &a, 1, "duel");
    join(store, &b, 2, "duel");
    join(store, &b, 3, "duel");
    join(store, &a, 4, "ffa");
    claimed(store, &b, "duel", &[1, 2]);
    let stats = store.stats().expect("stats");
    assert_eq!(stats.live_nodes, 2, "{stats:?}");
    assert_eq!(stats.matches_forming, 1, "{stats:?}");
    assert_eq!(store.coordinated_by("b").expect("coordinated").len(), 1);
    assert!(store.coordinated_by("a").expect("coordinated").is_empty());
    let queued: Vec<(&str, usize)> = stats
        .queued_by_category
        .iter()
        .map(|(c, n)| (c.as_str(), *n))
        .collect();
    assert_eq!(queued, [("duel", 1), ("ffa", 1)], "{stats:?}");
}
