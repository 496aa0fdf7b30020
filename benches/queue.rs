//! `cargo bench --bench queue`: queue operations and per-frame costs of the pure core,
//! measured with criterion.
//!
//! Shows how queue operations scale as the queue grows (enqueue, remove and pop stay
//! O(log n); `requeue_front` returns the ticket's new position, which it counts, so it
//! grows with the number of tickets requeued ahead), that finding the categories ready to
//! form a match costs nothing for players merely waiting, and what advancing the commit
//! state machines of many matches in flight costs per frame.
//!
//! Each group runs its scenario at a small and a large size. The queue groups and the
//! matches in flight report a throughput in operations (criterion prints the time per
//! whole run and the operations per second); the state each run starts from is built
//! outside the measurement.
//!
//! ```text
//! cargo bench --bench queue                  # full measurement
//! cargo bench --bench queue -- --quick       # a quick look
//! cargo bench --bench queue -- pop_pairs     # one group
//! ```

use std::hint::black_box;
use std::time::Duration;

use bevy_atomic_matchmaking::atomic::core::commit::{AtomicCommitMachine, AtomicCommitTimings};
use bevy_atomic_matchmaking::atomic::core::queue::{AtomicQueue, AtomicQueueTicket};
use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};

/// The queue sizes of the queue operations.
const QUEUE_SIZES: [u64; 2] = [1_000, 100_000];
/// How many players wait (each alone in its own category) while ready categories are found.
const WAITING: [u64; 2] = [10, 100_000];
/// How many matches are in flight while their commit machines advance.
const IN_FLIGHT: [u64; 2] = [100, 10_000];
/// Frames (5 ms apart) the commit machines advance in one run.
const FRAMES: u64 = 200;

fn ticket(player: u64, category: String) -> AtomicQueueTicket<u64> {
    AtomicQueueTicket {
        player,
        category,
        enqueued_at: Duration::ZERO,
    }
}

fn queue() -> AtomicQueue<u64> {
    AtomicQueue::new(2, usize::MAX)
}

/// `size` players in one category.
fn full(size: u64) -> AtomicQueue<u64> {
    let mut q = queue();
    for p in 0..size {
        q.enqueue(ticket(p, "duel".into())).unwrap();
    }
    q
}

/// `size` players in one category, every other one removed.
fn halved(size: u64) -> AtomicQueue<u64> {
    let mut q = full(size);
    for p in (0..size).step_by(2) {
        q.remove(&p);
    }
    q
}

/// Whether a run at this size takes milliseconds or more.
fn large(size: u64) -> bool {
    size > 10_000
}

/// Large states are built once per measured run, small ones in batches.
fn batch(size: u64) -> BatchSize {
    if large(size) {
        BatchSize::PerIteration
    } else {
        BatchSize::LargeInput
    }
}

/// Sets the group up for its next benchmark, `ops` operations at size `size`: long runs
/// take criterion's fewest samples, of as many iterations each.
fn sized(g: &mut BenchmarkGroup<'_, WallTime>, size: u64, ops: u64) {
    g.throughput(Throughput::Elements(ops));
    if large(size) {
        g.sample_size(10).sampling_mode(SamplingMode::Flat);
    } else {
        g.sample_size(100).sampling_mode(SamplingMode::Auto);
    }
}

/// One category: enqueue `size` players, remove every other one, requeue those at the
/// front, pop it empty by pairs; each step timed from the state the steps before leave.
fn queue_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("enqueue_one_category");
    for size in QUEUE_SIZES {
        sized(&mut g, size, size);
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            let enqueue = |mut q: AtomicQueue<u64>| {
                for p in 0..size {
                    q.enqueue(ticket(p, "duel".into())).unwrap();
                }
                q
            };
            b.iter_batched(queue, enqueue, batch(size));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("remove_from_middle");
    for size in QUEUE_SIZES {
        sized(&mut g, size, size / 2);
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            let remove = |mut q: AtomicQueue<u64>| {
                for p in (0..size).step_by(2) {
                    black_box(q.remove(&p));
                }
                q
            };
            b.iter_batched(|| full(size), remove, batch(size));
        });
    }
    g.finish();

    // named by the queue's length: size / 2 players, and as many come back to its front
    let mut g = c.benchmark_group("requeue_front");
    for size in QUEUE_SIZES {
        sized(&mut g, size, size / 2);
        g.bench_function(BenchmarkId::from_parameter(size / 2), |b| {
            let requeue = |mut q: AtomicQueue<u64>| {
                for p in (0..size).step_by(2) {
                    q.requeue_front(ticket(p, "duel".into())).unwrap();
                }
                q
            };
            b.iter_batched(|| halved(size), requeue, batch(size));
        });
    }
    g.finish();

    // `size` players, popped by pairs (that half of them were requeued before, as in the
    // sequence above, makes no difference to popping, and rebuilding that state for
    // every run of 100 000 would cost seconds)
    let mut g = c.benchmark_group("pop_pairs");
    for size in QUEUE_SIZES {
        sized(&mut g, size, size / 2);
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            let pop = |mut q: AtomicQueue<u64>| {
                while let Some(pair) = q.pop_group("duel") {
                    black_box(pair);
                }
                q
            };
            b.iter_batched(|| full(size), pop, batch(size));
        });
    }
    g.finish();
}

/// Finding the categories ready to form a match, with players waiting each alone in its
/// own category (nothing can form).
fn ready_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("first_ready");
    for waiting in WAITING {
        let mut q = queue();
        for p in 0..waiting {
            q.enqueue(ticket(p, format!("c{p}"))).unwrap();
        }
        g.bench_function(BenchmarkId::from_parameter(waiting), |b| {
            b.iter(|| black_box(black_box(&q).first_ready().is_some()));
        });
    }
    g.finish();
}

/// `n` matches whose commit machines have made their first move.
fn machines(n: u64) -> Vec<AtomicCommitMachine<u64>> {
    let timings = AtomicCommitTimings::default();
    let mut machines: Vec<AtomicCommitMachine<u64>> = (0..n)
        .map(|i| AtomicCommitMachine::new(&[2 * i, 2 * i + 1], &[1, 2], timings))
        .collect();
    for m in &mut machines {
        m.poll(Duration::ZERO);
    }
    machines
}

/// Advancing the commit machines of `n` matches in flight for [`FRAMES`] frames; one
/// operation is one match advanced by one frame.
fn matches_in_flight(c: &mut Criterion) {
    let mut g = c.benchmark_group("advance_matches_in_flight");
    for n in IN_FLIGHT {
        sized(&mut g, n, n * FRAMES);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let advance = |mut machines: Vec<AtomicCommitMachine<u64>>| {
                for f in 0..FRAMES {
                    let now = Duration::from_millis(f * 5);
                    for m in &mut machines {
                        black_box(m.poll(now));
                    }
                }
                machines
            };
            b.iter_batched(|| machines(n), advance, batch(n));
        });
    }
    g.finish();
}

criterion_group!(benches, queue_ops, ready_scan, matches_in_flight);
criterion_main!(benches);
