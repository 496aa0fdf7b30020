//! Churn benchmark: connections with fresh ids connect, join a queue (atomic) or post a
//! request (negotiated), and disconnect, for `--seconds` of wall-clock time each. The
//! server and the relay run their real plugins over renet's local connections (no
//! sockets, no crypto), on manual time (16 ms a frame), as fast as the machine goes.
//!
//! Prints one JSON object per mode: connections made, frames, and the process's resident
//! memory (VmRSS) after the warm-up (the first quarter of the run: the relay holds a
//! request for up to three 2 s frames, so its store is full by then), at the end, and its
//! peak (VmHWM). Memory that stays flat while ids keep coming is the point: every
//! per-connection and per-id structure must be bounded or forgotten.
//!
//! ```text
//! cargo run --release --example churn -- [--seconds 60] [--mode atomic|negotiated|both]
//!                                        [--per-frame 20] [--life 30] [--json PATH]
//! ```

// resident-memory reading shared with the bench (it uses only `status_kb`)
#[path = "bench/measure.rs"]
#[allow(dead_code)]
mod measure;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::atomic::core::protocol::{AtomicClientMessage, AtomicServerMessage};
use bevy_atomic_matchmaking::negotiated::core::fact::{NegotiatedFact, NegotiatedRequest};
use bevy_atomic_matchmaking::negotiated::core::protocol::NegotiatedClientMessage;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::codec;
use bevy_atomic_matchmaking::testing::harness::server_app;
use bevy_renet::RenetServer;
use bevy_renet::renet::RenetClient;
use clap::Parser;
use serde::Serialize;

const STEP: Duration = Duration::from_millis(16);

/// Memory under churn: fresh ids connect, join a queue (atomic) or post a request
/// (negotiated) and disconnect; prints resident memory per mode as JSON.
#[derive(Parser)]
#[command(name = "churn", args_override_self = true)]
struct Args {
    /// How long each mode churns, in seconds of wall-clock time
    #[arg(long, value_name = "N", default_value_t = 60)]
    seconds: u64,
    /// Which server churns: the atomic server, the negotiated relay, or both (each in its own process)
    #[arg(long, value_name = "MODE", default_value = "both", value_parser = ["atomic", "negotiated", "both"])]
    mode: String,
    /// New connections opened every frame
    #[arg(long, value_name = "N", default_value_t = 20)]
    per_frame: usize,
    /// How many frames each connection lives before it closes
    #[arg(long, value_name = "FRAMES", default_value_t = 30)]
    life: usize,
    /// Also write the JSON lines to this file
    #[arg(long, value_name = "PATH")]
    json: Option<String>,
}

/// One mode's report: one JSON line.
#[derive(Serialize)]
struct Report {
    mode: &'static str,
    seconds: u64,
    connections: u64,
    frames: u64,
    live_at_end: usize,
    rss_after_warmup_kb: u64,
    rss_end_kb: u64,
    rss_peak_kb: u64,
    rss_growth_percent: f64,
    #[serde(flatten)]
    counters: Counters,
}

/// The server's counters at the end of a run (fields of the report).
#[derive(Serialize)]
#[serde(untagged)]
enum Counters {
    Atomic {
        matches_committed: u64,
        matches_rolled_back: u64,
        players_queued: usize,
        categories_open: usize,
        lobbies_open: usize,
    },
    Negotiated {
        facts_stored: u64,
        facts_expired: u64,
        facts_held: usize,
        departed_held: usize,
        watching: usize,
    },
}

/// One churning connection: its id, renet client and the frame it leaves at.
struct Connection {
    id: PlayerId,
    client: RenetClient,
    leaves_at: u64,
}

/// What differs between the modes: the server app and what a connection says.
trait ChurnMode {
    fn name(&self) -> &'static str;
    fn app(&self) -> App;
    fn channel(&self) -> u8;
    /// What a new connection sends.
    fn greet(&mut self, server: &App, id: PlayerId) -> Vec<Vec<u8>>;
    /// What a connection answers to one received message.
    fn answer(&mut self, bytes: &[u8]) -> Option<Vec<u8>>;
    /// The server's counters.
    fn counters(&self, server: &App) -> Counters;
}

