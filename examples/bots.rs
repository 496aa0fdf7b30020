//! Load-generating bots: N headless clients in one process, each with its own UDP
//! connection to a matchmaking server.
//!
//! ```text
//! cargo run --release --example bots -- --server 127.0.0.1:5000[,ADDR...] --count 200 \
//!     [--category duel] [--duration 30] [--flaky 0.2] [--seed N] [--no-rematch] \
//!     [--key-file PATH] [--insecure]
//! ```
//! Each bot connects with a connect token it mints from the key in `--key-file` (default
//! `target/matchmaking-dev.key` of this crate, the `server`'s default too): a development
//! stand-in for a game's backend. `--insecure` connects in netcode's unsecure mode instead.
//! The player ids come from `--seed`, random per process unless given (printed in the first
//! line, `start`, to replay a run), so several processes can share a server.
//! Prints one JSON object per line (`match_found`, `match_cancelled`, `error`,
//! `disconnect`, and `leave`: with `--no-rematch` a bot closes its connection as soon as its
//! first match is found) and a final `summary`; a bot whose connection never opens (wrong
//! key, no server) prints an `error` saying so. On the server's closing notice (a
//! `server_closing` line) or a lost connection, a bot reconnects with backoff to the next
//! address of `--server` (a `reconnect` line once it is back) and queues again, until
//! `--duration` ends. A bot's lines are stamped with the Unix time in milliseconds (`at_ms`).
//! Exits non-zero if two bots disagree about who was in a match, or if
//! no bot could connect.

#[path = "common/bot.rs"]
mod bot;
#[path = "common/identity.rs"]
mod identity;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bevy::app::App;
use bot::{
    Bot, Flaw, bot_app_to, drained, percentile_ms, reconnect_if_due, report_never_connected,
};
use clap::Parser;
use identity::{Identity, IdentityArgs};
use serde_json::json;

/// N headless bots in one process, each with its own UDP connection to a matchmaking
/// server, printing one JSON object per line.
#[derive(Parser)]
#[command(name = "bots", args_override_self = true)]
struct Args {
    /// The matchmaking servers' UDP addresses, comma-separated: each token lists them all,
    /// and a bot reconnects to the next one when its server closes or is lost
    #[arg(
        long,
        value_name = "ADDR[,ADDR...]",
        default_value = "127.0.0.1:5000",
        value_delimiter = ','
    )]
    server: Vec<SocketAddr>,
    /// How many bots to run
    #[arg(long, value_name = "N", default_value_t = 10)]
    count: usize,
    /// The queue category every bot joins
    #[arg(long, value_name = "NAME", default_value = "duel")]
    category: String,
    /// How long the bots queue and play, in seconds (then they drain and disconnect)
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    duration: Duration,
    /// The probability (0..=1) that a bot turns flaky at a random point in the first half of the run
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, value_parser = fraction)]
    flaky: f64,
    /// The seed of the bots' ids, flaws and timings [default: random, printed in the first line]
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Close each bot's connection as soon as its first match is found, instead of queueing again
    #[arg(long = "no-rematch", action = clap::ArgAction::SetFalse)]
    rematch: bool,
    #[command(flatten)]
    identity: IdentityArgs,
}

fn seconds(v: &str) -> Result<Duration, String> {
    let secs = v.parse::<f64>().map_err(|e| e.to_string())?;
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn fraction(v: &str) -> Result<f64, String> {
    let f = v.parse::<f64>().map_err(|e| e.to_string())?;
    if !(0.0..=1.0).contains(&f) {
        return Err("must be between 0 and 1".into());
    }
    Ok(f)
}

fn main() {
    let args = Args::parse();
    let identity = args.identity.load("bots").unwrap_or_else(|e| {
        eprintln!("bots: {e}");
        std::process::exit(1);
    });
    if args.server.len() > 32 {
        eprintln!(
            "bots: --server lists {} addresses, at most 32",
            args.server.len()
        );
        std::process::exit(2);
    }
    let seed = args.seed.unwrap_or_else(random_seed);
    eprintln!("bots: seed {seed} (replay with --seed {seed})");
    println!(
        "{}",
        json!({"event": "start", "bots": args.count, "seed": seed, "servers": args.server})
    );
    let mut apps = spawn_bots(&args, seed, &identity);
    let started = Instant::now();
    run_frames(&mut apps, started + args.duration, |_| false);
    // drain like real players: stop queueing and keep listening until every match the
    // bots are in has committed or rolled back (at most ~8.3 s), so each bot reports
    // every match it was committed into
    for app in &mut apps {
        app.world_mut().resource_mut::<Bot>().stopping = true;
    }
    let drain_until = Instant::now() + Duration::from_secs(12);
    run_frames(&mut apps, drain_until, |apps| apps.iter().all(drained));
    let undrained = apps.iter().filter(|a| !drained(a)).count();
    if undrained > 0 {
        eprintln!("bots: {undrained} bots still had a match in flight after 12 s");
    }
    report_never_connected(&mut apps);
    for app in &mut apps {
        for line in app.world_mut().resource_mut::<Bot>().lines.drain(..) {
            println!("{line}");
        }
    }
    disconnect_in_batches(&mut apps);
    let inconsistent = print_summary(&args, seed, &apps);
    if inconsistent > 0 {
        eprintln!("bots: {inconsistent} matches were reported with different players");
        std::process::exit(1);
    }
    if !apps.is_empty()
        && apps
            .iter()
            .all(|a| !a.world().resource::<Bot>().connected_once)
    {
        eprintln!(
            "bots: no bot could connect to {}; is the server running there, with the same key file?",
            servers(&args)
        );
        std::process::exit(1);
    }
}

/// A seed of its own for each process: the time and the process id, mixed.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos() as u64);
    let mixed = nanos ^ u64::from(std::process::id()).rotate_left(32);
    // a seed small enough to type back in
    fastrand::Rng::with_seed(mixed).u64(1..1 << 53)
}

