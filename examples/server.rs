//! Dedicated headless matchmaking server over UDP (renet_netcode, secure connect tokens).
//!
//! ```text
//! cargo run --example server -- [--addr 127.0.0.1:5000] [--players-per-match 2]
//!     [--run-for SECONDS] [--stats-json PATH] [--stats-every SECONDS]
//!     [--key-file PATH] [--insecure] [--public-addr ADDR]...
//! ```
//! Accepts only clients whose connect token was minted with the key in `--key-file`
//! (default `target/matchmaking-dev.key` of this crate, created on first use and shared with
//! `bots` and `lobby`). `--public-addr` adds an address tokens may name besides `--addr` (a
//! proxy in front of the server). `--insecure` lets every client pick its own id: local
//! experiments only.
//! Prints a stats line every few seconds and each commit/rollback; on exit (SIGINT,
//! SIGTERM or `--run-for`) writes the final stats as one JSON object to `--stats-json`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bevy::app::ScheduleRunnerPlugin;
use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{NETCODE_MAX_CLIENTS, matchmaking_wake_runner};

#[path = "common/identity.rs"]
mod identity;
use identity::{IDENTITY_USAGE, IdentityArgs};

struct Args {
    addr: SocketAddr,
    players_per_match: usize,
    run_for: Option<Duration>,
    stats_json: Option<String>,
    stats_every: Duration,
    identity: IdentityArgs,
    public_addrs: Vec<SocketAddr>,
    tick_hz: f64,
    wake: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:5000".parse().expect("valid"),
        players_per_match: 2,
        run_for: None,
        stats_json: None,
        stats_every: Duration::from_secs(5),
        identity: IdentityArgs::default(),
        public_addrs: Vec::new(),
        tick_hz: 60.0,
        wake: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        if args.identity.take(&flag, &mut value)? {
            continue;
        }
        match flag.as_str() {
            "--public-addr" => args.public_addrs.push(
                value()?
                    .parse()
                    .map_err(|e| format!("--public-addr: {e}"))?,
            ),
            "--addr" => args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--players-per-match" => {
                args.players_per_match = value()?
                    .parse()
                    .map_err(|e| format!("--players-per-match: {e}"))?;
                if !(2..=16).contains(&args.players_per_match) {
                    return Err("--players-per-match must be 2..=16".into());
                }
            }
            "--run-for" => {
                let secs: f64 = value()?.parse().map_err(|e| format!("--run-for: {e}"))?;
                args.run_for = Some(Duration::from_secs_f64(secs));
            }
            "--stats-json" => args.stats_json = Some(value()?),
            "--wake" => args.wake = true,
            "--tick-hz" => {
                args.tick_hz = value()?.parse().map_err(|e| format!("--tick-hz: {e}"))?;
                if !(1.0..=1000.0).contains(&args.tick_hz) {
                    return Err("--tick-hz must be 1..=1000".into());
                }
            }
            "--stats-every" => {
                let secs: f64 = value()?
                    .parse()
                    .map_err(|e| format!("--stats-every: {e}"))?;
                args.stats_every = Duration::from_secs_f64(secs.max(0.1));
            }
            "-h" | "--help" => {
                println!(
                    "usage: server [--addr ADDR] [--players-per-match N] [--run-for SECONDS] [--stats-json PATH] [--stats-every SECONDS] [--tick-hz 60] [--wake] {IDENTITY_USAGE} [--public-addr ADDR]..."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[derive(Resource)]
struct ServerRun {
    run_for: Option<Duration>,
    stats_json: Option<String>,
    stats_every: Duration,
    last_stats: Duration,
    stop: Arc<AtomicBool>,
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("server: {e}");
            std::process::exit(2);
        }
    };
    let identity = args.identity.load("server").unwrap_or_else(|e| {
        eprintln!("server: {e}");
        std::process::exit(1);
    });
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .expect("install the SIGINT/SIGTERM handler");
    }

