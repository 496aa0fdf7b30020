//! The Redis store passes the same suite as the in-memory store, and keeps the invariants
//! when several nodes interleave on it, when Redis restarts empty, and when its scripts are
//! forgotten. Skipped, with a message, where no `redis-server` is installed.

use std::time::Duration;

use bevy_atomic_matchmaking::atomic::core::store::{
    AtomicStore, AtomicStoreError, AtomicStoreJoin,
};
use bevy_atomic_matchmaking::testing::redis_server::TestRedis;
use bevy_atomic_matchmaking::testing::store_suite::{LONG_TTL, interleave::interleave, run_all};

#[test]
fn redis_store_passes_the_store_suite() {
    let Some(redis) = TestRedis::start("redis_store_passes_the_store_suite") else {
        return;
    };
    let mut run = 0;
    run_all(|| {
        run += 1;
        redis.store(&format!("suite{run}"))
    });
}

#[test]
fn nodes_interleaved_on_one_redis_keep_the_invariants() {
    let Some(redis) = TestRedis::start("nodes_interleaved_on_one_redis_keep_the_invariants") else {
        return;
    };
    let (mut commits, mut deaths) = (0, 0);
    for seed in 0..12 {
        let mut store = redis.store(&format!("mix{seed}"));
        let report = interleave(&mut store, seed, 3, 16, 300);
        commits += report.commits;
        deaths += report.deaths;
    }
    assert!(
        commits > 10 && deaths > 5,
        "{commits} commits, {deaths} deaths"
    );
}

#[test]
fn a_restarted_redis_fences_every_old_lease() {
    let Some(mut redis) = TestRedis::start("a_restarted_redis_fences_every_old_lease") else {
        return;
    };
    let mut store = redis.store("restart");
    let lease = store.acquire_lease("a", LONG_TTL).unwrap();
    let limits = Default::default();
    let joined = store.join(&lease, 1, "duel", limits, None).unwrap();
    let AtomicStoreJoin::Queued { enqueued_at_us } = joined else {
        panic!("{joined:?}");
    };
    redis.restart();
    // the first call after the restart finds the connection dead
    let first = store.join(&lease, 2, "duel", limits, None);
    assert!(
        matches!(
            first,
            Err(AtomicStoreError::Unavailable(_)) | Err(AtomicStoreError::LeaseLost)
        ),
        "{first:?}"
    );
    assert_eq!(
        store.renew_lease(&lease, LONG_TTL),
        Err(AtomicStoreError::LeaseLost)
    );
    // the node takes a new lease and re-joins its player from its own memory, keeping
    // its seniority; the new epoch is above every old one
    let again = store.acquire_lease("a", LONG_TTL).unwrap();
    assert!(
        again.epoch > lease.epoch,
        "{} after {}",
        again.epoch,
        lease.epoch
    );
    let rejoined = store
        .join(&again, 1, "duel", limits, Some(enqueued_at_us))
        .unwrap();
    assert_eq!(rejoined, AtomicStoreJoin::Queued { enqueued_at_us });
    store.join(&again, 3, "duel", limits, None).unwrap();
    let front: Vec<u64> = store
        .front("duel", 10)
        .unwrap()
        .iter()
        .map(|t| t.player)
        .collect();
    assert_eq!(front, vec![1, 3]);
}

#[test]
fn an_unreachable_redis_is_unavailable_then_recovers() {
    let Some(mut redis) = TestRedis::start("an_unreachable_redis_is_unavailable_then_recovers")
    else {
        return;
    };
    let mut store = redis.store("down");
    store.set_timeout(Duration::from_millis(200));
    store.acquire_lease("a", LONG_TTL).unwrap();
    redis.kill();
    let down = store.ready_categories(2);
    assert!(
        matches!(down, Err(AtomicStoreError::Unavailable(_))),
        "{down:?}"
    );
    let still = store.ready_categories(2);
    assert!(
        matches!(still, Err(AtomicStoreError::Unavailable(_))),
        "{still:?}"
    );
    redis.restart();
    assert_eq!(store.ready_categories(2).unwrap(), Vec::<String>::new());
    assert!(store.calls() >= 4);
}
