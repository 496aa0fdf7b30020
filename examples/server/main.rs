//! Dedicated headless matchmaking server over UDP (renet_netcode, secure connect tokens),
//! run as an operator would: `server --help` lists every setting with its default, and
//! README.md's "Operating a server" says how to run it.
//!
//! ```text
//! cargo run --release --example server -- [--config server.toml] [--addr 127.0.0.1:5000]
//!     [--metrics 127.0.0.1:9000] [--stats-json PATH] [--print-config] ...
//! ```
//! Accepts only clients whose connect token was minted with the key in `--key-file`
//! (default `target/matchmaking-dev.key` of this crate, created on first use and shared with
//! `bots` and `lobby`; another missing key file is an error unless `--create-key`).
//!
//! Lifecycle, on stdout: `server: listening on ADDR (...)` once bound; `server: draining
//! (...)` on SIGTERM, SIGINT or at `--run-for`; `server: final stats ...` once the drain is
//! over (the stats JSON is written then too), then exit 0. A second signal exits at once
//! with code 130. Exit code 2: a setting was refused at start; 1: a socket could not be
//! bound, or the drain did not finish in time. Everything else is a log line on stderr
//! (`RUST_LOG`, `--log-format`): the summary every `--stats-every` at info, each commit and
//! rollback at debug (target `server`), refused connections at most once a second at warn.
//!
//! With `--redis URL --node-id NAME` the server is one node of a cluster on that Redis
//! (`cluster.rs`): same clients, same flags, one logical queue across every node.
//!
//! Files: `config.rs` (flags, config file, checks), `stats.rs` (numbers, JSON, the state
//! shared with the HTTP thread), `http.rs` (`--metrics`), `logging.rs` (the subscriber and
//! the refusal tap), `cluster.rs` (cluster mode).

mod cluster;
mod config;
mod http;
mod logging;
mod stats;

#[path = "../common/identity.rs"]
mod identity;
#[path = "../common/settings.rs"]
mod settings;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bevy::app::ScheduleRunnerPlugin;
use bevy::prelude::*;
use bevy_atomic_matchmaking::bevy_renet::RenetServer;
use bevy_atomic_matchmaking::bevy_renet::netcode::NetcodeErrorEvent;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{
    MatchmakingQuietServerTransport, NETCODE_MAX_CLIENTS, matchmaking_wake_runner,
};

use config::Config;
use identity::Identity;
use stats::{Extra, RefusalCause, Shared};

/// The exit code for settings refused at start.
const EXIT_CONFIG: i32 = 2;
/// The exit code after a second signal.
const EXIT_SECOND_SIGNAL: i32 = 130;
/// How long past `--drain-timeout` the server waits for the plugin's drain to finish.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

fn refuse(problems: &[String]) -> ! {
    for problem in problems {
        eprintln!("server: {problem}");
    }
    eprintln!("server: refusing to start (see server --help)");
    std::process::exit(EXIT_CONFIG);
}

/// What the server's own systems need.
#[derive(Resource)]
struct ServerRun {
    config: Config,
    shared: Arc<Shared>,
    /// SIGINT and SIGTERM received.
    signals: Arc<AtomicUsize>,
    /// When the drain started (app time), if it did.
    drain_started: Option<Duration>,
    last_stats: Duration,
    /// The stats file was written since start.
    stats_written: bool,
    last_snapshot: Duration,
    last_refusals: Duration,
    /// The counts the last refusal line reported.
    refusals_reported: ([u64; RefusalCause::ALL.len()], u64),
}