    let channel = AtomicChannel::default();
    let mut app = App::new();
    app.add_plugins(
        MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(Duration::from_secs_f64(
            1.0 / args.tick_hz,
        ))),
    )
    .add_plugins(bevy::log::LogPlugin {
        level: bevy::log::Level::WARN,
        // renetcode logs every packet it refuses at ERROR: a client with a wrong key or an
        // expired token retries 4 times a second, so anyone could flood the log
        filter: format!("{},renetcode::server=off", bevy::log::DEFAULT_FILTER),
        ..default()
    })
    .add_plugins(AtomicServerPlugin {
        channel,
        settings: AtomicServerSettings {
            players_per_match: args.players_per_match,
            ..default()
        },
    });
    let addr = match identity.insert_server(
        &mut app,
        args.addr,
        &args.public_addrs,
        NETCODE_MAX_CLIENTS,
        channel.dedicated_connection_config(),
    ) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("server: cannot bind {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    println!(
        "server: listening on {addr} ({} players per match; {})",
        args.players_per_match,
        identity.describe(Some(&args.identity.key_file))
    );
    app.insert_resource(ServerRun {
        run_for: args.run_for,
        stats_json: args.stats_json,
        stats_every: args.stats_every,
        last_stats: Duration::ZERO,
        stop,
    })
    .add_systems(
        Update,
        (print_outcomes, print_stats, stop_when_done).chain(),
    );
    if args.wake {
        // update when a datagram arrives (at most at --tick-hz), at least every 50 ms
        app.set_runner(matchmaking_wake_runner(
            Duration::from_secs_f64(1.0 / args.tick_hz),
            Duration::from_millis(50),
        ));
    }
    app.run();
}

fn print_outcomes(mut outcomes: MessageReader<AtomicMatchOutcome>) {
    for o in outcomes.read() {
        let players: Vec<PlayerId> = o.players.iter().map(|p| p.player).collect();
        if o.status.is_success() {
            println!(
                "server: match {} committed: lobby {} category {} players {:?} in {} ms",
                o.match_id,
                o.lobby_code.as_deref().unwrap_or("-"),
                o.category,
                players,
                o.elapsed.as_millis()
            );
        } else {
            println!(
                "server: match {} rolled back ({}): category {} players {:?} re-queued {:?}",
                o.match_id, o.status, o.category, players, o.requeued
            );
        }
    }
}

fn stats_line(stats: &AtomicServerStats) -> String {
    let q = stats.time_in_queue.percentiles();
    let c = stats.time_to_commit.percentiles();
    format!(
        "queued={} in_flight={} lobbies={} committed={} rolled_back={} requeued={} dropped={} refused={} queue_p50={}ms queue_p99={}ms commit_p50={}ms commit_p99={}ms",
        stats.total_queued(),
        stats.matches_in_flight,
        stats.lobbies_open,
        stats.matches_committed,
        stats.matches_rolled_back,
        stats.players_requeued,
        stats.healthy_players_dropped,
        stats.connections_refused,
        q.p50.as_millis(),
        q.p99.as_millis(),
        c.p50.as_millis(),
        c.p99.as_millis(),
    )
}

fn print_stats(time: Res<Time<Real>>, mut run: ResMut<ServerRun>, stats: Res<AtomicServerStats>) {
    if time.elapsed() >= run.last_stats + run.stats_every {
        run.last_stats = time.elapsed();
        println!("server: stats {}", stats_line(&stats));
    }
}

fn stats_json(stats: &AtomicServerStats) -> serde_json::Value {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let q = stats.time_in_queue.percentiles();
    let c = stats.time_to_commit.percentiles();
    serde_json::json!({
        "matches_committed": stats.matches_committed,
        "matches_rolled_back": stats.matches_rolled_back,
        "matches_formed": stats.matches_formed,
        "players_requeued": stats.players_requeued,
        "healthy_players_dropped": stats.healthy_players_dropped,
        "players_queued": stats.total_queued(),
        "players_queued_by_category": stats.players_queued,
        "matches_in_flight": stats.matches_in_flight,
        "lobbies_open": stats.lobbies_open,
        "connections_refused": stats.connections_refused,
        "rollbacks_by_status": stats.rollbacks_by_status,
        "time_in_queue_ms": {"p50": ms(q.p50), "p90": ms(q.p90), "p99": ms(q.p99), "max": ms(q.max), "count": q.count},
        "time_to_commit_ms": {"p50": ms(c.p50), "p90": ms(c.p90), "p99": ms(c.p99), "max": ms(c.max), "count": c.count},
    })
}

fn stop_when_done(
    time: Res<Time<Real>>,
    run: Res<ServerRun>,
    stats: Res<AtomicServerStats>,
    mut exit: MessageWriter<AppExit>,
    mut done: Local<bool>,
) {
    if *done {
        return;
    }
    let timed_out = run.run_for.is_some_and(|d| time.elapsed() >= d);
    if !(timed_out || run.stop.load(Ordering::SeqCst)) {
        return;
    }
    *done = true;
    println!("server: final stats {}", stats_line(&stats));
    if let Some(path) = &run.stats_json {
        let json = stats_json(&stats).to_string();
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("server: cannot write {path}: {e}");
        }
    }
    exit.write(AppExit::Success);
}
