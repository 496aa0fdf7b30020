//! The negotiated shared store on Redis (`NegotiatedRedisStore`): it passes the suite the
//! memory store passes, gives the same verdicts and logs the same events as the memory
//! store on random sequences of calls, leaves nothing behind once its frames expire, and
//! answers again after Redis comes back, without a new handle. Skipped, with a message,
//! where no `redis-server` is installed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bevy_atomic_matchmaking::negotiated::core::fact::{
    NegotiatedAccept, NegotiatedBid, NegotiatedCancel, NegotiatedFact, NegotiatedRequest,
    NegotiatedSignedFact,
};
use bevy_atomic_matchmaking::negotiated::core::frame::NegotiatedFrames;
use bevy_atomic_matchmaking::negotiated::core::protocol::NegotiatedErrorKind;
use bevy_atomic_matchmaking::negotiated::core::relay_core::NegotiatedRelayLimits;
use bevy_atomic_matchmaking::negotiated::core::shared::{
    NegotiatedConnection, NegotiatedLogPosition, NegotiatedMemorySharedStore,
    NegotiatedSharedStore, NegotiatedSharedStoreError, NegotiatedSharedVerdict,
};
use bevy_atomic_matchmaking::negotiated::redis::{
    NEGOTIATED_CONNECTION_KEPT_FRAMES, NegotiatedRedisStore,
};
use bevy_atomic_matchmaking::testing::negotiated_shared_suite::{
    DIFFERENTIAL_LIMITS, NegotiatedDifferentialReport, SUITE_FRAME, differential, run_all,
};
use bevy_atomic_matchmaking::testing::redis_server::TestRedis;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

/// A prefix no other store of this test binary uses.
fn prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{name}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn frames() -> NegotiatedFrames {
    NegotiatedFrames::new(SUITE_FRAME)
}

/// Relay time: wall-clock time, as relays sharing a store run it.
fn wall() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn request(frames: NegotiatedFrames, now: Duration, created_us: u64) -> NegotiatedFact {
    NegotiatedFact::Request(NegotiatedRequest {
        category: "duel".into(),
        frame: frames.frame_of(now),
        created_us,
    })
}

fn id(author: u64, fact: &NegotiatedFact) -> bevy_atomic_matchmaking::prelude::NegotiatedFactId {
    NegotiatedSignedFact::new(author, fact.clone()).id()
}

#[test]
fn the_redis_store_passes_the_shared_store_suite() {
    let Some(redis) = TestRedis::start("the_redis_store_passes_the_shared_store_suite") else {
        return;
    };
    run_all(|frames, limits| redis.negotiated_store(&prefix("suite"), frames, limits));
}

/// Random calls on one Redis and one memory store at once.
fn agree(redis: &TestRedis, seed: u64) -> NegotiatedDifferentialReport {
    let mut memory = NegotiatedMemorySharedStore::new(frames(), DIFFERENTIAL_LIMITS);
    let mut store = redis.negotiated_store(&prefix("diff"), frames(), DIFFERENTIAL_LIMITS);
    differential(&mut memory, &mut store, seed, 160)
}

