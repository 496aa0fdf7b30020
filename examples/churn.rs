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

const STEP: Duration = Duration::from_millis(16);

struct Args {
    seconds: u64,
    mode: String,
    per_frame: usize,
    life: usize,
    json: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 60,
        mode: "both".into(),
        per_frame: 20,
        life: 30,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value().parse().expect("--seconds N"),
            "--mode" => args.mode = value(),
            "--per-frame" => args.per_frame = value().parse().expect("--per-frame N"),
            "--life" => args.life = value().parse().expect("--life FRAMES"),
            "--json" => args.json = Some(value()),
            other => panic!("unknown flag {other}; see examples/README.md"),
        }
    }
    args
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
    /// The server's counters, as JSON fields.
    fn counters(&self, server: &App) -> String;
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
    fn counters(&self, server: &App) -> String {
        let stats = server.world().resource::<AtomicServerStats>();
        let state = server.world().resource::<AtomicServerState>();
        format!(
            "\"matches_committed\":{},\"matches_rolled_back\":{},\"players_queued\":{},\"categories_open\":{},\"lobbies_open\":{}",
            stats.matches_committed,
            stats.matches_rolled_back,
            stats.total_queued(),
            state.queue().categories(),
            stats.lobbies_open,
        )
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
    fn counters(&self, relay: &App) -> String {
        let state = relay.world().resource::<NegotiatedRelayState>();
        let stats = state.stats();
        format!(
            "\"facts_stored\":{},\"facts_expired\":{},\"facts_held\":{},\"departed_held\":{},\"watching\":{}",
            stats.facts_stored,
            stats.facts_expired,
            state.store().len(),
            state.core().departed().len(),
            state.core().watching(),
        )
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
    format!(
        "{{\"mode\":\"{}\",\"seconds\":{},\"connections\":{},\"frames\":{frame},\
         \"live_at_end\":{},\"rss_after_warmup_kb\":{start},\"rss_end_kb\":{end},\
         \"rss_peak_kb\":{},\"rss_growth_percent\":{:.1},{}}}",
        mode.name(),
        args.seconds,
        next_id - 1,
        live.len(),
        measure::status_kb("VmHWM:"),
        (end as f64 - start as f64) * 100.0 / start.max(1) as f64,
        mode.counters(&app),
    )
}

/// Runs this program again for one mode (each mode's memory measured in its own
/// process); returns its report line.
fn run_child(mode: &str) -> String {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--mode") {
        args.drain(i..(i + 2).min(args.len()));
    }
    if let Some(i) = args.iter().position(|a| a == "--json") {
        args.drain(i..(i + 2).min(args.len()));
    }
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .args(&args)
        .args(["--mode", mode])
        .output()
        .expect("run the churn for one mode");
    assert!(out.status.success(), "{mode} churn failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn main() {
    let args = parse_args();
    let lines = match args.mode.as_str() {
        "atomic" => vec![churn(&mut Atomic, &args)],
        "negotiated" => vec![churn(&mut Negotiated, &args)],
        "both" => vec![run_child("atomic"), run_child("negotiated")],
        other => panic!("--mode atomic|negotiated|both, not {other}"),
    };
    for line in &lines {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, lines.join("\n") + "\n").expect("write --json");
    }
}
