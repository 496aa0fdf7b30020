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
use clap::Parser;
use identity::IdentityArgs;

/// A dedicated headless matchmaking server over UDP, accepting only connect tokens minted
/// with its key file (unless --insecure).
#[derive(Parser)]
#[command(name = "server", args_override_self = true)]
struct Args {
    /// The UDP address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    addr: SocketAddr,
    /// Players in each match (2..=16)
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = players_per_match)]
    players_per_match: usize,
    /// Stop after this many seconds, printing and writing the final stats (default: until SIGINT/SIGTERM)
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    run_for: Option<Duration>,
    /// Write the final stats to this file as one JSON object
    #[arg(long, value_name = "PATH")]
    stats_json: Option<String>,
    /// Print a stats line every this many seconds (at least 0.1)
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = stats_every)]
    stats_every: Duration,
    /// The server's update rate, in updates per second (1..=1000)
    #[arg(long, value_name = "HZ", default_value_t = 60.0, value_parser = tick_hz)]
    tick_hz: f64,
    /// Update when a datagram arrives (at most at --tick-hz) and at least every 50 ms (quiet transport only)
    #[arg(long)]
    wake: bool,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Another address clients reach the server through (a proxy), accepted in tokens; repeatable
    #[arg(long = "public-addr", value_name = "ADDR")]
    public_addrs: Vec<SocketAddr>,
}

fn seconds(v: &str) -> Result<Duration, String> {
    let secs = v.parse::<f64>().map_err(|e| e.to_string())?;
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn stats_every(v: &str) -> Result<Duration, String> {
    let secs = v.parse::<f64>().map_err(|e| e.to_string())?;
    Duration::try_from_secs_f64(secs.max(0.1)).map_err(|e| e.to_string())
}

fn players_per_match(v: &str) -> Result<usize, String> {
    let n = v.parse::<usize>().map_err(|e| e.to_string())?;
    if !(2..=16).contains(&n) {
        return Err("must be 2..=16".into());
    }
    Ok(n)
}

fn tick_hz(v: &str) -> Result<f64, String> {
    let hz = v.parse::<f64>().map_err(|e| e.to_string())?;
    if !(1.0..=1000.0).contains(&hz) {
        return Err("must be 1..=1000".into());
    }
    Ok(hz)
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
    let args = Args::parse();
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
