//! The Redis store passes the same suite as the in-memory store, and keeps the invariants
//! when several nodes interleave on it, when Redis restarts empty, and when its scripts are
//! forgotten, and a cluster of nodes on it keeps every guarantee under faults. Skipped, with
//! a message, where no `redis-server` is installed.

use std::time::Duration;

use bevy_atomic_matchmaking::atomic::core::store::{
    AtomicStore, AtomicStoreError, AtomicStoreJoin,
};
use bevy_atomic_matchmaking::testing::cluster_sim::{
    AtomicClusterSimRates, AtomicClusterSimSettings, run_cluster_sim,
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

mod bridge {
    use std::time::{Duration, Instant};

    use bevy_atomic_matchmaking::atomic::core::store::{
        AtomicBridgeEvent, AtomicBridgeSettings, AtomicStoreAnswer, AtomicStoreBridge,
        AtomicStoreCommand, AtomicStoreError, AtomicStoreJoin,
    };
    use bevy_atomic_matchmaking::testing::redis_server::TestRedis;

    const WAIT: Duration = Duration::from_secs(10);

    fn join(player: u64) -> AtomicStoreCommand {
        AtomicStoreCommand::Join {
            player,
            category: "duel".into(),
            limits: Default::default(),
            seniority: None,
        }
    }

    /// Waits for the event `want` picks, collecting the others.
    fn until(
        bridge: &AtomicStoreBridge,
        seen: &mut Vec<AtomicBridgeEvent>,
        want: impl Fn(&AtomicBridgeEvent) -> bool,
    ) -> AtomicBridgeEvent {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(event) = bridge.wait(Duration::from_millis(50)) {
                if want(&event) {
                    return event;
                }
                seen.push(event);
            }
        }
        panic!("no such event; saw {seen:?}");
    }

    fn answer_of(event: AtomicBridgeEvent) -> Result<AtomicStoreAnswer, AtomicStoreError> {
        match event {
            AtomicBridgeEvent::Answer { result, .. } => result,
            other => panic!("{other:?}"),
        }
    }

    fn is_answer(tag: u64) -> impl Fn(&AtomicBridgeEvent) -> bool {
        move |e| matches!(e, AtomicBridgeEvent::Answer { tag: t, .. } if *t == tag)
    }

    #[test]
    fn two_bridges_share_one_queue_and_ride_out_a_redis_restart() {
        let Some(mut redis) =
            TestRedis::start("two_bridges_share_one_queue_and_ride_out_a_redis_restart")
        else {
            return;
        };
        let mut settings = AtomicBridgeSettings::new("a");
        settings.lease_ttl = Duration::from_millis(900);
        let a = AtomicStoreBridge::start(redis.store("bridge"), settings);
        let b = AtomicStoreBridge::start(redis.store("bridge"), AtomicBridgeSettings::new("b"));
        let mut seen = Vec::new();
        let lease = |e: &AtomicBridgeEvent| matches!(e, AtomicBridgeEvent::LeaseAcquired(_));
        let AtomicBridgeEvent::LeaseAcquired(first) = until(&a, &mut seen, lease) else {
            unreachable!()
        };
        until(&b, &mut seen, lease);
        a.send(1, join(1));
        b.send(2, join(2));
        assert!(matches!(
            answer_of(until(&a, &mut seen, is_answer(1))),
            Ok(AtomicStoreAnswer::Joined(AtomicStoreJoin::Queued { .. }))
        ));
        assert!(matches!(
            answer_of(until(&b, &mut seen, is_answer(2))),
            Ok(AtomicStoreAnswer::Joined(AtomicStoreJoin::Queued { .. }))
        ));
        b.send(3, join(1));
        let held = answer_of(until(&b, &mut seen, is_answer(3)));
        assert_eq!(
            held,
            Ok(AtomicStoreAnswer::Joined(
                AtomicStoreJoin::HeldByAnotherNode { node: "a".into() }
            ))
        );
        a.send(
            4,
            AtomicStoreCommand::ClaimFifo {
                group_size: 2,
                max: 4,
            },
        );
        let Ok(AtomicStoreAnswer::Claimed(groups)) = answer_of(until(&a, &mut seen, is_answer(4)))
        else {
            panic!("no claim");
        };
        assert_eq!(groups.len(), 1, "one match across the two nodes");

        // Redis goes away: commands are refused at once, never waited on
        redis.kill();
        until(&a, &mut seen, |e| {
            matches!(e, AtomicBridgeEvent::Unavailable(_))
        });
        let asked = Instant::now();
        a.send(5, join(3));
        let refused = answer_of(until(&a, &mut seen, is_answer(5)));
        assert!(
            matches!(refused, Err(AtomicStoreError::Unavailable(_))),
            "{refused:?}"
        );
        assert!(
            asked.elapsed() < Duration::from_millis(700),
            "refused in {:?}",
            asked.elapsed()
        );

        // it comes back empty: the old lease is gone, a new one is taken with a higher epoch
        redis.restart();
        let lost_or_new = |e: &AtomicBridgeEvent| matches!(e, AtomicBridgeEvent::LeaseAcquired(_));
        let AtomicBridgeEvent::LeaseAcquired(second) = until(&a, &mut seen, lost_or_new) else {
            unreachable!()
        };
        assert!(second.epoch > first.epoch);
        assert!(seen.contains(&AtomicBridgeEvent::LeaseLost), "{seen:?}");
        assert!(seen.contains(&AtomicBridgeEvent::Available), "{seen:?}");
        a.send(6, join(3));
        let joined = answer_of(until(&a, &mut seen, is_answer(6)));
        assert!(
            matches!(
                joined,
                Ok(AtomicStoreAnswer::Joined(AtomicStoreJoin::Queued { .. }))
            ),
            "{joined:?}"
        );
    }

    #[test]
    fn a_bridge_that_stops_takes_its_records_with_it() {
        let Some(redis) = TestRedis::start("a_bridge_that_stops_takes_its_records_with_it") else {
            return;
        };
        let a = AtomicStoreBridge::start(redis.store("stop"), AtomicBridgeSettings::new("a"));
        let mut seen = Vec::new();
        until(&a, &mut seen, |e| {
            matches!(e, AtomicBridgeEvent::LeaseAcquired(_))
        });
        for player in 1..=3 {
            a.send(player, join(player));
            until(&a, &mut seen, is_answer(player));
        }
        drop(a);
        use bevy_atomic_matchmaking::atomic::core::store::AtomicStore;
        assert_eq!(redis.store("stop").residue().unwrap(), 0);
    }
}

