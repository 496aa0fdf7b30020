//! Flood: one client sends as fast as renet lets it while bots play, against the same run
//! without it. Everything runs in this process over UDP on 127.0.0.1 with connect tokens
//! (a key in memory), the server at 60 Hz.
//!
//! Prints one JSON line per run (`"run":"baseline"` and `"run":"flood"`): matches
//! committed, the bots' time to commit (the server's `time_to_commit`, p50 and p99) and
//! their wait until matched; for the flood run, the messages the flooder sent, when the
//! server refused it and when it was cut off (both from its first message). Then a verdict
//! line: the flooder must be cut off within 1 s and the bots' time-to-commit p99 must stay
//! under twice the baseline's; exits 1 otherwise.
//!
//! ```text
//! cargo run --release --example flood -- [--bots 200] [--seconds 15] [--json PATH]
//! ```

#[path = "common/bot.rs"]
mod bot;
#[path = "common/identity.rs"]
mod identity;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::atomic::core::protocol::AtomicClientMessage;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::codec;
use bevy_renet::RenetClient;
use bot::{Bot, bot_app, percentile_ms};
use clap::Parser;
use identity::Identity;
use serde_json::json;

const FRAME: Duration = Duration::from_micros(16_667);
/// The flooder's player id (bots are 1000 and up).
const FLOODER: u64 = 1;

/// The rate limit under load: bots play over UDP once alone and once while one client
/// floods the server; prints both runs and a verdict as JSON.
#[derive(Parser)]
#[command(name = "flood", args_override_self = true)]
struct Args {
    /// How many bots play in each run
    #[arg(long, value_name = "N", default_value_t = 200)]
    bots: usize,
    /// How long each run lasts, in seconds
    #[arg(long, value_name = "N", default_value_t = 15)]
    seconds: u64,
    /// Also write both runs and the verdict to this file as one JSON object
    #[arg(long, value_name = "PATH")]
    json: Option<String>,
}

/// The flooding client: hello, then every frame as many join/leave messages as renet
/// takes. It runs in its own thread (a flooder is another machine: its own renet work must
/// not slow the server's loop down).
struct Flooder {
    app: App,
    channel: u8,
    sent: u64,
    first_sent: Option<Instant>,
    cut_off: Option<Instant>,
}

impl Flooder {
    fn new(server: SocketAddr, identity: &Identity) -> Flooder {
        let channel = AtomicChannel::default();
        let mut app = App::new();
        app.add_plugins(MinimalPlugins);
        identity
            .insert_client(
                &mut app,
                server,
                FLOODER,
                channel.dedicated_connection_config(),
            )
            .expect("flooder transport");
        Flooder {
            app,
            channel: channel.id,
            sent: 0,
            first_sent: None,
            cut_off: None,
        }
    }

