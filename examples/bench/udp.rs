//! The scenarios over UDP loopback: `burst`, `idle` and `sustained`. The server runs in
//! its own thread ([`ServerThread`]), built by [`plug::server_app`]; the clients are
//! [`Fleet`] bots in threads of their own for `burst` and `sustained`, bare [`RawFleet`]
//! clients in the main thread for `idle`, each with its own UDP socket and a connect token
//! minted from a key made in memory. Each report says the client rounds a second asked
//! and reached (the slowest thread's): below 90 %, the bench fails.

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::atomic::core::protocol::{AtomicClientMessage, AtomicServerMessage};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::codec;
use bevy_renet::RenetServer;
use serde_json::{Value, json};

use crate::Args;
use crate::fleet::{Fleet, RawFleet, Script, raw_clients};
use crate::identity::Identity;
use crate::measure::{ms, round3};
use crate::plug;
use crate::server_thread::{ServerThread, matchmaking_counters};
use crate::window::{Measured, Window};

/// How long `burst` waits for every bot to be matched.
const BURST_LIMIT: Duration = Duration::from_secs(60);
/// How long `idle` and `sustained` wait for their clients to connect or queue.
const SETUP_LIMIT: Duration = Duration::from_secs(60);

/// What the health check found for the players of rolled-back matches.
#[derive(Resource, Default, Debug)]
struct RollbackHealth {
    healthy: u64,
    too_slow: u64,
    no_answer: u64,
    disconnected: u64,
    other: u64,
    slowest: Duration,
}

fn count_rollback_health(
    mut outcomes: MessageReader<AtomicMatchOutcome>,
    mut health: ResMut<RollbackHealth>,
) {
    for outcome in outcomes.read().filter(|o| !o.status.is_success()) {
        for p in &outcome.players {
            match p.health {
                AtomicHealthCheck::Healthy { .. } => health.healthy += 1,
                AtomicHealthCheck::TooSlow { latency } => {
                    health.too_slow += 1;
                    health.slowest = health.slowest.max(latency);
                }
                AtomicHealthCheck::NoAnswer => health.no_answer += 1,
                AtomicHealthCheck::Disconnected => health.disconnected += 1,
                _ => health.other += 1,
            }
        }
    }
}

/// The server's own statistics, as report fields.
pub fn server_stats(app: &mut App) -> Value {
    let world = app.world();
    let stats = world.resource::<AtomicServerStats>();
    let commit = stats.time_to_commit.percentiles();
    let queue = stats.time_in_queue.percentiles();
    let health = world.resource::<RollbackHealth>();
    let buffer = world.get_resource::<plug::ReceiveBuffer>().map(|b| b.0);
    json!({
        "server_socket_receive_buffer_bytes": buffer,
        "matches_formed": stats.matches_formed,
        "matches_committed": stats.matches_committed,
        "matches_rolled_back": stats.matches_rolled_back,
        "rollbacks_by_status": stats.rollbacks_by_status,
        "rolled_back_players_health": {
            "healthy": health.healthy, "too_slow": health.too_slow, "no_answer": health.no_answer,
            "disconnected": health.disconnected, "other": health.other,
            "slowest_too_slow_round_trip_ms": ms(health.slowest),
        },
        "players_requeued": stats.players_requeued,
        "healthy_players_dropped": stats.healthy_players_dropped,
        "connections_refused": stats.connections_refused,
        "time_to_commit_ms": {"samples": commit.count, "p50": ms(commit.p50), "p90": ms(commit.p90), "p99": ms(commit.p99), "max": ms(commit.max)},
        "time_in_queue_ms": {"p50": ms(queue.p50), "p99": ms(queue.p99)},
    })
}

/// Starts the server for `players` with these settings (and a counter of what rolled-back
/// matches' health checks found), or says why not.
fn start(
    args: &Args,
    identity: &Identity,
    players: usize,
    settings: AtomicServerSettings,
) -> Result<ServerThread, Value> {
    let identity = identity.clone();
    let rcvbuf = args.udp_rcvbuf;
    let build = move || {
        let (mut app, addr) = plug::server_app(&identity, players, settings, rcvbuf)?;
        app.init_resource::<RollbackHealth>().add_systems(
            Update,
            count_rollback_health.after(AtomicServerSystems::Advance),
        );
        Ok((app, addr))
    };
    ServerThread::spawn(args.server_hz, build, matchmaking_counters)
        .map_err(|e| json!({"error": format!("cannot start the server: {e}")}))
}

/// The clients' rounds a second over a window: asked (`--client-hz`) and reached (the
/// slowest client thread's).
fn client_rounds(args: &Args, measured: &Measured) -> Value {
    let reached = measured.rounds as f64 / measured.wall.as_secs_f64().max(1e-9);
    json!({
        "client_rounds_per_s_asked": args.client_hz,
        "client_rounds_per_s_reached": round3(reached),
    })
}