struct Atomic;

impl ChurnMode for Atomic {
    fn name(&self) -> &'static str {
        "atomic"
    }
    fn app(&self) -> App {
        let channel = AtomicChannel::default();
        let mut app = server_app(STEP, channel.dedicated_connection_config());
        app.add_plugins(AtomicServerPlugin {
            channel,
            settings: AtomicServerSettings::default(),
        });
        app
    }
    fn channel(&self) -> u8 {
        AtomicChannel::default().id
    }
    fn greet(&mut self, _: &App, id: PlayerId) -> Vec<Vec<u8>> {
        let hello = AtomicClientMessage::Hello {
            protocol_version: ATOMIC_PROTOCOL_VERSION,
            config_fingerprint: 0,
        };
        // many categories, so that per-category state churns too
        let join = AtomicClientMessage::JoinQueue {
            category: format!("c{}", id % 64),
        };
        vec![codec::encode(&hello), codec::encode(&join)]
    }
    /// Even ids play along (their matches commit); odd ids stay silent (theirs roll back).
    fn answer(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let reply = match codec::decode::<AtomicServerMessage>(bytes).ok()? {
            AtomicServerMessage::Ping { nonce } => AtomicClientMessage::Pong { nonce },
            AtomicServerMessage::MatchProposed {
                match_id, lobby_id, ..
            } => AtomicClientMessage::Acknowledge { match_id, lobby_id },
            _ => return None,
        };
        Some(codec::encode(&reply))
    }
    fn counters(&self, server: &App) -> Counters {
        let stats = server.world().resource::<AtomicServerStats>();
        let state = server.world().resource::<AtomicServerState>();
        Counters::Atomic {
            matches_committed: stats.matches_committed,
            matches_rolled_back: stats.matches_rolled_back,
            players_queued: stats.total_queued(),
            categories_open: state.queue().categories(),
            lobbies_open: stats.lobbies_open,
        }
    }
}

struct Negotiated;

impl ChurnMode for Negotiated {
    fn name(&self) -> &'static str {
        "negotiated"
    }
    fn app(&self) -> App {
        let channel = NegotiatedChannel::default();
        let mut app = server_app(STEP, channel.dedicated_connection_config());
        app.add_plugins(NegotiatedRelayPlugin {
            channel,
            settings: NegotiatedRelaySettings {
                frame_duration: Duration::from_secs(2),
                ..default()
            },
        });
        app
    }
    fn channel(&self) -> u8 {
        NegotiatedChannel::default().id
    }
    fn greet(&mut self, relay: &App, id: PlayerId) -> Vec<Vec<u8>> {
        let state = relay.world().resource::<NegotiatedRelayState>();
        let elapsed = relay.world().resource::<Time<Real>>().elapsed();
        let now = state.relay_time(elapsed);
        let frame = state.frames().frame_of(now);
        let category = format!("c{}", id % 64);
        let messages = [
            NegotiatedClientMessage::Hello {
                protocol_version: NEGOTIATED_PROTOCOL_VERSION,
                config_fingerprint: 0,
            },
            NegotiatedClientMessage::Subscribe {
                category: category.clone(),
                frames: vec![frame, frame + 1],
            },
            NegotiatedClientMessage::Post {
                fact: NegotiatedFact::Request(NegotiatedRequest {
                    category,
                    frame,
                    created_us: now.as_micros() as u64,
                }),
            },
        ];
        messages.iter().map(codec::encode).collect()
    }
    fn answer(&mut self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn counters(&self, relay: &App) -> Counters {
        let state = relay.world().resource::<NegotiatedRelayState>();
        let stats = state.stats();
        Counters::Negotiated {
            facts_stored: stats.facts_stored,
            facts_expired: stats.facts_expired,
            facts_held: state.store().len(),
            departed_held: state.core().departed().len(),
            watching: state.core().watching(),
        }
    }
}