    /// Floods until `stop`; returns (messages sent, first flood message, cut off).
    fn run(
        server: SocketAddr,
        identity: Identity,
        stop: Arc<AtomicBool>,
    ) -> (u64, Option<Instant>, Option<Instant>) {
        let mut flooder = Flooder::new(server, &identity);
        while !stop.load(Ordering::Relaxed) {
            let tick = Instant::now();
            flooder.update();
            if let Some(rest) = FRAME.checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        (flooder.sent, flooder.first_sent, flooder.cut_off)
    }

    fn update(&mut self) {
        self.app.update();
        let disconnected = identity::client_gave_up(self.app.world()).is_some();
        let mut client = self.app.world_mut().resource_mut::<RenetClient>();
        let disconnected = disconnected || client.is_disconnected();
        if self.first_sent.is_some() && disconnected && self.cut_off.is_none() {
            self.cut_off = Some(Instant::now());
        }
        if !client.is_connected() || self.cut_off.is_some() {
            return;
        }
        if self.sent == 0 {
            let hello = AtomicClientMessage::Hello {
                protocol_version: ATOMIC_PROTOCOL_VERSION,
                config_fingerprint: 0,
            };
            client.send_message(self.channel, codec::encode(&hello));
            self.sent = 1;
            return;
        }
        let join = codec::encode(&AtomicClientMessage::JoinQueue {
            category: "flood".into(),
        });
        let leave = codec::encode(&AtomicClientMessage::LeaveQueue);
        while client.can_send_message(self.channel, join.len()) {
            let message = if self.sent % 2 == 1 { &join } else { &leave };
            client.send_message(self.channel, message.clone());
            self.sent += 1;
            self.first_sent.get_or_insert_with(Instant::now);
        }
    }
}

/// The server app, bound on a free port of 127.0.0.1.
fn server(identity: &Identity, bots: usize) -> (App, SocketAddr) {
    let channel = AtomicChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(AtomicServerPlugin {
            channel,
            ..default()
        });
    let addr = identity
        .insert_server(
            &mut app,
            "127.0.0.1:0".parse().expect("valid"),
            &[],
            bots + 8,
            channel.dedicated_connection_config(),
        )
        .expect("bind a UDP port on 127.0.0.1");
    app.finish(); // the loop drives it by update(): finish the plugins' set-up as run() would
    app.cleanup();
    (app, addr)
}

/// One run: the server and the bots for `seconds`, with a flooder or not.
fn run(args: &Args, flood: bool) -> serde_json::Value {
    let identity = Identity::in_memory();
    let (mut server, addr) = server(&identity, args.bots);
    let mut bots: Vec<App> = (0..args.bots)
        .map(|i| {
            let bot = Bot::new(i, 1000 + i as u64, "duel".into(), None, true, 7 + i as u64);
            bot_app(addr, bot, &identity).expect("bot transport")
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood.then(|| {
        let (stop, identity) = (stop.clone(), identity.clone());
        std::thread::spawn(move || Flooder::run(addr, identity, stop))
    });
    let mut refused_at = None;
    let mut server_frames = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        let tick = Instant::now();
        server.update();
        server_frames.push(tick.elapsed());
        for app in &mut bots {
            app.update();
            app.world_mut().resource_mut::<Bot>().lines.clear();
        }
        let stats = server.world().resource::<AtomicServerStats>();
        if stats.connections_refused > 0 && refused_at.is_none() {
            refused_at = Some(Instant::now());
        }
        if let Some(rest) = FRAME.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flooder = flooder.map(|f| f.join().expect("the flooder thread"));
    let mut report = report(&server, &bots, flooder, refused_at, flood);
    report["server_frame_ms"] = json!({
        "p50": percentile_ms(&mut server_frames, 0.5),
        "p99": percentile_ms(&mut server_frames, 0.99),
        "max": percentile_ms(&mut server_frames, 1.0),
    });
    report
}

fn report(
    server: &App,
    bots: &[App],
    flooder: Option<(u64, Option<Instant>, Option<Instant>)>,
    refused_at: Option<Instant>,
    flood: bool,
) -> serde_json::Value {
    let stats = server.world().resource::<AtomicServerStats>();
    let commit = stats.time_to_commit.percentiles();
    let mut waits: Vec<Duration> = bots
        .iter()
        .flat_map(|a| a.world().resource::<Bot>().waits.clone())
        .collect();
    let since_first = |at: Option<Instant>| {
        let first = flooder.and_then(|f| f.1)?;
        Some(at?.saturating_duration_since(first).as_millis() as u64)
    };
    json!({
        "run": if flood { "flood" } else { "baseline" },
        "bots": bots.len(),
        "matches_committed": stats.matches_committed,
        "matches_rolled_back": stats.matches_rolled_back,
        "time_to_commit_ms": {"p50": commit.p50.as_millis() as u64, "p99": commit.p99.as_millis() as u64},
        "wait_ms": {"p50": percentile_ms(&mut waits, 0.5), "p99": percentile_ms(&mut waits, 0.99)},
        "flooder_messages_sent": flooder.map(|f| f.0),
        "flooder_refused_after_ms": since_first(refused_at),
        "flooder_cut_off_after_ms": since_first(flooder.and_then(|f| f.2)),
        "connections_refused": stats.connections_refused,
    })
}

fn main() {
    let args = Args::parse();
    let baseline = run(&args, false);
    println!("{baseline}");
    let flood = run(&args, true);
    println!("{flood}");
    let p99 = |run: &serde_json::Value| run["time_to_commit_ms"]["p99"].as_u64().unwrap_or(0);
    let cut_off = flood["flooder_cut_off_after_ms"].as_u64();
    let cut_off_ok = cut_off.is_some_and(|ms| ms <= 1_000);
    // a p99 of a few milliseconds is frame quantisation: compare at a 1-frame floor
    let floor = FRAME.as_millis() as u64;
    let p99_ok = p99(&flood).max(floor) < 2 * p99(&baseline).max(floor);
    let verdict = json!({
        "verdict": if cut_off_ok && p99_ok { "pass" } else { "fail" },
        "flooder_cut_off_within_1s": cut_off_ok,
        "time_to_commit_p99_ratio": p99(&flood) as f64 / p99(&baseline).max(1) as f64,
        "p99_under_twice_baseline": p99_ok,
    });
    println!("{verdict}");
    if let Some(path) = &args.json {
        let all = json!({"baseline": baseline, "flood": flood, "verdict": verdict});
        std::fs::write(path, format!("{all:#}\n")).expect("write --json");
    }
    if !(cut_off_ok && p99_ok) {
        std::process::exit(1);
    }
}
