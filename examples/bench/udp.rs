//! The scenarios over UDP loopback: `burst`, `idle` and `sustained`. The server runs in
//! its own thread ([`ServerThread`]); the bots (`examples/common/bot.rs`, each its own
//! app and UDP socket, connecting with a token minted from a key made in memory) run in
//! the main thread, `--client-hz` rounds a second at most.

use std::io;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_renet::RenetServer;
use serde_json::{Value, json};

use crate::Args;
use crate::bot::{Bot, percentile_ms};
use crate::identity::Identity;
use crate::measure::{UdpCounters, ms, process_cpu, round3};
use crate::plug;
use crate::server_thread::{ServerThread, matchmaking_counters};

/// How long `burst` waits for every bot to be matched.
const BURST_LIMIT: Duration = Duration::from_secs(60);
/// How long `idle` and `sustained` wait for their bots to connect or queue.
const SETUP_LIMIT: Duration = Duration::from_secs(60);

/// The bots of a scenario, updated in rounds from the main thread.
pub struct Fleet {
    pub apps: Vec<App>,
    /// Bots still updated (not left, not given up).
    active: Vec<bool>,
    round: Duration,
    next: Instant,
    pub rounds: u64,
}

impl Fleet {
    /// `n` bots of `server`, bot `i` queueing in `category(i)`.
    pub fn new(
        server: &ServerThread,
        identity: &Identity,
        n: usize,
        category: impl Fn(usize) -> String,
        rematch: bool,
        client_hz: f64,
    ) -> io::Result<Self> {
        let mut apps = Vec::with_capacity(n);
        for i in 0..n {
            let bot = Bot::new(i, 1000 + i as u64, category(i), None, rematch, 7 + i as u64);
            apps.push(plug::bot(server.addr, bot, identity)?);
        }
        Ok(Self {
            active: vec![true; n],
            apps,
            round: Duration::from_secs_f64(1.0 / client_hz),
            next: Instant::now(),
            rounds: 0,
        })
    }

    /// One round: every active bot updates once; with `leave_when_matched`, a bot that
    /// found a match disconnects and is not updated again. Then sleeps out the round.
    pub fn round(&mut self, leave_when_matched: bool) {
        for (app, active) in self.apps.iter_mut().zip(&mut self.active) {
            if !*active {
                continue;
            }
            app.update();
            let mut bot = app.world_mut().resource_mut::<Bot>();
            bot.lines.clear();
            if bot.gone {
                *active = false;
            } else if leave_when_matched && bot.matched > 0 {
                *active = false;
                plug::disconnect(app);
            }
        }
        self.rounds += 1;
        self.next += self.round;
        let now = Instant::now();
        match self.next.checked_duration_since(now) {
            Some(rest) => std::thread::sleep(rest),
            None => self.next = now,
        }
    }

    /// Rounds until `done` holds or `limit` passed; returns whether `done` held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        leave_when_matched: bool,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if done(self) {
                return true;
            }
            self.round(leave_when_matched);
        }
        done(self)
    }

    fn bot(&self, i: usize) -> &Bot {
        self.apps[i].world().resource::<Bot>()
    }

    /// Bots that found at least one match.
    pub fn matched(&self) -> usize {
        (0..self.apps.len())
            .filter(|i| self.bot(*i).matched > 0)
            .count()
    }

    /// Bots whose connection opened.
    pub fn connected(&self) -> usize {
        (0..self.apps.len())
            .filter(|i| self.bot(*i).connected_once)
            .count()
    }

    /// Bots that gave up (their connection never opened, or closed).
    pub fn gone(&self) -> usize {
        (0..self.apps.len()).filter(|i| self.bot(*i).gone).count()
    }

    /// The bots' own waits (join to match found), p50 and p99 in ms.
    pub fn waits(&self) -> Value {
        let mut waits: Vec<Duration> = (0..self.apps.len())
            .flat_map(|i| self.bot(i).waits.clone())
            .collect();
        json!({
            "count": waits.len(),
            "p50": percentile_ms(&mut waits, 0.5),
            "p99": percentile_ms(&mut waits, 0.99),
        })
    }
}

/// CPU and clocks at the start of a measured window.
pub struct Window {
    started: Instant,
    server_cpu: Duration,
    process_cpu: Duration,
    frames: u64,
    udp: UdpCounters,
    rounds: u64,
}