/// Adds `extra`'s fields to `report`.
pub fn merge(mut report: Value, extra: Value) -> Value {
    if let (Some(r), Value::Object(extra)) = (report.as_object_mut(), extra) {
        r.extend(extra);
    }
    report
}

/// `burst`: N players connect at once, queue, commit and leave as soon as their match
/// commits. From the first connection until every bot is matched (or 60 s).
pub fn burst(args: &Args) -> Value {
    let n = args.players_or(1_000);
    let identity = plug::identity();
    let server = match start(args, &identity, n, AtomicServerSettings::default()) {
        Ok(server) => server,
        Err(e) => return e,
    };
    let duel = |_| "duel".to_string();
    let mut fleet = match Fleet::new(&server, &identity, n, duel, false, args) {
        Ok(fleet) => fleet,
        Err(e) => return json!({"error": format!("cannot make the bots: {e}")}),
    };
    eprintln!("bench: burst: {n} bots connect");
    let window = Window::open(&server, fleet.rounds());
    let all = fleet.run_until(BURST_LIMIT, true, |f| f.matched() + f.gone() >= n);
    let measured = window.close(&server, fleet.rounds());
    // then until the server saw every bot go (their disconnections cost it too)
    let gone = Instant::now();
    while server.counters().connected > 0 && gone.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let with_disconnections = window.close(&server, fleet.rounds());
    let stats = server.query(server_stats);
    server.stop();
    let committed = stats["matches_committed"].as_u64().unwrap_or(0);
    let per_pair = |cpu: Duration| round3(cpu.as_secs_f64() * 1e3 / committed.max(1) as f64);
    let report = json!({
        "what": "N bots (the client plugin, one app and socket each) connect at once over UDP loopback, queue in one category, commit and disconnect as soon as they are matched; measured from the first connection until every bot is matched (or 60 s); a bot whose match rolled back without re-queueing it joins again",
        "settings": args.settings(n),
        "every_bot_matched": all,
        "bots_matched": fleet.matched(),
        "bots_never_connected": n - fleet.connected(),
        "server_cpu_ms_per_committed_pair": per_pair(measured.server_cpu),
        "server_cpu_ms_per_committed_pair_until_every_bot_disconnected": per_pair(with_disconnections.server_cpu),
        "every_bot_disconnected_after_s": round3(with_disconnections.wall.as_secs_f64()),
        "bot_wait_ms": fleet.waits(),
        "udp": measured.udp_json(n as u64),
    });
    let report = merge(report, client_rounds(args, &measured));
    merge(merge(report, measured.json()), stats)
}

/// What an idle client says: hello, then a ticket in its own category; it answers health
/// pings (none should come).
fn idle_script() -> Script {
    let encode = |m: &AtomicClientMessage| codec::encode(m);
    Script {
        channel: AtomicChannel::default().id,
        greet: Box::new(move |i| {
            let hello = AtomicClientMessage::Hello {
                protocol_version: ATOMIC_PROTOCOL_VERSION,
                config_fingerprint: 0,
            };
            let join = AtomicClientMessage::JoinQueue {
                category: format!("idle-{i}"),
            };
            vec![encode(&hello), encode(&join)]
        }),
        answer: Box::new(move |bytes| match codec::decode(bytes).ok()? {
            AtomicServerMessage::Ping { nonce } => {
                Some(encode(&AtomicClientMessage::Pong { nonce }))
            }
            _ => None,
        }),
    }
}