/// The `--server` addresses as the user wrote them.
fn servers(args: &Args) -> String {
    let addrs: Vec<String> = args.server.iter().map(|a| a.to_string()).collect();
    addrs.join(",")
}

/// One app per bot, each with its own UDP connection; flaws drawn from the seed.
fn spawn_bots(args: &Args, seed: u64, identity: &Identity) -> Vec<App> {
    let mut rng = fastrand::Rng::with_seed(seed);
    // distinct id ranges per run so several bot processes can share a server
    let base = rng.u64(1..1 << 40) << 12;
    let mut apps = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let flaw = (rng.f64() < args.flaky).then(|| {
            let at = args.duration.mul_f64(rng.f64() * 0.5);
            (Flaw::random(&mut rng), at)
        });
        let mut bot = Bot::new(
            i,
            base + i as u64,
            args.category.clone(),
            flaw,
            args.rematch,
            rng.u64(..),
        );
        bot.reconnect = true;
        match bot_app_to(&args.server, bot, identity) {
            Ok(app) => apps.push(app),
            Err(e) => {
                eprintln!("bots: bot {i} cannot connect: {e}");
                std::process::exit(1);
            }
        }
    }
    apps
}

/// Updates every bot at 60 Hz and prints their lines, until `until` or until `done`.
fn run_frames(apps: &mut [App], until: Instant, done: impl Fn(&[App]) -> bool) {
    let frame = Duration::from_secs_f64(1.0 / 60.0);
    while Instant::now() < until && !done(apps) {
        let tick = Instant::now();
        for app in apps.iter_mut() {
            app.update();
            reconnect_if_due(app);
            for line in app.world_mut().resource_mut::<Bot>().lines.drain(..) {
                println!("{line}");
            }
        }
        if let Some(rest) = frame.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// netcode sends a single disconnect packet per client: disconnect in small batches so
/// the server's socket buffer does not drop them (a lost one costs a 15 s timeout).
fn disconnect_in_batches(apps: &mut [App]) {
    for batch in apps.chunks_mut(20) {
        for app in batch {
            if !app.world().resource::<Bot>().connected_once {
                continue; // refused: nobody to say goodbye to
            }
            identity::close_client(app.world_mut());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Prints the summary line; returns how many matches were reported inconsistently.
fn print_summary(args: &Args, seed: u64, apps: &[App]) -> usize {
    let mut waits = Vec::new();
    let (mut matched, mut cancelled, mut errors, mut bots_matched) = (0, 0, 0, 0);
    let (mut never_connected, mut closing, mut bots_told, mut reconnects) = (0, 0, 0, 0);
    let mut seen: BTreeMap<(u64, &str), Vec<Vec<u64>>> = BTreeMap::new();
    for app in apps {
        let bot = app.world().resource::<Bot>();
        matched += bot.matched;
        cancelled += bot.cancelled;
        errors += bot.errors;
        bots_matched += usize::from(bot.matched > 0);
        never_connected += usize::from(!bot.connected_once);
        closing += bot.server_closing;
        bots_told += usize::from(bot.server_closing > 0);
        reconnects += bot.reconnects;
        waits.extend(bot.waits.iter().copied());
        for (m, lobby, players) in &bot.matches {
            seen.entry((*m, lobby)).or_default().push(players.clone());
        }
    }
    // every bot of a match must report the same players, and each listed player that is
    // one of ours must have reported that match
    let ours: std::collections::HashSet<u64> = apps
        .iter()
        .map(|a| a.world().resource::<Bot>().player)
        .collect();
    let inconsistent = seen
        .values()
        .filter(|reports| {
            let first = &reports[0];
            let ours_in = first.iter().filter(|p| ours.contains(p)).count();
            reports.iter().any(|r| r != first) || ours_in != reports.len()
        })
        .count();
    println!(
        "{}",
        json!({
            "event": "summary", "bots": args.count, "matched": matched, "bots_matched": bots_matched,
            "matches": seen.len(), "cancelled": cancelled, "errors": errors,
            "never_connected": never_connected, "server_closing": closing,
            "bots_told_closing": bots_told, "reconnects": reconnects, "seed": seed,
            "wait_ms_p50": percentile_ms(&mut waits, 0.5), "wait_ms_p99": percentile_ms(&mut waits, 0.99),
            "inconsistent_matches": inconsistent,
        })
    );
    inconsistent
}
