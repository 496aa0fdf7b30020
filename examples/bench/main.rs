//! The benchmark of issue #10: one command, one JSON report.
//!
//! ```text
//! cargo run --release --example bench -- [--json PATH] [--only NAME,...] [--players N]
//!     [--seconds S] [--server-hz 60] [--client-hz 60] [--frame-queued 100000]
//!     [--frame-matches 10000] [--udp-rcvbuf 4194304]
//! ```
//!
//! Scenarios (each runs in its own child process, so that one's memory and sockets do not
//! touch the next): `burst`, `idle`, `sustained` (bots over UDP loopback against a server
//! in its own thread, whose CPU is that thread's CPU clock), `in_memory` and `frame` (the
//! server plugin over renet's local connections), `latency` (the in-process harness with a
//! 50 ms round trip) and `relay` (the negotiated relay, over local connections and over
//! UDP). See `examples/README.md` for what each measures.
//!
//! Prints one JSON object per scenario on stdout as it finishes and writes the whole
//! report (machine, command, every scenario) to `--json`. Progress goes to stderr. A
//! benchmark, not a test: nothing is asserted; run it on a quiet machine.

#[path = "../common/bot.rs"]
mod bot;
mod checks;
mod fleet;
#[path = "../common/identity.rs"]
mod identity;
mod latency;
mod local;
mod measure;
mod plug;
mod relay;
mod server_thread;
mod stages;
mod udp;
mod window;

use serde_json::{Value, json};

/// Every scenario, in the order they run.
const SCENARIOS: [&str; 7] = [
    "burst",
    "idle",
    "sustained",
    "in_memory",
    "frame",
    "latency",
    "relay",
];

const USAGE: &str = "bench [--json PATH] [--only NAME,...] [--players N] [--seconds S] \
    [--server-hz 60] [--client-hz 60] [--frame-queued 100000] [--frame-matches 10000] \
    [--udp-rcvbuf 4194304] [--netcode] [--wake]";

/// The command line.
#[derive(Debug, Clone)]
pub struct Args {
    pub json: Option<String>,
    pub only: Vec<String>,
    /// Overrides each scenario's own number of players (or clients).
    pub players: Option<usize>,
    pub seconds: f64,
    pub server_hz: f64,
    pub client_hz: f64,
    pub frame_queued: usize,
    pub frame_matches: usize,
    /// The receive buffer of the UDP servers' sockets, in bytes (0: the system's default).
    pub udp_rcvbuf: usize,
    /// The crate's quiet transports on the server and the clients (the default), or
    /// renet_netcode's with `--netcode` (the baseline).
    pub quiet: bool,
    /// `--wake`: the server updates when a datagram arrives (quiet transport only).
    pub wake: bool,
    /// Internal: run this one scenario here and print its JSON.
    child: Option<String>,
}

impl Args {
    /// The number of players of a scenario: `--players`, or the scenario's default.
    pub fn players_or(&self, default: usize) -> usize {
        self.players.unwrap_or(default)
    }

    /// The settings every scenario's report carries.
    pub fn settings(&self, players: usize) -> Value {
        json!({
            "players": players,
            "seconds": self.seconds,
            "server_hz": self.server_hz,
            "client_hz": self.client_hz,
            "udp_rcvbuf_requested": self.udp_rcvbuf,
        })
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        json: None,
        only: Vec::new(),
        players: None,
        seconds: 10.0,
        server_hz: 60.0,
        client_hz: 60.0,
        frame_queued: 100_000,
        frame_matches: 10_000,
        udp_rcvbuf: 4 << 20,
        child: None,
        quiet: true,
        wake: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
        }
        match flag.as_str() {
            "--json" => args.json = Some(value()?),
            "--only" => args.only = value()?.split(',').map(|s| s.trim().to_owned()).collect(),
            "--players" => args.players = Some(num(&flag, value()?)?),
            "--seconds" => args.seconds = num(&flag, value()?)?,
            "--server-hz" => args.server_hz = num(&flag, value()?)?,
            "--client-hz" => args.client_hz = num(&flag, value()?)?,
            "--frame-queued" => args.frame_queued = num(&flag, value()?)?,
            "--frame-matches" => args.frame_matches = num(&flag, value()?)?,
            "--udp-rcvbuf" => args.udp_rcvbuf = num(&flag, value()?)?,
            "--child" => args.child = Some(value()?),
            // both recorded in `plug` (every UDP scenario builds its apps there)
            "--quiet" => args.quiet = true,
            "--netcode" => args.quiet = false,
            "--wake" => args.wake = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\nusage: {USAGE}")),
        }
    }
    if let Some(bad) = args.only.iter().find(|n| !SCENARIOS.contains(&n.as_str())) {
        return Err(format!(
            "--only: no scenario {bad}; scenarios: {SCENARIOS:?}"
        ));
    }
    if args.seconds <= 0.0 || args.server_hz <= 0.0 || args.client_hz <= 0.0 {
        return Err("--seconds, --server-hz and --client-hz must be positive".into());
    }
    Ok(args)
}

/// Runs one scenario in this process.
fn run_here(name: &str, args: &Args) -> Value {
    let quietness = checks::Quietness::start();
    let mut report = match name {
        "burst" => udp::burst(args),
        "idle" => udp::idle(args),
        "sustained" => udp::sustained(args),
        "in_memory" => local::in_memory(args),
        "frame" => local::frame(args),
        "latency" => latency::latency(args),
        "relay" => relay::relay(args),
        other => json!({"error": format!("no scenario {other}")}),
    };
    let other_cores = quietness.other_cores();
    let warnings = checks::warnings(&report, args, other_cores);
    let mut head = json!({"scenario": name});
    if let (Some(head), Some(body)) = (head.as_object_mut(), report.as_object_mut()) {
        head.append(body);
        head.insert("machine".into(), measure::machine());
        head.insert("other_processes_cores".into(), json!(other_cores));
        head.insert("warnings".into(), json!(warnings));
    }
    head
}

/// Runs one scenario in a child process (this program again); returns its report.
fn run_child(name: &str) -> Value {
    let mut forwarded: Vec<String> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--json" | "--only" => {
                it.next();
            }
            _ => forwarded.push(flag),
        }
    }
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .args(&forwarded)
        .args(["--child", name])
        .stderr(std::process::Stdio::inherit())
        .output();
    let error = |e: String| json!({"scenario": name, "error": e, "machine": measure::machine()});
    match out {
        Err(e) => error(format!("could not start: {e}")),
        Ok(out) if !out.status.success() => error(format!("exited with {}", out.status)),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            serde_json::from_str(text.trim()).unwrap_or_else(|e| error(format!("bad JSON: {e}")))
        }
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("bench: {e}");
        std::process::exit(2);
    });
    plug::choose(args.quiet, args.wake);
    if let Some(name) = &args.child {
        println!("{}", run_here(name, &args));
        return;
    }
    let selected: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s))
        .collect();
    let mut scenarios = Vec::new();
    for name in selected {
        eprintln!("bench: {name}...");
        let report = run_child(name);
        println!("{report}");
        scenarios.push(report);
    }
    if let Some(path) = &args.json {
        let command: Vec<String> = std::env::args().skip(1).collect();
        let all = json!({
            "command": format!("cargo run --release --example bench -- {}", command.join(" ")),
            "machine": measure::machine(),
            "transport": plug::transport(),
            "server_loop": plug::server_loop_name(),
            "scenarios": scenarios,
        });
        std::fs::write(path, format!("{all:#}\n")).unwrap_or_else(|e| {
            eprintln!("bench: cannot write {path}: {e}");
            std::process::exit(1);
        });
    }
}
