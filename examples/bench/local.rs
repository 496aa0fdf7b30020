//! The scenarios over renet's local connections (no sockets, no crypto): `in_memory` and
//! `frame`. The server is the real plugin in a manual-time app
//! (`shared::harness::server_app`) stepping `1 / --server-hz` per frame; the clients are
//! bare renet clients that speak the wire protocol (like `examples/churn.rs`). Only the
//! server app's `update` is timed: moving packets between the two sides is not counted.

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::atomic::core::protocol::{AtomicClientMessage, AtomicServerMessage};
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::codec;
use bevy_atomic_matchmaking::testing::harness::{server_app, single_threaded};
use bevy_renet::RenetServer;
use bevy_renet::renet::RenetClient;
use serde_json::{Value, json};

use crate::Args;
use crate::measure::{mem_available_bytes, percentiles_ms, round3, rss_bytes, thread_cpu};
use crate::udp::merge;

/// One client on a local connection.
pub struct Raw {
    pub id: PlayerId,
    pub client: RenetClient,
}

/// The matchmaking server plugin in a manual-time app, started (its clock runs).
pub fn local_server(step: Duration, settings: AtomicServerSettings) -> App {
    let channel = AtomicChannel::default();
    let mut app = server_app(step, channel.dedicated_connection_config());
    app.add_plugins(AtomicServerPlugin { channel, settings });
    app.finish(); // the loop drives it by update(): finish the plugins' set-up as run() would
    app.cleanup();
    single_threaded(&mut app);
    app.update();
    app
}

/// Opens local connections for `ids`, each sending `first` (in order).
fn connect(
    app: &mut App,
    ids: std::ops::Range<u64>,
    first: impl Fn(u64) -> Vec<AtomicClientMessage>,
) -> Vec<Raw> {
    let channel = AtomicChannel::default().id;
    let mut server = app.world_mut().resource_mut::<RenetServer>();
    ids.map(|id| {
        let mut client = server.new_local_client(id);
        for message in first(id) {
            client.send_message(channel, codec::encode(&message));
        }
        Raw { id, client }
    })
    .collect()
}

fn hello() -> AtomicClientMessage {
    AtomicClientMessage::Hello {
        protocol_version: ATOMIC_PROTOCOL_VERSION,
        config_fingerprint: 0,
    }
}

/// Moves every client's packets both ways and lets `answer` reply to each message it
/// received.
fn exchange(
    app: &mut App,
    clients: &mut [Raw],
    step: Duration,
    mut answer: impl FnMut(PlayerId, &[u8]) -> Option<AtomicClientMessage>,
) {
    let channel = AtomicChannel::default().id;
    app.world_mut()
        .resource_scope(|world, mut server: Mut<RenetServer>| {
            let mut inbox = world.get_resource_mut::<MatchmakingInbox>();
            for raw in clients.iter_mut() {
                raw.client.update(step);
                let inbox = inbox.as_deref_mut();
                let _ =
                    matchmaking_process_local_client(&mut server, inbox, raw.id, &mut raw.client);
                while let Some(bytes) = raw.client.receive_message(channel) {
                    if let Some(reply) = answer(raw.id, &bytes) {
                        raw.client.send_message(channel, codec::encode(&reply));
                    }
                }
            }
        });
}

/// A client that plays along: queues in `duel` once welcomed, answers pings and proposals,
/// leaves each lobby at once and queues again.
fn play_along(bytes: &[u8]) -> Option<AtomicClientMessage> {
    let queue = || AtomicClientMessage::JoinQueue {
        category: "duel".into(),
    };
    Some(match codec::decode::<AtomicServerMessage>(bytes).ok()? {
        AtomicServerMessage::Welcome { .. } | AtomicServerMessage::LobbyLeft { .. } => queue(),
        AtomicServerMessage::MatchCancelled {
            requeued: false, ..
        } => queue(),
        AtomicServerMessage::Ping { nonce } => AtomicClientMessage::Pong { nonce },
        AtomicServerMessage::MatchProposed {
            match_id, lobby_id, ..
        } => AtomicClientMessage::Acknowledge { match_id, lobby_id },
        AtomicServerMessage::MatchFound { lobby_id, .. } => {
            AtomicClientMessage::LeaveLobby { lobby_id }
        }
        _ => return None,
    })
}