#[test]
fn a_cluster_on_redis_keeps_every_guarantee_under_faults() {
    let name = "a_cluster_on_redis_keeps_every_guarantee_under_faults";
    let Some(mut redis) = TestRedis::start(name) else {
        return;
    };
    let mut store = redis.store("sim");
    // real time: 15 s of faults (a node killed, stalls past the lease, a Redis restart),
    // then 20 s to become quiet and 6 s to empty
    let settings = AtomicClusterSimSettings {
        players: 20,
        steps: 600,
        step: Duration::from_millis(25),
        quiet: Duration::from_secs(20),
        empty: Duration::from_secs(6),
        rates: AtomicClusterSimRates {
            kill: 300,
            stall: 200,
            disconnect: 40,
            restart: 400,
        },
        ..Default::default()
    };
    let report = run_cluster_sim(&mut store, &mut |_| redis.restart(), 5, settings)
        .unwrap_or_else(|violations| panic!("{}", violations.join("\n")));
    eprintln!("{report:?}");
    assert!(report.commits >= 20, "{report:?}");
    assert!(report.deaths >= 1, "{report:?}");
    assert!(report.restarts >= 1, "{report:?}");
    assert!(report.lease_losses >= 1, "{report:?}");
}

mod inbox {
    use std::time::{Duration, Instant};

