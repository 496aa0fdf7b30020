//! `--relay-only`: just the relay, until SIGTERM, Ctrl-C or `--run-for`, then a drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;

use crate::config::Args;
use crate::{EXIT_SECOND_SIGNAL, TICK, refuse, relay_app};

/// Just the relay, until a signal or `--run-for`; returns the exit code.
pub fn relay_only(args: &Args) -> i32 {
    let config = &args.config;
    let settings = config.relay.settings().unwrap_or_else(|e| refuse(&[e]));
    let identity_args = args.relay_identity();
    let identity = match identity_args.load("negotiated") {
        Ok(identity) => identity,
        Err(e) => {
            eprintln!("negotiated: {e}");
            return 1;
        }
    };
    let (mut relay, addr) = match relay_app(config.addr, settings, &identity) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("negotiated: cannot bind {}: {e}", config.addr);
            return 1;
        }
    };
    let signals = Arc::new(AtomicUsize::new(0));
    {
        let signals = signals.clone();
        if let Err(e) = ctrlc::set_handler(move || {
            signals.fetch_add(1, Ordering::SeqCst);
        }) {
            eprintln!("negotiated: no Ctrl-C handler ({e}); stop with --run-for");
        }
    }
    let journal = match (&config.relay.redis, &config.relay.journal) {
        (Some(url), _) => format!(
            ", facts shared on {url} (prefix {}) as {}",
            config.relay.redis_prefix, config.relay.relay_name
        ),
        (None, Some(dir)) => format!(", journal in {}", dir.display()),
        (None, None) => String::new(),
    };
    println!(
        "relay on {addr} ({}), frames of {:?}{journal}; Ctrl-C to stop",
        identity.describe(Some(&identity_args.key_file)),
        config.relay.frame_duration.0
    );
    let run_for = config.run_for.map(|s| s.0);
    let drain_timeout = config.drain_timeout.0;
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut draining = false;
    loop {
        let signalled = signals.load(Ordering::SeqCst);
        if signalled >= 2 {
            println!("relay: second signal: exiting at once");
            return EXIT_SECOND_SIGNAL;
        }
        let ended = run_for.is_some_and(|d| started.elapsed() >= d);
        if !draining && (signalled == 1 || ended) {
            draining = true;
            println!("relay: draining: telling clients the relay is closing ({drain_timeout:?})");
            relay.world_mut().write_message(NegotiatedRelayDrain {
                timeout: drain_timeout,
            });
        }
        relay.update();
        let finished = relay
            .world_mut()
            .resource_mut::<Messages<NegotiatedRelayDrainFinished>>()
            .drain()
            .next();
        if let Some(finished) = finished {
            println!(
                "relay: drained: {} clients told, {} posts refused",
                finished.clients_told, finished.posts_refused
            );
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            print_stats(&relay);
        }
        std::thread::sleep(TICK);
    }
    println!("relay: final {}", final_stats(&relay, started.elapsed()));
    println!("relay: stopped");
    0
}

/// CPU time the whole relay process has used (every thread), as `top` counts it.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer it is given
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The relay's counters as one JSON object (the relay cluster test reads it).
fn final_stats(relay: &App, ran: Duration) -> String {
    let state = relay.world().resource::<NegotiatedRelayState>();
    let stats = state.stats();
    let shared = state.shared();
    serde_json::json!({
        "ran_s": ran.as_secs_f64(),
        "facts_stored": stats.facts_stored,
        "facts_duplicate": stats.facts_duplicate,
        "facts_refused": stats.facts_refused,
        "facts_sent": stats.facts_sent,
        "facts_replicated": stats.facts_replicated,
        "facts_unplaced": stats.facts_unplaced,
        "store_round_trips": shared.map_or(0, |s| s.round_trips),
        "log_resets": shared.map_or(0, |s| s.resets),
        "cpu_s": process_cpu().as_secs_f64(),
        "replication_lag_ms_p50": shared.and_then(|s| s.replication_lag.quantile_ms(0.5)),
        "replication_lag_ms_p99": shared.and_then(|s| s.replication_lag.quantile_ms(0.99)),
        "verdict_lag_ms_p50": shared.and_then(|s| s.verdict_lag.quantile_ms(0.5)),
        "verdict_lag_ms_p99": shared.and_then(|s| s.verdict_lag.quantile_ms(0.99)),
    })
    .to_string()
}

/// The periodic stats line.
fn print_stats(relay: &App) {
    let state = relay.world().resource::<NegotiatedRelayState>();
    let stats = state.stats();
    let shared = state.shared().map_or(String::new(), |s| {
        let down = s
            .unavailable
            .as_deref()
            .map_or(String::new(), |why| format!(", UNAVAILABLE: {why}"));
        format!(
            "; shared store: {} replicated, {} calls in flight, {} round trips{down}",
            stats.facts_replicated, s.in_flight, s.round_trips
        )
    });
    println!(
        "relay: {} clients, {} facts held, {} stored, {} sent, {} expired, {} refused{shared}",
        state.connected(),
        state.store().len(),
        stats.facts_stored,
        stats.facts_sent,
        stats.facts_expired,
        stats.facts_refused,
    );
}