/// Same verdict kinds (stored, duplicate, refused with a kind and a winner) and the same
/// log events, call after call, on 32 random sequences (each deterministic per its seed).
#[test]
fn the_redis_store_decides_as_the_memory_store() {
    let Some(redis) = TestRedis::start("the_redis_store_decides_as_the_memory_store") else {
        return;
    };
    let config = ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&any::<u64>(), |seed| {
        agree(&redis, seed);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// The random calls reach every refusal a store decides (so the differential test covers
/// every rule).
#[test]
fn the_differential_calls_reach_every_rule() {
    let Some(redis) = TestRedis::start("the_differential_calls_reach_every_rule") else {
        return;
    };
    let mut total = NegotiatedDifferentialReport::default();
    for seed in 0..6 {
        let report = agree(&redis, seed);
        total.posts += report.posts;
        total.events += report.events;
        total.stored += report.stored;
        total.winners += report.winners;
        total.duplicates += report.duplicates;
        total.departures += report.departures;
        for (kind, n) in report.refused {
            *total.refused.entry(kind).or_default() += n;
        }
    }
    let expected = [
        "UnknownRequest",
        "UnknownBid",
        "RequestClosed",
        "BidWithdrawn",
        "BidAnswered",
        "BidExpired",
        "BidderDeparted",
        "TooManyFacts",
        "RelayFull",
        "FrameOutOfRange",
        "InvalidCategory",
    ];
    eprintln!("{total:?}");
    for kind in expected {
        assert!(total.refused.contains_key(kind), "no {kind} in {total:?}");
    }
    assert!(
        total.stored > 100 && total.duplicates > 10 && total.departures > 10 && total.winners > 0,
        "{total:?}"
    );
}

#[test]
fn a_post_is_one_round_trip_and_two_relays_agree() {
    let Some(redis) = TestRedis::start("a_post_is_one_round_trip_and_two_relays_agree") else {
        return;
    };
    let name = prefix("two");
    let limits = NegotiatedRelayLimits::default();
    let (mut a, mut b) = (
        redis.negotiated_store(&name, frames(), limits),
        redis.negotiated_store(&name, frames(), limits),
    );
    let now = wall();
    let req = request(frames(), now, 1);
    a.post(1, &req, now).unwrap();
    let bid = NegotiatedFact::Bid(NegotiatedBid {
        request: id(1, &req),
        created_us: 2,
        deadline_us: u64::MAX,
    });
    let before = b.round_trips();
    b.post(2, &bid, now).unwrap();
    let after_first = b.round_trips();
    let accept = NegotiatedFact::Accept(NegotiatedAccept {
        request: id(1, &req),
        bid: id(2, &bid),
    });
    a.post(1, &accept, now).unwrap();
    let withdraw = NegotiatedFact::Cancel(NegotiatedCancel::withdraw(id(1, &req), id(2, &bid)));
    let refused = b.post(2, &withdraw, now).unwrap();
    assert_eq!(b.round_trips() - after_first, 1, "a post is one round trip");
    assert_eq!(after_first - before, 1);
    match refused {
        NegotiatedSharedVerdict::Refused(refusal, _) => {
            assert_eq!(refusal.kind, NegotiatedErrorKind::BidAnswered);
            assert_eq!(refusal.winner, Some(NegotiatedSignedFact::new(1, accept)));
        }
        other => panic!("{other:?}"),
    }
    let log = b
        .read(NegotiatedLogPosition::START, 10, Duration::ZERO)
        .unwrap();
    assert_eq!(log.len(), 3, "the request, the bid and the accept");
}

/// Accepts and withdrawals of the same bids raced from two threads, each on its own
/// handle: exactly one of each pair is stored.
#[test]
fn racing_relays_never_both_win() {
    let Some(redis) = TestRedis::start("racing_relays_never_both_win") else {
        return;
    };
    let name = prefix("race");
    let limits = NegotiatedRelayLimits::default();
    let mut setup = redis.negotiated_store(&name, frames(), limits);
    let now = wall();
    let req = request(frames(), now, 1);
    setup.post(1, &req, now).unwrap();
    let r = id(1, &req);
    let bids: Vec<_> = (0..40u64)
        .map(|n| {
            let bid = NegotiatedFact::Bid(NegotiatedBid {
                request: r,
                created_us: n,
                deadline_us: u64::MAX,
            });
            setup.post(2, &bid, now).unwrap();
            id(2, &bid)
        })
        .collect();
    let race = |fact: fn(_, _) -> NegotiatedFact, author: u64| {
        let mut store = redis.negotiated_store(&name, frames(), limits);
        let bids = bids.clone();
        std::thread::spawn(move || {
            bids.iter()
                .map(|b| {
                    matches!(
                        store.post(author, &fact(r, *b), now).unwrap(),
                        NegotiatedSharedVerdict::Stored(_)
                    )
                })
                .collect::<Vec<bool>>()
        })
    };
    let accepts = race(
        |r, b| NegotiatedFact::Accept(NegotiatedAccept { request: r, bid: b }),
        1,
    );
    let withdrawals = race(
        |r, b| NegotiatedFact::Cancel(NegotiatedCancel::withdraw(r, b)),
        2,
    );
    let (accepts, withdrawals) = (accepts.join().unwrap(), withdrawals.join().unwrap());
    // the first accept closes the request: at most one accept in all
    assert!(accepts.iter().filter(|a| **a).count() <= 1);
    for (accepted, withdrawn) in accepts.iter().zip(&withdrawals) {
        assert!(
            !(accepted & withdrawn),
            "an accept and a withdrawal of one bid both stored"
        );
    }
}

/// Waits until `keys` holds, polling.
fn eventually(
    store: &mut NegotiatedRedisStore,
    within: Duration,
    what: &str,
    keys: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let now = store.keys().unwrap();
        if keys(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: keys left {now:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nothing_outlives_its_frames() {
    let Some(redis) = TestRedis::start("nothing_outlives_its_frames") else {
        return;
    };
    let frame = Duration::from_millis(200);
    let frames = NegotiatedFrames::new(frame);
    let name = prefix("ttl");
    let mut store = redis.negotiated_store(&name, frames, NegotiatedRelayLimits::default());
    let now = wall();
    let link = NegotiatedConnection {
        relay: "relay-a".into(),
        number: 1,
    };
    store.connect(2, &link, now).unwrap();
    let req = request(frames, now, 1);
    store.post(1, &req, now).unwrap();
    let bid = NegotiatedFact::Bid(NegotiatedBid {
        request: id(1, &req),
        created_us: 2,
        deadline_us: u64::MAX,
    });
    store.post(2, &bid, now).unwrap();
    store
        .post(
            1,
            &NegotiatedFact::Cancel(NegotiatedCancel::request(id(1, &req))),
            now,
        )
        .unwrap();
    store.disconnect(2, &link, now).unwrap();
    let all = store.keys().unwrap();
    assert!(all.len() >= 8, "{all:?}");
    assert!(
        all.iter().all(|k| k.starts_with(&format!("{{{name}}}:"))),
        "{all:?}"
    );
    // the frame is dropped when frame + 3 starts: at most three frames from now
    let longer = [":log", ":meta", ":conn:"];
    eventually(
        &mut store,
        frame * 3 + Duration::from_millis(400),
        "the frame's keys",
        |keys| keys.iter().all(|k| longer.iter().any(|l| k.contains(l))),
    );
    // the log and the connection records a few frames later
    let last = frame * NEGOTIATED_CONNECTION_KEPT_FRAMES + Duration::from_millis(400);
    eventually(&mut store, last, "every key", |keys| keys.is_empty());
    // a reader that was somewhere in the expired log is behind
    let old = NegotiatedLogPosition::new(1, 0);
    assert_eq!(
        store.read(old, 10, Duration::ZERO),
        Err(NegotiatedSharedStoreError::Behind(old))
    );
}

fn unavailable<T: std::fmt::Debug>(result: Result<T, NegotiatedSharedStoreError>) {
    assert!(
        matches!(result, Err(NegotiatedSharedStoreError::Unavailable(_))),
        "{result:?}"
    );
}

#[test]
fn a_redis_down_is_unavailable_then_answers_again() {
    let Some(mut redis) = TestRedis::start("a_redis_down_is_unavailable_then_answers_again") else {
        return;
    };
    let mut store =
        redis.negotiated_store(&prefix("down"), frames(), NegotiatedRelayLimits::default());
    store.set_timeout(Duration::from_millis(200));
    let now = wall();
    let req = request(frames(), now, 1);
    store.post(1, &req, now).unwrap();
    redis.kill();
    unavailable(store.post(1, &req, now));
    unavailable(store.read(NegotiatedLogPosition::START, 10, Duration::ZERO));
    let link = NegotiatedConnection {
        relay: "relay-a".into(),
        number: 1,
    };
    unavailable(store.connect(3, &link, now));
    // back without its data: the request is gone, as from a relay without a journal
    redis.restart();
    let bid = NegotiatedFact::Bid(NegotiatedBid {
        request: id(1, &req),
        created_us: 2,
        deadline_us: u64::MAX,
    });
    match store.post(2, &bid, now).unwrap() {
        NegotiatedSharedVerdict::Refused(refusal, _) => {
            assert_eq!(refusal.kind, NegotiatedErrorKind::UnknownRequest)
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.post(1, &req, now).unwrap(),
        NegotiatedSharedVerdict::Stored(_)
    ));
}

#[test]
fn a_persistent_redis_restarted_keeps_every_verdict() {
    let Some(mut redis) =
        TestRedis::start_persistent("a_persistent_redis_restarted_keeps_every_verdict")
    else {
        return;
    };
    let mut store =
        redis.negotiated_store(&prefix("aof"), frames(), NegotiatedRelayLimits::default());
    store.set_timeout(Duration::from_millis(200));
    let now = wall();
    let req = request(frames(), now, 1);
    store.post(1, &req, now).unwrap();
    let bid = NegotiatedFact::Bid(NegotiatedBid {
        request: id(1, &req),
        created_us: 2,
        deadline_us: u64::MAX,
    });
    store.post(2, &bid, now).unwrap();
    let accept = NegotiatedFact::Accept(NegotiatedAccept {
        request: id(1, &req),
        bid: id(2, &bid),
    });
    store.post(1, &accept, now).unwrap();
    let log = store
        .read(NegotiatedLogPosition::START, 10, Duration::ZERO)
        .unwrap();
    redis.kill();
    unavailable(store.post(1, &accept, now));
    redis.restart();
    // the first calls may find Redis still loading its file: unavailable, then answered
    let deadline = Instant::now() + Duration::from_secs(5);
    let again = loop {
        match store.post(1, &accept, now) {
            Err(NegotiatedSharedStoreError::Unavailable(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => break other.unwrap(),
        }
    };
    assert!(
        matches!(again, NegotiatedSharedVerdict::Duplicate(_)),
        "{again:?}"
    );
    let withdraw = NegotiatedFact::Cancel(NegotiatedCancel::withdraw(id(1, &req), id(2, &bid)));
    match store.post(2, &withdraw, now).unwrap() {
        NegotiatedSharedVerdict::Refused(refusal, _) => {
            assert_eq!(refusal.winner, Some(NegotiatedSignedFact::new(1, accept)))
        }
        other => panic!("{other:?}"),
    }
    let after = store.read(log[0].position, 10, Duration::ZERO).unwrap();
    assert_eq!(after, log[1..].to_vec(), "the log survived too");
}