fn main() {
    let loaded = config::load().unwrap_or_else(|problems| refuse(&problems));
    let config = loaded.config;
    if loaded.print_config {
        print!("{}", config::to_toml(&config));
        return;
    }
    let shared = Arc::new(Shared::new());
    // fail now, not at exit, if the stats file cannot be written
    if let Some(path) = &config.stats_json
        && let Err(e) = stats::write_atomically(path, "{}\n")
    {
        refuse(&[format!("cannot write --stats-json {}: {e}", path.display())]);
    }
    let identity = load_identity(&config, loaded.key_file_given);
    if let Err(e) = logging::init(config.log_format, shared.clone()) {
        refuse(&[e]);
    }
    let metrics = config.metrics.map(|addr| {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
            eprintln!("server: cannot listen for --metrics on {addr}: {e}");
            std::process::exit(1);
        });
        let bound = listener.local_addr().unwrap_or(addr);
        if let Err(e) = http::spawn(listener, shared.clone()) {
            eprintln!("server: cannot start the --metrics thread: {e}");
            std::process::exit(1);
        }
        bound
    });
    let signals = Arc::new(AtomicUsize::new(0));
    install_signal_handler(signals.clone());

    let cluster = config.redis.is_some();
    let mut app = match cluster {
        true => cluster::build_app(&config),
        false => build_app(&config),
    };
    let addr = match identity.insert_server(
        &mut app,
        config.addr,
        &config.public_addrs,
        NETCODE_MAX_CLIENTS,
        AtomicChannel::default().dedicated_connection_config(),
    ) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("server: cannot bind {}: {e}", config.addr);
            std::process::exit(1);
        }
    };
    shared.bound.store(true, Ordering::SeqCst);
    shared
        .heartbeat_ms
        .store(shared.now_ms(), Ordering::Relaxed);
    let http = metrics.map_or(String::new(), |a| format!("; HTTP on {a}"));
    let node = match (&config.node_id, &config.redis) {
        (Some(name), Some(url)) => format!("; cluster node {name} on {url}"),
        _ => String::new(),
    };
    println!(
        "server: listening on {addr} ({} players per match; {}{http}{node})",
        config.matchmaking.players_per_match,
        identity.describe((!config.insecure).then_some(config.key_file.as_path()))
    );
    if cluster {
        app.insert_resource(cluster::ClusterRun::new(config, shared, signals));
        let code = app.run();
        drop(app); // the node gives its lease up
        if let AppExit::Error(code) = code {
            std::process::exit(i32::from(code.get()));
        }
        return;
    }
    app.insert_resource(ServerRun {
        config,
        shared,
        signals,
        drain_started: None,
        last_stats: Duration::ZERO,
        stats_written: false,
        last_snapshot: Duration::ZERO,
        last_refusals: Duration::ZERO,
        refusals_reported: ([0; RefusalCause::ALL.len()], 0),
    });
    if let AppExit::Error(code) = app.run() {
        std::process::exit(i32::from(code.get()));
    }
}

/// The key (or insecure mode) the settings ask for; exits 2 when it cannot be had.
fn load_identity(config: &Config, key_file_given: bool) -> Identity {
    if config.insecure {
        eprintln!(
            "server: WARNING: --insecure: every client picks its own player id, so anyone can \
             connect as anyone; for local experiments only"
        );
        return Identity::Insecure;
    }
    // the default key file may be created (a fresh clone); another one only if asked
    let create = config.create_key || !key_file_given;
    match identity::load_server_key(&config.key_file, create, "server") {
        Ok(key) => Identity::secure(key, !config.netcode),
        Err(e) => refuse(&[e]),
    }
}

/// The first SIGINT or SIGTERM starts the drain (a system sees the count); the second exits.
fn install_signal_handler(signals: Arc<AtomicUsize>) {
    let installed = ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::SeqCst) >= 1 {
            eprintln!(
                "server: second signal: exiting now with code {EXIT_SECOND_SIGNAL}, without the \
                 final stats"
            );
            std::process::exit(EXIT_SECOND_SIGNAL);
        }
    });
    if let Err(e) = installed {
        eprintln!("server: cannot install the SIGINT/SIGTERM handler: {e}");
        std::process::exit(1);
    }
}

fn build_app(config: &Config) -> App {
    let frame = Duration::from_secs_f64(1.0 / config.tick_hz);
    let mut app = App::new();
    app.add_plugins(MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(frame)))
        .add_plugins(AtomicServerPlugin {
            channel: AtomicChannel::default(),
            settings: config.matchmaking.settings(),
        })
        .add_observer(log_netcode_error)
        .add_systems(
            Update,
            (
                heartbeat,
                log_outcomes,
                start_drain,
                log_summary,
                log_refusals,
                finish_drain,
            )
                .chain(),
        );
    if config.wake && !config.netcode {
        // update when a datagram arrives (at most at --tick-hz), at least every 50 ms
        app.set_runner(matchmaking_wake_runner(frame, Duration::from_millis(50)));
    }
    app
}

/// What the stats show besides the plugin's, now.
#[derive(bevy::ecs::system::SystemParam)]
struct Numbers<'w> {
    time: Res<'w, Time<Real>>,
    stats: Res<'w, AtomicServerStats>,
    renet: Option<Res<'w, RenetServer>>,
    quiet: Option<Res<'w, MatchmakingQuietServerTransport>>,
}

impl Numbers<'_> {
    fn extra<'a>(&self, shared: &'a Shared, draining: bool) -> Extra<'a> {
        Extra {
            connected: self.renet.as_ref().map_or(0, |r| r.connected_clients()),
            draining,
            uptime: self.time.elapsed(),
            transport: self.quiet.as_ref().map(|q| q.stats()),
            shared,
        }
    }

    fn json(&self, run: &ServerRun) -> String {
        let extra = self.extra(&run.shared, run.drain_started.is_some());
        stats::stats_json(&self.stats, &extra).to_string()
    }

    fn line(&self, run: &ServerRun) -> String {
        let extra = self.extra(&run.shared, run.drain_started.is_some());
        stats::stats_line(&self.stats, &extra)
    }
}