/// `idle`: N players connected and queued, each in its own category (nobody is matched),
/// measured for `--seconds` after all are queued and one more second.
pub fn idle(args: &Args) -> Value {
    let n = args.players_or(1_000);
    let identity = plug::identity();
    let settings = AtomicServerSettings {
        max_categories: n + 16,
        ..default()
    };
    let server = match start(args, &identity, n, settings) {
        Ok(server) => server,
        Err(e) => return e,
    };
    // the server alone first: what its loop costs with nobody connected
    let alone = Window::open(&server, 0);
    std::thread::sleep(Duration::from_secs(2));
    let alone = alone.close(&server, 0);
    let config = AtomicChannel::default().dedicated_connection_config();
    let clients = match raw_clients(&server, &identity, n, config) {
        Ok(clients) => clients,
        Err(e) => return json!({"error": format!("cannot make the clients: {e}")}),
    };
    let mut fleet = RawFleet::new(clients, idle_script(), args.client_hz);
    eprintln!("bench: idle: {n} clients connect and queue");
    let queued = fleet.run_until(SETUP_LIMIT, |_| server.counters().queued >= n as u64);
    fleet.run_until(Duration::from_secs(1), |_| false);
    let players = server.counters().queued;
    eprintln!(
        "bench: idle: {players} queued; measuring {} s",
        args.seconds
    );
    let window = Window::open(&server, fleet.rounds);
    fleet.run_until(Duration::from_secs_f64(args.seconds), |_| false);
    let measured = window.close(&server, fleet.rounds);
    let network = server.query(network_info);
    let buffer = server.query(|app| {
        app.world()
            .get_resource::<plug::ReceiveBuffer>()
            .map(|b| b.0)
    });
    server.stop();
    let player_seconds = players as f64 * measured.wall.as_secs_f64();
    let report = json!({
        "what": "N bare renet + netcode clients (no Bevy app, so that they keep --client-hz in one thread) connected over UDP loopback, each saying hello and queueing alone in its own category so nobody is matched; measured for --seconds, starting 1 s after every client is queued",
        "settings": args.settings(n),
        "every_client_queued": queued,
        "clients_connected": fleet.connected(),
        "clients_gave_up": fleet.gave_up(),
        "players_queued": players,
        "server_cpu_us_per_player_second": round3(measured.server_cpu.as_secs_f64() * 1e6 / player_seconds.max(1e-9)),
        "udp": measured.udp_json(players),
        "renet_network_info_per_connection": network,
        "server_socket_receive_buffer_bytes": buffer,
        "server_alone_2s_cpu_percent_of_a_core": round3(alone.server_cpu.as_secs_f64() * 100.0 / alone.wall.as_secs_f64()),
    });
    let report = merge(report, client_rounds(args, &measured));
    merge(report, measured.json())
}

/// The mean of renet's per-connection network info, from the server's side.
fn network_info(app: &mut App) -> Value {
    let server = app.world().resource::<RenetServer>();
    let infos: Vec<_> = server
        .clients_id_iter()
        .filter_map(|id| server.network_info(id).ok())
        .collect();
    let n = infos.len().max(1) as f64;
    let mean = |f: fn(&bevy_renet::renet::NetworkInfo) -> f64| {
        round3(infos.iter().map(f).sum::<f64>() / n)
    };
    json!({
        "source": "renet's smoothed estimates at the end of the window, averaged over connections",
        "connections": infos.len(),
        "server_bytes_sent_per_s": mean(|i| i.bytes_sent_per_second),
        "server_bytes_received_per_s": mean(|i| i.bytes_received_per_second),
        "rtt_ms": mean(|i| i.rtt * 1e3),
        "packet_loss": mean(|i| i.packet_loss),
    })
}

/// `sustained`: bots rematching (play a moment, leave the lobby, queue again) for
/// `--seconds`, after every bot connected and 2 s of warm-up.
pub fn sustained(args: &Args) -> Value {
    let n = args.players_or(200);
    let identity = plug::identity();
    let server = match start(args, &identity, n, AtomicServerSettings::default()) {
        Ok(server) => server,
        Err(e) => return e,
    };
    let duel = |_| "duel".to_string();
    let mut fleet = match Fleet::new(&server, &identity, n, duel, true, args) {
        Ok(fleet) => fleet,
        Err(e) => return json!({"error": format!("cannot make the bots: {e}")}),
    };
    eprintln!("bench: sustained: {n} bots connect");
    let connected = fleet.run_until(SETUP_LIMIT, false, |f| f.connected() >= n);
    fleet.run_until(Duration::from_secs(2), false, |_| false);
    eprintln!("bench: sustained: measuring {} s", args.seconds);
    let before = server.counters();
    let window = Window::open(&server, fleet.rounds());
    fleet.run_until(Duration::from_secs_f64(args.seconds), false, |_| false);
    let measured = window.close(&server, fleet.rounds());
    let after = server.counters();
    let stats = server.query(server_stats);
    server.stop();
    let commits = after.committed - before.committed;
    let secs = measured.wall.as_secs_f64();
    let report = json!({
        "what": "N bots rematching over UDP loopback (each plays 0.3-1.5 s, leaves the lobby and queues again 0.1-0.8 s later); measured for --seconds after every bot connected and 2 s of warm-up; the rate of commits is bounded by the bots' own pauses",
        "settings": args.settings(n),
        "every_bot_connected": connected,
        "commits_in_window": commits,
        "rollbacks_in_window": after.rolled_back - before.rolled_back,
        "commits_per_s": round3(commits as f64 / secs),
        "server_cpu_ms_per_commit": round3(measured.server_cpu.as_secs_f64() * 1e3 / commits.max(1) as f64),
        "udp": measured.udp_json(n as u64),
        "server_stats_note": "the server's counters and percentiles below cover the whole run (time_to_commit keeps the last 1024 samples)",
    });
    let report = merge(report, client_rounds(args, &measured));
    merge(merge(report, measured.json()), stats)
}