/// Commits per second of server CPU over one-second slices of wall time, to show how much
/// the rate moves within a run.
struct Slices {
    started: Instant,
    cpu: Duration,
    commits_at_start: u64,
    rates: Vec<f64>,
}

impl Slices {
    fn new(commits: u64) -> Self {
        Self {
            started: Instant::now(),
            cpu: Duration::ZERO,
            commits_at_start: commits,
            rates: Vec::new(),
        }
    }

    /// Adds a frame's CPU; closes the slice after a second, given the commits so far.
    fn add(&mut self, cpu: Duration, commits: u64) {
        self.cpu += cpu;
        if self.started.elapsed() >= Duration::from_secs(1) {
            let rate = (commits - self.commits_at_start) as f64 / self.cpu.as_secs_f64().max(1e-9);
            self.rates.push(rate);
            *self = Self {
                rates: std::mem::take(&mut self.rates),
                ..Self::new(commits)
            };
        }
    }

    fn json(&mut self) -> Value {
        self.rates.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i =
                ((q * self.rates.len() as f64).ceil() as usize).clamp(1, self.rates.len().max(1));
            self.rates.get(i - 1).copied().map(round3)
        };
        json!({"slices": self.rates.len(), "min": at(0.0), "median": at(0.5), "max": at(1.0)})
    }
}

/// Runs one server update; returns its CPU and wall time.
fn timed_update(app: &mut App) -> (Duration, Duration) {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    app.update();
    (thread_cpu().saturating_sub(cpu), wall.elapsed())
}

fn stats(app: &App) -> &AtomicServerStats {
    app.world().resource::<AtomicServerStats>()
}

/// `in_memory`: N clients playing along as fast as frames go, for `--seconds` of wall
/// time after 60 warm-up frames; committed pairs per second of server CPU.
pub fn in_memory(args: &Args) -> Value {
    let n = args.players_or(1_000);
    let step = Duration::from_secs_f64(1.0 / args.server_hz);
    let rate_limit = MatchmakingRateLimit {
        messages_per_second: 1_000,
        burst: 1_000,
    };
    let settings = AtomicServerSettings {
        gate: MatchmakingGatePolicy {
            rate_limit,
            ..default()
        },
        ..default()
    };
    let mut app = local_server(step, settings);
    let mut clients = connect(&mut app, 1..n as u64 + 1, |_| vec![hello()]);
    let answer = |_: PlayerId, bytes: &[u8]| play_along(bytes);
    for _ in 0..60 {
        exchange(&mut app, &mut clients, step, answer);
        app.update();
    }
    eprintln!(
        "bench: in_memory: {n} clients; measuring {} s",
        args.seconds
    );
    let before = (
        stats(&app).matches_committed,
        stats(&app).matches_rolled_back,
    );
    let (mut cpu, mut wall, mut frames) = (Duration::ZERO, Duration::ZERO, 0u64);
    let mut slices = Slices::new(stats(&app).matches_committed);
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < args.seconds {
        exchange(&mut app, &mut clients, step, answer);
        let (c, w) = timed_update(&mut app);
        (cpu, wall, frames) = (cpu + c, wall + w, frames + 1);
        slices.add(c, stats(&app).matches_committed);
    }
    let committed = stats(&app).matches_committed - before.0;
    let rolled_back = stats(&app).matches_rolled_back - before.1;
    let commit = stats(&app).time_to_commit.percentiles();
    json!({
        "what": "the server plugin over renet local connections (no sockets, no crypto), manual time at 1/server_hz per frame; N clients queue in one category, answer pings and proposals, leave each lobby at once and queue again; only the server app's update is timed (the packet exchange is not); the rate limit is raised to 1000 messages/s (clients answer every frame of manual time)",
        "settings": args.settings(n),
        "frames": frames,
        "matches_committed": committed,
        "matches_rolled_back": rolled_back,
        "healthy_players_dropped": stats(&app).healthy_players_dropped,
        "server_update_cpu_s": round3(cpu.as_secs_f64()),
        "server_update_wall_s": round3(wall.as_secs_f64()),
        "committed_pairs_per_server_cpu_second": round3(committed as f64 / cpu.as_secs_f64().max(1e-9)),
        "server_cpu_us_per_commit": round3(cpu.as_secs_f64() * 1e6 / committed.max(1) as f64),
        "committed_pairs_per_server_cpu_second_by_1s_slice": slices.json(),
        "commits_per_frame": round3(committed as f64 / frames.max(1) as f64),
        "time_to_commit_frames_p50": round3(commit.p50.as_secs_f64() / step.as_secs_f64()),
    })
}