/// What a window measured.
pub struct Measured {
    pub wall: Duration,
    pub server_cpu: Duration,
    pub process_cpu: Duration,
    pub frames: u64,
    pub udp: UdpCounters,
    pub rounds: u64,
}

impl Window {
    /// Opens a window now; `rounds` is the client rounds run so far.
    pub fn open(server: &ServerThread, rounds: u64) -> Self {
        Self {
            started: Instant::now(),
            server_cpu: server.cpu(),
            process_cpu: process_cpu(),
            frames: server.frames(),
            udp: UdpCounters::read(),
            rounds,
        }
    }

    /// What the window measured; `rounds` is the client rounds run so far.
    pub fn close(&self, server: &ServerThread, rounds: u64) -> Measured {
        Measured {
            wall: self.started.elapsed(),
            server_cpu: server.cpu().saturating_sub(self.server_cpu),
            process_cpu: process_cpu().saturating_sub(self.process_cpu),
            frames: server.frames() - self.frames,
            udp: self.udp.delta(&UdpCounters::read()),
            rounds: rounds - self.rounds,
        }
    }
}

impl Measured {
    /// The window's clocks and rates, as report fields.
    pub fn json(&self) -> Value {
        let secs = self.wall.as_secs_f64();
        json!({
            "window_s": round3(secs),
            "server_cpu_s": round3(self.server_cpu.as_secs_f64()),
            "server_cpu_percent_of_a_core": round3(self.server_cpu.as_secs_f64() * 100.0 / secs),
            "server_frames_per_s": round3(self.frames as f64 / secs),
            "client_rounds_per_s": round3(self.rounds as f64 / secs),
            "process_cpu_s": round3(self.process_cpu.as_secs_f64()),
        })
    }
}

/// The server's own statistics, as report fields.
pub fn server_stats(app: &mut App) -> Value {
    let stats = app.world().resource::<MatchmakingServerStats>();
    let commit = stats.time_to_commit.percentiles();
    let queue = stats.time_in_queue.percentiles();
    json!({
        "matches_formed": stats.matches_formed,
        "matches_committed": stats.matches_committed,
        "matches_rolled_back": stats.matches_rolled_back,
        "rollbacks_by_status": stats.rollbacks_by_status,
        "players_requeued": stats.players_requeued,
        "healthy_players_dropped": stats.healthy_players_dropped,
        "connections_refused": stats.connections_refused,
        "time_to_commit_ms": {"samples": commit.count, "p50": ms(commit.p50), "p90": ms(commit.p90), "p99": ms(commit.p99), "max": ms(commit.max)},
        "time_in_queue_ms": {"p50": ms(queue.p50), "p99": ms(queue.p99)},
    })
}

/// Starts the server for `players` with these settings, or says why not.
fn start(args: &Args, identity: &Identity, players: usize, settings: MatchmakingServerSettings) -> Result<ServerThread, Value> {
    let identity = identity.clone();
    let build = move || plug::server_app(&identity, players, settings);
    ServerThread::spawn(args.server_hz, build, matchmaking_counters)
        .map_err(|e| json!({"error": format!("cannot start the server: {e}")}))
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
    let identity = Identity::in_memory();
    let server = match start(args, &identity, n, MatchmakingServerSettings::default()) {
        Ok(server) => server,
        Err(e) => return e,
    };
    let mut fleet = match Fleet::new(&server, &identity, n, |_| "duel".into(), false, args.client_hz) {
        Ok(fleet) => fleet,
        Err(e) => return json!({"error": format!("cannot make the bots: {e}")}),
    };
    eprintln!("bench: burst: {n} bots connect");
    let window = Window::open(&server, fleet.rounds);
    let all = fleet.run_until(BURST_LIMIT, true, |f| f.matched() + f.gone() >= n);
    let measured = window.close(&server, fleet.rounds);
    let stats = server.query(server_stats);
    server.stop();
    let committed = stats["matches_committed"].as_u64().unwrap_or(0);
    let per_pair = measured.server_cpu.as_secs_f64() * 1e3 / committed.max(1) as f64;
    let report = json!({
        "what": "N bots connect at once over UDP loopback, queue in one category, commit and disconnect as soon as they are matched; measured from the first connection until every bot is matched (or 60 s)",
        "settings": args.settings(n),
        "every_bot_matched": all,
        "bots_matched": fleet.matched(),
        "bots_never_connected": n - fleet.connected(),
        "server_cpu_ms_per_committed_pair": round3(per_pair),
        "bot_wait_ms": fleet.waits(),
    });
    merge(merge(report, measured.json()), stats)
}

