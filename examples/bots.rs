//! Load-generating bots: N headless clients in one process, each its own Bevy app with
//! its own UDP connection to a matchmaking server.
//!
//! ```text
//! cargo run --release --example bots -- --server 127.0.0.1:5000[,ADDR...] --count 200 \
//!     [--category duel] [--duration 30] [--flaky 0.2] [--seed N] [--no-rematch] \
//!     [--threads N] [--rate 60] [--idle-update-ms 100] [--key-file PATH] [--insecure]
//! ```
//! Each bot connects with a connect token it mints from the key in `--key-file` (default
//! `target/matchmaking-dev.key` of this crate, the `server`'s default too): a development
//! stand-in for a game's backend. `--insecure` connects in netcode's unsecure mode instead.
//! The player ids come from `--seed`, random per process unless given (printed in the first
//! line, `start`, to replay a run), so several processes can share a server.
//!
//! `--threads` threads (default: the machine's cores, at most one per bot) each build and
//! drive their share of the bots, in rounds at `--rate` a second: a round checks every bot
//! of the thread once and updates its app only if it has something to do (a datagram
//! waiting, a timer of its own due, a follow-up of an update that did something) or was
//! not updated for `--idle-update-ms`. The `start` line comes once every app is built, just
//! before the first round.
//!
//! Prints one JSON object per line (`match_found`, `match_cancelled`, `error`,
//! `disconnect`, and `leave`: with `--no-rematch` a bot closes its connection as soon as its
//! first match is found, and the run ends as soon as every bot left or gave up) and a final
//! `summary`; a bot whose connection never opens (wrong key, no server) prints an `error`
//! saying so. On the server's closing notice (a `server_closing` line) or a lost
//! connection, a bot reconnects with backoff to the next address of `--server` (a
//! `reconnect` line once it is back) and queues again, until `--duration` ends. Bot i
//! starts on address i mod N, so bots spread across the nodes of a cluster. A bot's
//! lines are stamped with the Unix time in milliseconds (`at_ms`). A `match_cancelled`
//! line says whether the bot's own process kept up (`kept_up`: no gap over 250 ms between
//! two of its checks in the 3 s before): if not, the server saw the bots' lag, not its own.
//! Exits 1 if two bots disagree about who was in a match, or if no bot could connect; exits
//! 3 (after the summary) if the slowest thread reached less than 90 % of `--rate`: then the
//! figures measure the bots, not the server.

#[path = "common/bot.rs"]
mod bot;
#[path = "common/identity.rs"]
mod identity;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bevy::app::App;
use bevy::prelude::State;
use bevy_atomic_matchmaking::prelude::AtomicClientState;
use bot::{Bot, Flaw, bot_app_to, percentile_ms, tick};
use clap::Parser;
use identity::{Identity, IdentityArgs};
use serde_json::json;

/// A thread that reaches less than this share of `--rate` makes the run fail (exit 3).
const KEPT_UP_SHARE: f64 = 0.9;
/// The exit code of a run whose bots could not keep `--rate`.
const EXIT_SLOW: i32 = 3;
/// How long the bots drain at most after `--duration` (a match in flight ends in ~8.3 s).
const DRAIN_LIMIT: Duration = Duration::from_secs(12);

/// N headless bots in one process, each with its own UDP connection to a matchmaking
/// server, printing one JSON object per line.
#[derive(Parser)]
#[command(name = "bots", args_override_self = true)]
struct Args {
    /// The matchmaking servers' UDP addresses, comma-separated: bot i starts on address
    /// i mod N (bots spread across the nodes of a cluster), its token lists them all, and
    /// it reconnects to the next one when its server closes or is lost
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
    /// Threads that build and update the bots, each its own share [default: the machine's cores, at most one per bot]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Rounds a second each thread aims for (a round checks each of its bots once)
    #[arg(long, value_name = "HZ", default_value_t = 60.0, value_parser = rate)]
    rate: f64,
    /// A bot with nothing to do is updated at least this often, in ms (0: every round)
    #[arg(long = "idle-update-ms", value_name = "MS", default_value_t = 100)]
    idle_update_ms: u64,
    #[command(flatten)]
    identity: IdentityArgs,
}