/// Frames until `done` holds (at most `max`), exchanging packets with silent clients;
/// returns whether `done` held.
fn settle(
    app: &mut App,
    clients: &mut [Raw],
    step: Duration,
    max: usize,
    done: impl Fn(&App) -> bool,
) -> bool {
    for _ in 0..max {
        if done(app) {
            return true;
        }
        exchange(app, clients, step, |_, _| None);
        app.update();
    }
    done(app)
}

/// Sets how often the server app's inbox reads every connection anyway.
fn set_sweep(app: &mut App, interval: Option<Duration>) {
    app.world_mut()
        .resource_mut::<MatchmakingInbox>()
        .sweep_interval = interval;
}

/// How many queued players fit in memory, given what one connection cost so far.
fn fitting(wanted: usize, bytes_per_connection: f64) -> (usize, Option<String>) {
    let reserve = 3u64 << 30;
    let available = mem_available_bytes().saturating_sub(reserve) as f64;
    // the connection, its ticket and the allocator's slack: twice the connection
    let fits = (available / (2.0 * bytes_per_connection.max(1.0))) as usize;
    match fits < wanted {
        true => (
            fits,
            Some(format!(
                "reduced from {wanted}: {:.0} MB available (keeping 3 GB free), about {:.0} bytes per connection measured",
                available / 1e6,
                bytes_per_connection
            )),
        ),
        false => (wanted, None),
    }
}

