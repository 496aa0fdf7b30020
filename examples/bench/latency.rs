//! `latency`: time to commit at a 50 ms round trip, in process, through the crate's
//! fault-injecting links (`AtomicTestHarness::set_faults`: 25 ms each way), on manual
//! time at `1 / --server-hz` per update, next to the protocol's floor.
//!
//! Pairs of clients (the real client plugin, which answers pings and acknowledges
//! proposals) join one queue two per update. For each player: from the update its match
//! formed on the server to the update its client reports the match found (client state
//! `Matched`): health ping, pong, proposal, acknowledgement, confirmation, five one-way
//! trips = 2.5 round trips. The same run without delay measures what the updates alone
//! cost; the floor with ticks adds to it the five one-way trips, each rounded up to whole
//! updates (a packet due between two updates arrives at the later one). Everything runs
//! twice: at `1 / --server-hz` updates and at 1 ms updates.

use std::time::Duration;

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::{AtomicHarnessMode, AtomicTestHarness};
use bevy_atomic_matchmaking::testing::harness::server_app;
use bevy_atomic_matchmaking::testing::local_link::{DirectionFaults, LinkFaults};
use serde_json::{Value, json};

use crate::Args;
use crate::measure::{ms, percentiles_ms, round3};

/// The round trip of the measured run.
const RTT: Duration = Duration::from_millis(50);

/// What one run saw.
struct Run {
    /// Per player: formed on the server to found on the client.
    times: Vec<Duration>,
    server_commit: Value,
    rolled_back: u64,
    unmatched: usize,
}

/// A harness whose server steps `step` per update, with `n` welcomed clients whose links
/// delay every packet by `one_way`.
fn harness(step: Duration, n: usize, one_way: Duration) -> (AtomicTestHarness, Vec<PlayerId>) {
    let channel = AtomicChannel::default();
    let mut server = server_app(step, channel.dedicated_connection_config());
    server.add_plugins(AtomicServerPlugin {
        channel,
        ..default()
    });
    let mut h =
        AtomicTestHarness::from_server(AtomicHarnessMode { channel }, server, channel.id, step);
    h.server.update();
    let ids: Vec<PlayerId> = (0..n).map(|_| h.add_client()).collect();
    let faults = LinkFaults::both(DirectionFaults {
        delay: one_way,
        ..default()
    });
    for id in &ids {
        h.set_faults(*id, faults);
    }
    h.run_until(1_000, |h| {
        ids.iter()
            .all(|p| h.client_state(*p) != AtomicClientState::Disconnected)
    });
    (h, ids)
}

/// Runs `pairs` pairs joining two per update; returns what it saw.
fn run(step: Duration, pairs: usize, one_way: Duration) -> Run {
    let n = 2 * pairs;
    let (mut h, ids) = harness(step, n, one_way);
    let mut formed: Vec<Option<Duration>> = vec![None; n];
    let mut found: Vec<Option<Duration>> = vec![None; n];
    let mut joined = 0;
    let max_updates = pairs + (Duration::from_secs(30).as_nanos() / step.as_nanos()) as usize;
    for _ in 0..max_updates {
        for id in ids.iter().skip(joined).take(2) {
            h.join(*id, "duel");
        }
        joined = (joined + 2).min(n);
        h.update();
        let now = h.now();
        for (i, id) in ids.iter().enumerate() {
            if formed[i].is_none()
                && matches!(
                    h.server_state().location(*id),
                    Some(AtomicPlayerLocation::Matching(_) | AtomicPlayerLocation::InLobby(_))
                )
            {
                formed[i] = Some(now);
            }
            if found[i].is_none() && h.client_state(*id) == AtomicClientState::Matched {
                found[i] = Some(now);
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    let times = formed
        .iter()
        .zip(&found)
        .filter_map(|(f, m)| Some(m.as_ref()?.saturating_sub(*f.as_ref()?)))
        .collect();
    let commit = h.stats().time_to_commit.percentiles();
    Run {
        times,
        server_commit: json!({"p50": ms(commit.p50), "p99": ms(commit.p99), "max": ms(commit.max)}),
        rolled_back: h.stats().matches_rolled_back,
        unmatched: found.iter().filter(|f| f.is_none()).count(),
    }
}

/// Both runs (no delay, then 50 ms round trips) at updates of `step`, and the floors.
fn measure(step: Duration, pairs: usize) -> Value {
    eprintln!("bench: latency: {pairs} pairs at {step:?} updates, without delay");
    let mut instant = run(step, pairs, Duration::ZERO);
    eprintln!(
        "bench: latency: {pairs} pairs at {step:?} updates, {} ms round trip",
        RTT.as_millis()
    );
    let mut delayed = run(step, pairs, RTT / 2);
    let p50 = |times: &mut Vec<Duration>| {
        times.sort_unstable();
        bevy_atomic_matchmaking::atomic::core::stats::nearest_rank(times, 0.5)
    };
    let frames = p50(&mut instant.times);
    let floor = RTT * 5 / 2;
    let p50_delayed = p50(&mut delayed.times);
    // each one-way trip waits for whole updates: a packet due between two updates is
    // delivered at the later one
    let updates_per_trip = (RTT / 2).as_nanos().div_ceil(step.as_nanos()) as u32;
    let floor_with_ticks = frames + step * updates_per_trip * 5;
    let ratio = |floor: Duration| round3(p50_delayed.as_secs_f64() / floor.as_secs_f64());
    json!({
        "update_step_ms": ms(step),
        "formed_to_found_ms": percentiles_ms(&mut delayed.times),
        "server_time_to_commit_ms": delayed.server_commit,
        "rollbacks": delayed.rolled_back,
        "players_unmatched": delayed.unmatched,
        "without_delay_formed_to_found_ms": percentiles_ms(&mut instant.times),
        "without_delay_rollbacks": instant.rolled_back,
        "floor_with_ticks_ms": ms(floor_with_ticks),
        "p50_over_floor_with_ticks": ratio(floor_with_ticks),
        "p50_over_floor_plus_time_without_delay": ratio(floor + frames),
        "p50_over_protocol_floor": ratio(floor),
    })
}

pub fn latency(args: &Args) -> Value {
    let players = args.players_or(400).max(2);
    let pairs = players / 2;
    let step = Duration::from_secs_f64(1.0 / args.server_hz);
    json!({
        "what": "pairs of client-plugin clients join one queue two per update through AtomicTestHarness links that delay every packet 25 ms each way (50 ms round trip), on manual time; per player, from the update its match formed on the server to the update its client reports it found (health ping + pong, proposal + ack, confirmation: 2.5 round trips). The same run without delay gives what the updates alone cost. floor_with_ticks = the time without delay + five one-way trips, each rounded up to whole updates (a packet due between two updates arrives at the later one). The harness is deterministic: every pair of a run takes the same time. Run at 1/server_hz updates, and at 1 ms updates to show the protocol without the frame quantisation",
        "settings": args.settings(2 * pairs),
        "round_trip_ms": ms(RTT),
        "protocol_floor_ms": ms(RTT * 5 / 2),
        "at_server_hz": measure(step, pairs),
        "at_1ms_updates": measure(Duration::from_millis(1), pairs),
    })
}