/// Moves every connection's packets, lets it answer, and closes those whose time is up.
fn step_connections(
    mode: &mut dyn ChurnMode,
    server: &mut RenetServer,
    mut inbox: Option<Mut<MatchmakingInbox>>,
    live: &mut VecDeque<Connection>,
    frame: u64,
) {
    let channel = mode.channel();
    for c in live.iter_mut() {
        c.client.update(STEP);
        let inbox = inbox.as_deref_mut();
        let _ = matchmaking_process_local_client(server, inbox, c.id, &mut c.client);
        while let Some(bytes) = c.client.receive_message(channel) {
            if c.id % 2 == 0
                && let Some(reply) = mode.answer(&bytes)
            {
                c.client.send_message(channel, reply);
            }
        }
    }
    while live.front().is_some_and(|c| c.leaves_at <= frame) {
        let mut c = live.pop_front().expect("checked");
        server.disconnect_local_client(c.id, &mut c.client);
    }
}

/// Runs one mode for `seconds`; returns its JSON report.
fn churn(mode: &mut dyn ChurnMode, args: &Args) -> String {
    let mut app = mode.app();
    app.finish(); // the loop drives it by update(): finish the plugins' set-up as run() would
    app.cleanup();
    app.update();
    let (mut live, mut next_id, mut frame) = (VecDeque::new(), 1u64, 0u64);
    let started = Instant::now();
    let run = Duration::from_secs(args.seconds);
    let mut warm_rss = None;
    while started.elapsed() < run {
        frame += 1;
        for _ in 0..args.per_frame {
            let id = next_id;
            next_id += 1;
            let greeting = mode.greet(&app, id);
            let mut server = app.world_mut().resource_mut::<RenetServer>();
            let mut client = server.new_local_client(id);
            for bytes in greeting {
                client.send_message(mode.channel(), bytes);
            }
            let leaves_at = frame + args.life as u64;
            live.push_back(Connection {
                id,
                client,
                leaves_at,
            });
        }
        app.world_mut()
            .resource_scope(|world, mut server: Mut<RenetServer>| {
                let inbox = world.get_resource_mut::<MatchmakingInbox>();
                step_connections(mode, &mut server, inbox, &mut live, frame);
            });
        app.update();
        if warm_rss.is_none() && started.elapsed() >= run / 4 {
            warm_rss = Some(measure::status_kb("VmRSS:"));
        }
    }
    let end = measure::status_kb("VmRSS:");
    let start = warm_rss.unwrap_or(end);
    let growth = (end as f64 - start as f64) * 100.0 / start.max(1) as f64;
    let report = Report {
        mode: mode.name(),
        seconds: args.seconds,
        connections: next_id - 1,
        frames: frame,
        live_at_end: live.len(),
        rss_after_warmup_kb: start,
        rss_end_kb: end,
        rss_peak_kb: measure::status_kb("VmHWM:"),
        // one decimal, as the report always had
        rss_growth_percent: format!("{growth:.1}").parse().expect("a formatted f64"),
        counters: mode.counters(&app),
    };
    serde_json::to_string(&report).expect("a report serializes")
}

/// Runs this program again for one mode (each mode's memory measured in its own
/// process); returns its report line.
fn run_child(mode: &str, args: &Args) -> String {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--per-frame", &args.per_frame.to_string()])
        .args(["--life", &args.life.to_string()])
        .args(["--mode", mode])
        .output()
        .expect("run the churn for one mode");
    assert!(out.status.success(), "{mode} churn failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn main() {
    let args = Args::parse();
    let lines = match args.mode.as_str() {
        "atomic" => vec![churn(&mut Atomic, &args)],
        "negotiated" => vec![churn(&mut Negotiated, &args)],
        "both" => vec![run_child("atomic", &args), run_child("negotiated", &args)],
        other => panic!("--mode atomic|negotiated|both, not {other}"),
    };
    for line in &lines {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, lines.join("\n") + "\n").expect("write --json");
    }
}
