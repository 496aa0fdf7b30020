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
    let journal = config.relay.journal.as_ref().map_or(String::new(), |dir| {
        format!(", journal in {}", dir.display())
    });
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
    println!("relay: stopped");
    0
}

/// The periodic stats line.
fn print_stats(relay: &App) {
    let state = relay.world().resource::<NegotiatedRelayState>();
    let stats = state.stats();
    println!(
        "relay: {} clients, {} facts held, {} stored, {} sent, {} expired, {} refused",
        state.connected(),
        state.store().len(),
        stats.facts_stored,
        stats.facts_sent,
        stats.facts_expired,
        stats.facts_refused,
    );
}