/// `idle`: N players connected and queued, each in its own category (nobody is matched),
/// measured for `--seconds` after all are queued and one more second.
pub fn idle(args: &Args) -> Value {
    let n = args.players_or(1_000);
    let identity = Identity::in_memory();
    let settings = MatchmakingServerSettings {
        max_categories: n + 16,
        ..default()
    };
    let server = match start(args, &identity, n, settings) {
        Ok(server) => server,
        Err(e) => return e,
    };
    let category = |i| format!("idle-{i}");
    let mut fleet = match Fleet::new(&server, &identity, n, category, false, args.client_hz) {
        Ok(fleet) => fleet,
        Err(e) => return json!({"error": format!("cannot make the bots: {e}")}),
    };
    eprintln!("bench: idle: {n} bots connect and queue");
    let queued = fleet.run_until(SETUP_LIMIT, false, |_| server.counters().queued >= n as u64);
    fleet.run_until(Duration::from_secs(1), false, |_| false);
    let players = server.counters().queued;
    eprintln!("bench: idle: {players} queued; measuring {} s", args.seconds);
    let window = Window::open(&server, fleet.rounds);
    fleet.run_until(Duration::from_secs_f64(args.seconds), false, |_| false);
    let measured = window.close(&server, fleet.rounds);
    let network = server.query(network_info);
    server.stop();
    let secs = measured.wall.as_secs_f64();
    let player_seconds = players as f64 * secs;
    let udp = measured.udp;
    let per_player = |count: u64| round3(count as f64 / player_seconds.max(1e-9));
    let report = json!({
        "what": "N bots connected over UDP loopback, each queued alone in its own category so nobody is matched; measured for --seconds, starting 1 s after every bot is queued",
        "settings": args.settings(n),
        "every_bot_queued": queued,
        "players_queued": players,
        "server_cpu_us_per_player_second": round3(measured.server_cpu.as_secs_f64() * 1e6 / player_seconds.max(1e-9)),
        "udp": {
            "source": "/proc/net/snmp Udp deltas over the window (the whole network namespace)",
            "datagrams_sent_total": udp.out_datagrams,
            "datagrams_received_total": udp.in_datagrams,
            "receive_buffer_errors": udp.rcvbuf_errors,
            "send_buffer_errors": udp.sndbuf_errors,
            "datagrams_per_player_second_both_ways": per_player(udp.out_datagrams),
            "datagrams_per_player_second_each_way_estimated": per_player(udp.out_datagrams / 2),
            "split": "estimated: on loopback every datagram is counted once out and once in, and the counters do not tell the server's from the bots'; each way = total / 2",
        },
        "renet_network_info_per_connection": network,
    });
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
        "connections": infos.len(),
        "server_bytes_sent_per_s": mean(|i| i.bytes_sent_per_second),
        "server_bytes_received_per_s": mean(|i| i.bytes_received_per_second),
        "rtt_ms": mean(|i| i.rtt),
        "packet_loss": mean(|i| i.packet_loss),
    })
}

/// `sustained`: bots rematching (play a moment, leave the lobby, queue again) for
/// `--seconds`, after every bot connected and 2 s of warm-up.
pub fn sustained(args: &Args) -> Value {
    let n = args.players_or(200);
    let identity = Identity::in_memory();
    let server = match start(args, &identity, n, MatchmakingServerSettings::default()) {
        Ok(server) => server,
        Err(e) => return e,
    };
    let mut fleet = match Fleet::new(&server, &identity, n, |_| "duel".into(), true, args.client_hz) {
        Ok(fleet) => fleet,
        Err(e) => return json!({"error": format!("cannot make the bots: {e}")}),
    };
    eprintln!("bench: sustained: {n} bots connect");
    let connected = fleet.run_until(SETUP_LIMIT, false, |f| f.connected() >= n);
    fleet.run_until(Duration::from_secs(2), false, |_| false);
    eprintln!("bench: sustained: measuring {} s", args.seconds);
    let before = server.counters();
    let window = Window::open(&server, fleet.rounds);
    fleet.run_until(Duration::from_secs_f64(args.seconds), false, |_| false);
    let measured = window.close(&server, fleet.rounds);
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
        "server_stats_note": "the counters and percentiles below are the server's, over the whole run (time_to_commit keeps the last 1024 samples)",
    });
    merge(merge(report, measured.json()), stats)
}