fn seconds(v: &str) -> Result<Duration, String> {
    let secs = v.parse::<f64>().map_err(|e| e.to_string())?;
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn rate(v: &str) -> Result<f64, String> {
    let hz = v.parse::<f64>().map_err(|e| e.to_string())?;
    if !(hz.is_finite() && hz > 0.0) {
        return Err("must be a positive number".into());
    }
    Ok(hz)
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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args
        .threads
        .map_or(cores, |n| n as usize)
        .clamp(1, args.count.max(1));
    let run = Arc::new(Run {
        servers: args.server.clone(),
        identity,
        duration: args.duration,
        rate: args.rate,
        every: Duration::from_millis(args.idle_update_ms),
        rematch: args.rematch,
        count: args.count,
        threads,
        gone: AtomicUsize::new(0),
        built: Barrier::new(threads + 1),
        go: Barrier::new(threads + 1),
    });
    let handles: Vec<_> = shares(plan_bots(&args, seed), threads)
        .into_iter()
        .enumerate()
        .map(|(i, bots)| {
            let run = Arc::clone(&run);
            std::thread::Builder::new()
                .name(format!("bots-{i}"))
                .spawn(move || run_share(i, bots, &run))
                .expect("a thread for the bots")
        })
        .collect();
    run.built.wait();
    println!(
        "{}",
        json!({"event": "start", "bots": args.count, "seed": seed, "servers": args.server})
    );
    run.go.wait();
    let shares: Vec<Share> = handles
        .into_iter()
        .map(|h| h.join().expect("a bots thread panicked"))
        .collect();
    finish(&args, seed, shares);
}

/// The summary and the verdict, once every thread handed its bots back.
fn finish(args: &Args, seed: u64, shares: Vec<Share>) {
    let undrained: usize = shares.iter().map(|s| s.undrained).sum();
    if undrained > 0 {
        eprintln!(
            "bots: {undrained} bots still had a match in flight after {} s",
            DRAIN_LIMIT.as_secs()
        );
    }
    let pace = Reached::of(&shares, args.rate);
    let mut bots: Vec<Bot> = shares.into_iter().flat_map(|s| s.bots).collect();
    bots.sort_by_key(|b| b.index);
    let inconsistent = print_summary(args, seed, &bots, &pace);
    let slow = pace.reached < KEPT_UP_SHARE * args.rate;
    if slow {
        eprintln!(
            "bots: ERROR: reached only {:.1} rounds/s of the {} asked; the figures measure the \
             bots, not the server (fewer bots, more --threads, or a lower --rate)",
            pace.reached, args.rate
        );
    }
    if inconsistent > 0 {
        eprintln!("bots: {inconsistent} matches were reported with different players");
        std::process::exit(1);
    }
    if !bots.is_empty() && bots.iter().all(|b| !b.connected_once) {
        eprintln!(
            "bots: no bot could connect to {}; is the server running there, with the same key file?",
            servers(args)
        );
        std::process::exit(1);
    }
    if slow {
        std::process::exit(EXIT_SLOW);
    }
}

/// What every thread shares: the run's settings, how many bots are gone, and the two
/// moments the threads wait for each other (every app built; go).
struct Run {
    servers: Vec<SocketAddr>,
    identity: Identity,
    duration: Duration,
    rate: f64,
    /// `--idle-update-ms`.
    every: Duration,
    rematch: bool,
    count: usize,
    threads: usize,
    /// Bots that left after their match or gave up, over every thread.
    gone: AtomicUsize,
    built: Barrier,
    go: Barrier,
}

impl Run {
    /// Whether the run is over before `--duration`: with `--no-rematch`, once every bot
    /// left or gave up.
    fn all_gone(&self) -> bool {
        !self.rematch && self.gone.load(Ordering::Relaxed) >= self.count
    }
}

/// What a thread hands back: its bots, and how well it kept its rounds before the drain.
struct Share {
    bots: Vec<Bot>,
    /// Rounds before the drain, and the seconds they took.
    rounds: u64,
    secs: f64,
    /// The longest gap between the starts of two rounds in a row, before the drain.
    max_gap: Duration,
    undrained: usize,
}

/// The rounds the threads reached: the slowest thread's rate, the longest gap of any.
struct Reached {
    reached: f64,
    max_gap: Duration,
}

impl Reached {
    fn of(shares: &[Share], asked: f64) -> Self {
        let rates = shares
            .iter()
            .filter(|s| s.rounds > 0 && s.secs > 0.0)
            .map(|s| s.rounds as f64 / s.secs);
        Self {
            // a thread that ran no round had nothing to keep up with
            reached: rates.fold(asked, f64::min),
            max_gap: shares.iter().map(|s| s.max_gap).max().unwrap_or_default(),
        }
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

/// Every bot's plan (ids, flaws, timings drawn from the seed); the apps are built by the
/// threads that drive them (a Bevy app stays in the thread it was built in).
fn plan_bots(args: &Args, seed: u64) -> Vec<Bot> {
    let mut rng = fastrand::Rng::with_seed(seed);
    // distinct id ranges per run so several bot processes can share a server
    let base = rng.u64(1..1 << 40) << 12;
    (0..args.count)
        .map(|i| {
            let flaw = (rng.f64() < args.flaky).then(|| {
                let at = args.duration.mul_f64(rng.f64() * 0.5);
                (Flaw::random(&mut rng), at)
            });
            let rematch = args.rematch;
            let category = args.category.clone();
            let mut bot = Bot::new(i, base + i as u64, category, flaw, rematch, rng.u64(..));
            bot.reconnect = true;
            bot
        })
        .collect()
}

/// `bots` cut into `threads` shares of consecutive bots, as even as they go.
fn shares(mut bots: Vec<Bot>, threads: usize) -> Vec<Vec<Bot>> {
    let mut shares = Vec::with_capacity(threads);
    for left in (1..=threads).rev() {
        let take = bots.len().div_ceil(left);
        let rest = bots.split_off(take);
        shares.push(std::mem::replace(&mut bots, rest));
    }
    shares
}

/// One thread's run: builds its bots' apps, waits for every other thread, then runs
/// rounds until `--duration` (or every bot is gone, with `--no-rematch`), drains, says
/// goodbye, and hands its bots back.
fn run_share(thread: usize, bots: Vec<Bot>, run: &Run) -> Share {
    let mut apps: Vec<App> = bots
        .into_iter()
        .map(|bot| {
            let i = bot.index;
            // bots spread across the servers (nodes of a cluster), each trying the
            // others in turn after its own
            let mut servers = run.servers.clone();
            let first = i % servers.len();
            servers.rotate_left(first);
            bot_app_to(&servers, bot, &run.identity).unwrap_or_else(|e| {
                eprintln!("bots: bot {i} cannot connect: {e}");
                std::process::exit(1);
            })
        })
        .collect();
    let mut counted = vec![false; apps.len()];
    run.built.wait();
    run.go.wait();
    let started = Instant::now();
    let until = started + run.duration;
    let mut pace = Pace::new(run.rate);
    while Instant::now() < until && !run.all_gone() {
        pace.round(|| round(&mut apps, &mut counted, run));
    }
    let secs = started.elapsed().as_secs_f64();
    let (rounds, max_gap, work) = (pace.rounds, pace.max_gap, pace.work);
    // drain like real players: stop queueing and keep listening until every match the
    // bots are in has committed or rolled back, so each bot reports every match it was
    // committed into
    for app in &mut apps {
        app.world_mut().resource_mut::<Bot>().stopping = true;
    }
    let drain_until = Instant::now() + DRAIN_LIMIT;
    let mut drain = Pace::new(run.rate);
    while Instant::now() < drain_until && !apps.iter().all(drained) {
        drain.round(|| round(&mut apps, &mut counted, run));
    }
    eprintln!(
        "bots: thread {thread}: {} bots, {rounds} rounds in {secs:.1} s ({:.1}/s), busy {:.0} % \
         of the time, longest gap between rounds {} ms",
        apps.len(),
        rounds as f64 / secs.max(1e-9),
        work.as_secs_f64() * 100.0 / secs.max(1e-9),
        max_gap.as_millis()
    );
    let undrained = apps.iter().filter(|a| !drained(a)).count();
    report_never_connected(&mut apps);
    for app in &mut apps {
        print_lines(app);
    }
    disconnect_in_batches(&mut apps, run.threads);
    let bots = apps
        .iter_mut()
        .map(|app| app.world_mut().remove_resource::<Bot>().expect("a bot"))
        .collect();
    Share {
        bots,
        rounds,
        secs,
        max_gap,
        undrained,
    }
}

/// One round: checks every bot of the thread once ([`tick`]: updated only if it has
/// something to do), prints its lines, counts the bots that are gone now.
fn round(apps: &mut [App], counted: &mut [bool], run: &Run) {
    for (app, counted) in apps.iter_mut().zip(counted) {
        if tick(app, run.every) {
            print_lines(app);
        }
        if !*counted && app.world().resource::<Bot>().gone {
            *counted = true;
            run.gone.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prints (and forgets) a bot's lines.
fn print_lines(app: &mut App) {
    for line in app.world_mut().resource_mut::<Bot>().lines.drain(..) {
        println!("{line}");
    }
}

/// Keeps a thread's rounds at a rate: each round ends at the next multiple of the round's
/// length (a late round does not make the next ones catch up). Counts the rounds, the
/// time they worked, and the longest gap between the starts of two rounds in a row.
struct Pace {
    period: Duration,
    next: Instant,
    last: Option<Instant>,
    rounds: u64,
    work: Duration,
    max_gap: Duration,
}

impl Pace {
    fn new(hz: f64) -> Self {
        Self {
            period: Duration::from_secs_f64(1.0 / hz),
            next: Instant::now(),
            last: None,
            rounds: 0,
            work: Duration::ZERO,
            max_gap: Duration::ZERO,
        }
    }

    /// Runs one round, then sleeps until its end.
    fn round(&mut self, work: impl FnOnce()) {
        let start = Instant::now();
        if let Some(last) = self.last.replace(start) {
            self.max_gap = self.max_gap.max(start - last);
        }
        work();
        self.rounds += 1;
        let now = Instant::now();
        self.work += now - start;
        self.next += self.period;
        match self.next.checked_duration_since(now) {
            Some(rest) => std::thread::sleep(rest),
            None => self.next = now,
        }
    }
}

/// Whether a stopping bot has nothing left in flight: not queued, not in a forming
/// match, not in a lobby (or it left the server, or the server is closing).
pub fn drained(app: &App) -> bool {
    app.world().resource::<Bot>().gone
        || matches!(
            app.world().resource::<State<AtomicClientState>>().get(),
            AtomicClientState::Idle
                | AtomicClientState::Disconnected
                | AtomicClientState::ServerClosing
        )
}

/// Reports every bot whose connection never opened and that has not said so yet (netcode
/// gives up only after the token's timeout, which a short run may not reach).
pub fn report_never_connected(apps: &mut [App]) {
    for app in apps {
        let reason = identity::client_gave_up(app.world());
        let mut bot = app.world_mut().resource_mut::<Bot>();
        if !bot.connected_once {
            bot.report_refused(reason);
        }
    }
}

/// netcode sends a single disconnect packet per client: disconnect in small batches so
/// the server's socket buffer does not drop them (a lost one costs a 15 s timeout); with
/// several threads each sends its share of the 20 per 20 ms.
fn disconnect_in_batches(apps: &mut [App], threads: usize) {
    for batch in apps.chunks_mut((20 / threads).max(1)) {
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
fn print_summary(args: &Args, seed: u64, bots: &[Bot], pace: &Reached) -> usize {
    let mut waits = Vec::new();
    let (mut matched, mut cancelled, mut errors, mut bots_matched) = (0, 0, 0, 0);
    let (mut never_connected, mut closing, mut bots_told, mut reconnects) = (0, 0, 0, 0);
    let (mut kept_up, mut own_lag) = (0, 0);
    let mut seen: BTreeMap<(u64, &str), Vec<Vec<u64>>> = BTreeMap::new();
    for bot in bots {
        matched += bot.matched;
        cancelled += bot.cancelled;
        kept_up += bot.cancelled_kept_up;
        own_lag += bot.cancelled_own_lag;
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
    let ours: std::collections::HashSet<u64> = bots.iter().map(|b| b.player).collect();
    let inconsistent = seen
        .values()
        .filter(|reports| {
            let first = &reports[0];
            let ours_in = first.iter().filter(|p| ours.contains(p)).count();
            reports.iter().any(|r| r != first) || ours_in != reports.len()
        })
        .count();
    let tenths = |x: f64| (x * 10.0).round() / 10.0;
    println!(
        "{}",
        json!({
            "event": "summary", "bots": args.count, "matched": matched, "bots_matched": bots_matched,
            "matches": seen.len(), "cancelled": cancelled, "errors": errors,
            "cancelled_kept_up": kept_up, "cancelled_own_lag": own_lag,
            "never_connected": never_connected, "server_closing": closing,
            "bots_told_closing": bots_told, "reconnects": reconnects, "seed": seed,
            "wait_ms_p50": percentile_ms(&mut waits, 0.5), "wait_ms_p99": percentile_ms(&mut waits, 0.99),
            "inconsistent_matches": inconsistent,
            "rounds_per_s_asked": args.rate, "rounds_per_s_reached": tenths(pace.reached),
            "max_round_gap_ms": pace.max_gap.as_millis() as u64,
        })
    );
    inconsistent
}
