//! `cargo bench`: queue operations and per-frame costs of the pure core.
//!
//! Shows that queue operations stay O(log n) as the queue grows, that finding the
//! categories ready to form a match costs nothing for players merely waiting, and what
//! advancing the commit state machines of many matches in flight costs per frame.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bevy_atomic_matchmaking::atomic::core::commit::{AtomicCommitMachine, AtomicCommitTimings};
use bevy_atomic_matchmaking::atomic::core::queue::{AtomicQueue, AtomicQueueTicket};

fn ticket(player: u64, category: String) -> AtomicQueueTicket<u64> {
    AtomicQueueTicket {
        player,
        category,
        enqueued_at: Duration::ZERO,
    }
}

fn per_op(label: &str, ops: u64, f: impl FnOnce()) {
    let start = Instant::now();
    f();
    let elapsed = start.elapsed();
    println!(
        "{label:<58} {:>9.1} ns/op ({ops} ops in {:.1} ms)",
        elapsed.as_nanos() as f64 / ops as f64,
        elapsed.as_secs_f64() * 1000.0
    );
}

fn queue_ops(size: u64) {
    let mut q = AtomicQueue::new(2, usize::MAX);
    per_op(
        &format!("enqueue into one category up to {size}"),
        size,
        || {
            for p in 0..size {
                q.enqueue(ticket(p, "duel".into())).unwrap();
            }
        },
    );
    per_op(
        &format!("remove from the middle of {size}"),
        size / 2,
        || {
            for p in (0..size).step_by(2) {
                black_box(q.remove(&p));
            }
        },
    );
    per_op(
        &format!("requeue at the front of {}", size / 2),
        size / 2,
        || {
            for p in (0..size).step_by(2) {
                q.requeue_front(ticket(p, "duel".into())).unwrap();
            }
        },
    );
    per_op(&format!("pop pairs from {size}"), size / 2, || {
        while let Some(g) = q.pop_group("duel") {
            black_box(g);
        }
    });
}

fn ready_scan(waiting: u64) {
    // every waiting player alone in its own category: nothing can form
    let mut q = AtomicQueue::new(2, usize::MAX);
    for p in 0..waiting {
        q.enqueue(ticket(p, format!("c{p}"))).unwrap();
    }
    let frames = 100_000;
    per_op(
        &format!("find ready categories with {waiting} players waiting"),
        frames,
        || {
            for _ in 0..frames {
                black_box(q.first_ready());
            }
        },
    );
}

fn matches_in_flight(n: u64) {
    let timings = AtomicCommitTimings::default();
    let mut machines: Vec<AtomicCommitMachine<u64>> = (0..n)
        .map(|i| AtomicCommitMachine::new(&[2 * i, 2 * i + 1], &[1, 2], timings))
        .collect();
    for m in &mut machines {
        m.poll(Duration::ZERO);
    }
    let frames = 200;
    per_op(
        &format!("advance {n} matches in flight, per match per frame"),
        n * frames,
        || {
            for f in 0..frames {
                let now = Duration::from_millis(f * 5);
                for m in &mut machines {
                    black_box(m.poll(now));
                }
            }
        },
    );
}

fn main() {
    for size in [1_000, 100_000] {
        queue_ops(size);
    }
    for waiting in [10, 100_000] {
        ready_scan(waiting);
    }
    for n in [100, 10_000] {
        matches_in_flight(n);
    }
}