/// Tells `/healthz` the app is updating, and refreshes `/stats` about once a second.
fn heartbeat(numbers: Numbers, mut run: ResMut<ServerRun>) {
    run.shared
        .heartbeat_ms
        .store(run.shared.now_ms(), Ordering::Relaxed);
    let now = numbers.time.elapsed();
    if run.config.metrics.is_some()
        && now.saturating_sub(run.last_snapshot) >= Duration::from_secs(1)
    {
        run.last_snapshot = now;
        let json = numbers.json(&run);
        if let Ok(mut snapshot) = run.shared.snapshot.lock() {
            *snapshot = json;
        }
    }
}

/// Each commit and rollback, at debug (`RUST_LOG=info,server=debug`).
fn log_outcomes(mut outcomes: MessageReader<AtomicMatchOutcome>) {
    for o in outcomes.read() {
        let players: Vec<PlayerId> = o.players.iter().map(|p| p.player).collect();
        if o.status.is_success() {
            debug!(
                target: "server",
                "match {} committed: lobby {} category {} players {:?} in {} ms",
                o.match_id,
                o.lobby_code.as_deref().unwrap_or("-"),
                o.category,
                players,
                o.elapsed.as_millis()
            );
        } else {
            debug!(
                target: "server",
                "match {} rolled back ({}): category {} players {:?} re-queued {:?}",
                o.match_id, o.status, o.category, players, o.requeued
            );
        }
    }
}

/// Why the server stops now, if it does: a signal came, or `--run-for` is over.
fn stop_reason(signals: &AtomicUsize, config: &Config, now: Duration) -> Option<String> {
    if signals.load(Ordering::SeqCst) > 0 {
        Some("a signal (SIGTERM or SIGINT)".to_string())
    } else {
        let run_for = config.run_for.filter(|d| now >= d.0)?;
        Some(format!("--run-for {run_for} s"))
    }
}

/// The first signal, or `--run-for`, starts the drain.
fn start_drain(
    time: Res<Time<Real>>,
    mut run: ResMut<ServerRun>,
    mut drain: MessageWriter<AtomicDrain>,
) {
    if run.drain_started.is_some() {
        return;
    }
    let Some(why) = stop_reason(&run.signals, &run.config, time.elapsed()) else {
        return;
    };
    let timeout = run.config.drain_timeout.0;
    run.drain_started = Some(time.elapsed());
    run.shared.draining.store(true, Ordering::SeqCst);
    println!(
        "server: draining after {why}: telling clients the server is closing; matches in \
         flight have {} s to finish (a second signal exits at once)",
        timeout.as_secs_f64()
    );
    drain.write(AtomicDrain { timeout });
}

/// The summary every `--stats-every`, at info, and the `--stats-json` file rewritten.
fn log_summary(numbers: Numbers, mut run: ResMut<ServerRun>) {
    let now = numbers.time.elapsed();
    let due = now.saturating_sub(run.last_stats) >= run.config.stats_every.0;
    // the file has the real keys from the first update on (it held `{}` until then)
    if !due && run.stats_written {
        return;
    }
    run.stats_written = true;
    if due {
        run.last_stats = now;
        info!(target: "server", "stats {}", numbers.line(&run));
    }
    if let Some(path) = &run.config.stats_json
        && let Err(e) = stats::write_atomically(path, &(numbers.json(&run) + "\n"))
    {
        error!(target: "server", "cannot write --stats-json {}: {e}", path.display());
    }
}

/// Refused connections, at most one warning a second, with their causes and counts.
fn log_refusals(numbers: Numbers, mut run: ResMut<ServerRun>) {
    let now = numbers.time.elapsed();
    let elapsed = now.saturating_sub(run.last_refusals);
    if elapsed < Duration::from_secs(1) {
        return;
    }
    run.last_refusals = now;
    let counts = run.shared.refusal_counts();
    let gate = numbers.stats.connections_refused;
    let (before, gate_before) = run.refusals_reported;
    run.refusals_reported = (counts, gate);
    let mut parts: Vec<String> = RefusalCause::ALL
        .iter()
        .zip(counts.iter().zip(before))
        .filter(|(_, (now, before))| **now > *before)
        .map(|(cause, (now, before))| format!("{} {}", now - before, cause.describe()))
        .collect();
    let packets: u64 = counts.iter().zip(before).map(|(n, b)| n - b).sum();
    if packets > 0 {
        parts[0] = format!(
            "{packets} connection packets refused by netcode: {}",
            parts[0]
        );
        let last = parts.len() - 1;
        parts[last] += " (a refused client retries 4 times a second)";
    }
    if gate > gate_before {
        parts.push(format!(
            "{} connections refused by the matchmaking gate (protocol version or abuse)",
            gate - gate_before
        ));
    }
    if !parts.is_empty() {
        warn!(target: "server", "in the last {:.1} s: {}", elapsed.as_secs_f64(), parts.join(", "));
    }
}