/// `frame`: one full server frame with many queued players and many matches in flight.
pub fn frame(args: &Args) -> Value {
    let step = Duration::from_secs_f64(1.0 / args.server_hz);
    let matches = args.frame_matches;
    let settings = AtomicServerSettings {
        // the matches in flight wait for health pongs that never come
        commit: AtomicCommitTimings {
            ping_timeout: Duration::from_secs(3_600),
            ..default()
        },
        max_categories: args.frame_queued / 15 + 64,
        queue_capacity: 2 * matches + 64,
        ..default()
    };
    let mut app = local_server(step, settings);
    crate::stages::instrument(&mut app);
    let rss_start = rss_bytes();
    let ids = 1..2 * matches as u64 + 1;
    let join = |_| {
        vec![
            hello(),
            AtomicClientMessage::JoinQueue {
                category: "duel".into(),
            },
        ]
    };
    let mut clients = connect(&mut app, ids, join);
    eprintln!(
        "bench: frame: {} clients form {matches} matches",
        clients.len()
    );
    let formed = settle(&mut app, &mut clients, step, 50, |a| {
        stats(a).matches_in_flight >= matches
    });
    settle(&mut app, &mut clients, step, 10, |_| false);
    let per_connection =
        (rss_bytes().saturating_sub(rss_start)) as f64 / clients.len().max(1) as f64;
    let (queued, reduced) = fitting(args.frame_queued, per_connection);
    // from now on groups of 16: the queued players wait 15 to a category and never match
    app.world_mut()
        .resource_mut::<AtomicServerSettings>()
        .players_per_match = 16;
    app.update();
    let first = 2 * matches as u64 + 1;
    let queued_ids = first..first + queued as u64;
    eprintln!("bench: frame: {queued} more clients connect");
    let rss_before_connections = rss_bytes();
    let mut waiting = connect(&mut app, queued_ids.clone(), |_| vec![hello()]);
    settle(&mut app, &mut waiting, step, 10, |_| false);
    let rss_connected = rss_bytes();
    let channel = AtomicChannel::default().id;
    for raw in &mut waiting {
        let category = format!("q{}", (raw.id - first) / 15);
        raw.client.send_message(
            channel,
            codec::encode(&AtomicClientMessage::JoinQueue { category }),
        );
    }
    let all_queued = settle(&mut app, &mut waiting, step, 50, |a| {
        stats(a).total_queued() >= queued
    });
    settle(&mut app, &mut waiting, step, 10, |_| false);
    let rss_queued = rss_bytes();
    clients.append(&mut waiting);
    let timed = time_frames(&mut app, &mut clients, step);
    let report = json!({
        "what": "one full server frame (renet's update over every local connection, the plugin's receive, form and advance systems, the send) with Q players queued and M matches in flight; the matches wait in the health check for pongs that never come (ping timeout raised to 1 h); the queued players wait 15 to a category under players_per_match 16 so none is matched; the inbox's once-a-second sweep of every connection is off for the 50 frames (every packet is reported) and timed apart (frame_with_inbox_sweep_cpu_ms, 3 frames); memory per ticket = VmRSS growth while the connected players joined the queue / tickets",
        "settings": args.settings(queued + 2 * matches),
        "queued_requested": args.frame_queued,
        "queued_reduced": reduced,
        "every_match_formed": formed,
        "every_player_queued": all_queued,
    });
    let state = app.world().resource::<AtomicServerState>();
    let result = json!({
        "players_queued": stats(&app).total_queued(),
        "categories": state.queue().categories(),
        "matches_in_flight": stats(&app).matches_in_flight,
        "frame_wall_ms": timed.wall,
        "frame_cpu_ms": timed.cpu,
        "frame_cpu_ms_by_stage": timed.by_stage,
        "frame_with_inbox_sweep_cpu_ms": timed.with_sweep,
        "bytes_per_queued_ticket": round3((rss_queued.saturating_sub(rss_connected)) as f64 / queued.max(1) as f64),
        "bytes_per_local_connection_both_sides": round3((rss_connected.saturating_sub(rss_before_connections)) as f64 / queued.max(1) as f64),
        "rss_mb": {"start": rss_start >> 20, "matches_formed": rss_before_connections >> 20, "connected": rss_connected >> 20, "queued": rss_queued >> 20},
        "memory_note": "resident memory (VmRSS) deltas include the allocator's retained free memory; the connection figure covers both the server's and the client's renet state of a local connection",
    });
    merge(report, result)
}

/// The timed frames of `frame`: percentiles of their wall and CPU time, by stage, and of
/// frames with an inbox sweep.
struct TimedFrames {
    wall: Value,
    cpu: Value,
    by_stage: Value,
    with_sweep: Value,
}

/// 50 frames without the inbox's sweep, then 3 with one each.
fn time_frames(app: &mut App, clients: &mut [Raw], step: Duration) -> TimedFrames {
    eprintln!("bench: frame: timing 50 frames");
    // every packet here is reported: the inbox's sweep (every connection read once a
    // second, a safety net) is timed apart below
    set_sweep(app, None);
    crate::stages::reset(app);
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        exchange(app, clients, step, |_, _| None);
        let (cpu, wall) = timed_update(app);
        walls.push(wall);
        cpus.push(cpu);
    }
    let by_stage = crate::stages::report(app);
    set_sweep(app, Some(Duration::ZERO));
    let mut sweeps: Vec<Duration> = (0..3)
        .map(|_| {
            exchange(app, clients, step, |_, _| None);
            timed_update(app).0
        })
        .collect();
    TimedFrames {
        wall: percentiles_ms(&mut walls),
        cpu: percentiles_ms(&mut cpus),
        by_stage,
        with_sweep: percentiles_ms(&mut sweeps),
    }
}