    use bevy_atomic_matchmaking::atomic::cluster::AtomicRedisInbox;
    use bevy_atomic_matchmaking::atomic::core::cluster::{
        AtomicClusterInbox, AtomicClusterMessage,
    };
    use bevy_atomic_matchmaking::testing::redis_server::TestRedis;

    fn acked(match_id: u64) -> AtomicClusterMessage {
        AtomicClusterMessage::Acked {
            match_id,
            player: match_id * 10,
        }
    }

    fn open(redis: &TestRedis, prefix: &str) -> AtomicRedisInbox {
        AtomicRedisInbox::new(&redis.url(), prefix, Duration::from_millis(300)).unwrap()
    }

    /// A plain connection, to write into the streams behind the inbox's back.
    fn raw(redis: &TestRedis) -> redis::Connection {
        redis::Client::open(redis.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    #[test]
    fn two_nodes_post_to_each_other_and_each_message_comes_out_once_in_order() {
        let name = "two_nodes_post_to_each_other_and_each_message_comes_out_once_in_order";
        let Some(redis) = TestRedis::start(name) else {
            return;
        };
        let (mut a, mut b) = (open(&redis, "two"), open(&redis, "two"));
        // posted before either node ever read its inbox: nothing is skipped
        for id in 1..=20 {
            a.post("b", &acked(id)).unwrap();
            b.post("a", &acked(100 + id)).unwrap();
        }
        assert_eq!((a.calls(), b.calls()), (20, 20), "one round trip per post");
        assert_eq!(a.residue().unwrap(), 40);
        let to_b = b.take("b", 100).unwrap();
        assert_eq!(to_b, (1..=20).map(acked).collect::<Vec<_>>());
        let to_a = a.take("a", 100).unwrap();
        assert_eq!(to_a, (101..=120).map(acked).collect::<Vec<_>>());
        assert_eq!(b.take("b", 100).unwrap(), vec![]);
        assert_eq!(a.take("a", 100).unwrap(), vec![]);
        // read, acknowledged and deleted: nothing accumulates
        assert_eq!(a.residue().unwrap(), 0);

        // steady state: one round trip per post, per empty take, two per take that finds
        b.post("a", &acked(7)).unwrap();
        let before = a.calls();
        assert_eq!(a.take("a", 10).unwrap(), vec![acked(7)]);
        assert_eq!(a.calls() - before, 2);
        assert_eq!(a.take("a", 10).unwrap(), vec![]);
        assert_eq!(a.calls() - before, 3);

        // a node that died with messages unread: its inbox is cleared
        a.post("b", &acked(8)).unwrap();
        a.clear("b").unwrap();
        assert_eq!(a.residue().unwrap(), 0);
        assert_eq!(b.take("b", 10).unwrap(), vec![]);
        a.post("b", &acked(9)).unwrap();
        assert_eq!(b.take("b", 10).unwrap(), vec![acked(9)]);
        assert_eq!(a.undecodable() + b.undecodable(), 0);
    }

    #[test]
    fn take_respects_max_and_a_lost_read_is_delivered_again() {
        let Some(redis) = TestRedis::start("take_respects_max_and_a_lost_read_is_delivered_again")
        else {
            return;
        };
        let mut inbox = open(&redis, "max");
        assert_eq!(inbox.take("n", 5).unwrap(), vec![]);
        for id in 1..=10 {
            inbox.post("n", &acked(id)).unwrap();
        }
        assert_eq!(inbox.take("n", 0).unwrap(), vec![]);
        assert_eq!(
            inbox.take("n", 3).unwrap(),
            (1..=3).map(acked).collect::<Vec<_>>()
        );
        assert_eq!(
            inbox.take("n", 3).unwrap(),
            (4..=6).map(acked).collect::<Vec<_>>()
        );
        assert_eq!(
            inbox.take("n", 10).unwrap(),
            (7..=10).map(acked).collect::<Vec<_>>()
        );
        assert_eq!(inbox.residue().unwrap(), 0);

        // a read whose reply never came back: the entries are pending in the group, and
        // the node's next inbox delivers them again, before the newer ones
        for id in 11..=14 {
            inbox.post("n", &acked(id)).unwrap();
        }
        let mut raw = raw(&redis);
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg(&[
                "GROUP",
                "g",
                "n",
                "COUNT",
                "2",
                "STREAMS",
                "max:inbox:n",
                ">",
            ])
            .query(&mut raw)
            .unwrap();
        let mut again = open(&redis, "max");
        assert_eq!(again.take("n", 1).unwrap(), vec![acked(11)]);
        assert_eq!(again.take("n", 10).unwrap(), vec![acked(12)]);
        assert_eq!(again.take("n", 10).unwrap(), vec![acked(13), acked(14)]);
        assert_eq!(again.residue().unwrap(), 0);
    }

    /// Retries `call` until it succeeds, for at most 5 s.
    fn retry<T>(mut call: impl FnMut() -> Result<T, String>) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match call() {
                Ok(value) => return value,
                Err(error) => {
                    assert!(Instant::now() < deadline, "still failing: {error}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    #[test]
    fn an_inbox_works_again_after_redis_restarts_empty() {
        let Some(mut redis) = TestRedis::start("an_inbox_works_again_after_redis_restarts_empty")
        else {
            return;
        };
        let (mut a, mut b) = (open(&redis, "restart"), open(&redis, "restart"));
        a.post("b", &acked(1)).unwrap();
        assert_eq!(b.take("b", 10).unwrap(), vec![acked(1)]);
        a.post("b", &acked(2)).unwrap(); // lost with the restart
        redis.restart();
        // the first calls find their connections dead; then the group is recreated
        retry(|| a.post("b", &acked(3)));
        retry(|| a.post("b", &acked(4)));
        let mut taken = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while taken.len() < 2 && Instant::now() < deadline {
            match b.take("b", 10) {
                Ok(mut messages) => taken.append(&mut messages),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        assert_eq!(taken, vec![acked(3), acked(4)]);
        assert_eq!(b.take("b", 10).unwrap(), vec![]);
        assert_eq!(b.residue().unwrap(), 0);

        // and again while nobody posts: the reader's first take after it fails or reads
        // nothing, the next ones work
        redis.restart();
        let empty = retry(|| b.take("b", 10));
        assert_eq!(empty, vec![]);
        retry(|| a.post("b", &acked(5)));
        assert_eq!(retry(|| b.take("b", 10)), vec![acked(5)]);
    }

    #[test]
    fn garbage_in_a_stream_is_skipped_and_counted() {
        let Some(redis) = TestRedis::start("garbage_in_a_stream_is_skipped_and_counted") else {
            return;
        };
        let mut inbox = open(&redis, "junk");
        let mut raw = raw(&redis);
        let key = inbox.key("n");
        inbox.post("n", &acked(1)).unwrap();
        let junk: [&[u8]; 3] = [&[0xff; 9], b"", &[0x07; 70_000]];
        for bytes in junk {
            let _: String = redis::cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("m")
                .arg(bytes)
                .query(&mut raw)
                .unwrap();
        }
        // no message field at all
        let _: String = redis::cmd("XADD")
            .arg(&[key.as_str(), "*", "other", "x"])
            .query(&mut raw)
            .unwrap();
        // a valid message followed by a stray byte
        let mut trailing =
            bincode::serde::encode_to_vec(acked(3), bincode::config::standard()).unwrap();
        trailing.push(0);
        let _: String = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("m")
            .arg(trailing)
            .query(&mut raw)
            .unwrap();
        inbox.post("n", &acked(2)).unwrap();
        assert_eq!(inbox.take("n", 100).unwrap(), vec![acked(1), acked(2)]);
        assert_eq!(inbox.undecodable(), 5);
        assert_eq!(inbox.residue().unwrap(), 0, "the garbage is deleted too");
    }
}