/// Once the plugin says the drain is over: the final stats, printed and written, then exit 0
/// (1 if the drain never finished, or the file could not be written).
fn finish_drain(
    numbers: Numbers,
    run: Res<ServerRun>,
    mut finished: MessageReader<AtomicDrainFinished>,
    mut exit: MessageWriter<AppExit>,
    mut done: Local<bool>,
    mut pending: Local<Option<Closing>>,
    mut commands: Commands,
) {
    // the stats are written: let the last messages (a commit of the last frame, the last
    // closing notices) reach their clients, then close every connection, and exit once the
    // transport sent the disconnect packets (a client that connected late hears it at once)
    if let Some(closing) = pending.as_mut() {
        let now = numbers.time.elapsed();
        if now < closing.flush_until {
            // a client that connects now is closed at once: there is nothing left to tell it
            let late: Vec<u64> = numbers.renet.as_ref().map_or_else(Vec::new, |r| {
                r.clients_id_iter()
                    .filter(|c| !closing.known.contains(c))
                    .collect()
            });
            if !late.is_empty() {
                commands.queue(move |world: &mut World| {
                    if let Some(mut server) = world.get_resource_mut::<RenetServer>() {
                        late.iter().for_each(|c| server.disconnect(*c));
                    }
                });
            }
            return;
        }
        if closing.frames_left == CLOSE_FRAMES {
            commands.queue(|world: &mut World| {
                if let Some(mut server) = world.get_resource_mut::<RenetServer>() {
                    server.disconnect_all();
                }
            });
        }
        if closing.frames_left == 0 {
            exit.write(closing.code.clone());
        } else {
            closing.frames_left -= 1;
        }
        return;
    }
    let Some(started) = run.drain_started else {
        return;
    };
    let drained = finished.read().last().is_some();
    let late = numbers.time.elapsed().saturating_sub(started)
        > run.config.drain_timeout.0.saturating_add(DRAIN_GRACE);
    if *done || !(drained || late) {
        return;
    }
    *done = true;
    let mut code = AppExit::Success;
    if !drained {
        eprintln!("server: the drain did not finish in time; exiting with the stats as they are");
        code = AppExit::from_code(1);
    }
    let json = numbers.json(&run);
    if let Ok(mut snapshot) = run.shared.snapshot.lock() {
        snapshot.clone_from(&json);
    }
    println!("server: final stats {}", numbers.line(&run));
    if let Some(path) = &run.config.stats_json
        && let Err(e) = stats::write_atomically(path, &(json + "\n"))
    {
        eprintln!("server: cannot write --stats-json {}: {e}", path.display());
        code = AppExit::from_code(1);
    }
    *pending = Some(Closing {
        known: numbers
            .renet
            .as_ref()
            .map_or_else(Default::default, |r| r.clients_id_iter().collect()),
        code,
        flush_until: numbers.time.elapsed() + FLUSH_BEFORE_CLOSING,
        frames_left: CLOSE_FRAMES,
    });
}

/// How long the last messages have to reach their clients before the connections close.
const FLUSH_BEFORE_CLOSING: Duration = Duration::from_millis(300);

/// Frames between closing every connection and exiting (the disconnect packets go out).
const CLOSE_FRAMES: u8 = 3;

/// The way out after the final stats.
struct Closing {
    /// The clients connected when the drain ended (they get their last messages).
    known: std::collections::HashSet<u64>,
    code: AppExit,
    flush_until: Duration,
    frames_left: u8,
}

/// renet_netcode's transport (`--netcode`) reports socket errors as an event; at most one
/// line a second.
fn log_netcode_error(
    event: On<NetcodeErrorEvent>,
    time: Res<Time<Real>>,
    mut last: Local<Option<Duration>>,
    mut suppressed: Local<u64>,
) {
    let now = time.elapsed();
    if last.is_some_and(|at| now.saturating_sub(at) < Duration::from_secs(1)) {
        *suppressed += 1;
        return;
    }
    *last = Some(now);
    let more = std::mem::take(&mut *suppressed);
    error!(target: "server", "netcode transport: {} ({more} more in the last second)", *event);
}
