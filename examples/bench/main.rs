//! The benchmark of issue #10: one command, one JSON report.
//!
//! ```text
//! cargo run --release --example bench -- [--json PATH] [--only NAME,...] [--players N]
//!     [--seconds S] [--server-hz 60] [--client-hz 60] [--client-threads N]
//!     [--client-idle-ms 100] [--frame-queued 100000] [--frame-matches 10000]
//!     [--udp-rcvbuf 4194304]
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
//! benchmark, not a test: nothing is asserted but the clients' pace (a scenario whose
//! clients reached less than 90 % of `--client-hz` fails: exit code 3, after the report);
//! run it on a quiet machine.

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

use clap::Parser;
use identity::TransportArgs;
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

/// The benchmark of issue #10: every scenario in its own child process, one JSON object
/// per scenario on stdout, the whole report in --json.
#[derive(Parser, Debug, Clone)]
#[command(name = "bench", args_override_self = true)]
pub struct Args {
    /// Write the whole report (the command, the machine, every scenario) to this file
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// Run only these scenarios (comma-separated: burst, idle, sustained, in_memory, frame, latency, relay)
    #[arg(long, value_name = "NAME,...", value_delimiter = ',', value_parser = scenario)]
    pub only: Vec<String>,
    /// Replace each scenario's own number of players (or clients)
    #[arg(long, value_name = "N")]
    pub players: Option<usize>,
    /// The measured window of idle, sustained, in_memory and relay, in seconds
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = positive)]
    pub seconds: f64,
    /// The server's update rate, in updates per second
    #[arg(long, value_name = "HZ", default_value_t = 60.0, value_parser = positive)]
    pub server_hz: f64,
    /// The rounds a second the clients aim for (each thread's; a run that reaches less than 90 % fails)
    #[arg(long, value_name = "HZ", default_value_t = 60.0, value_parser = positive)]
    pub client_hz: f64,
    /// Threads that update the bots of burst and sustained [default: the machine's cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub client_threads: Option<u64>,
    /// A bot with nothing to do is updated at least this often, in ms (0: every round)
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub client_idle_ms: u64,
    /// The frame scenario: players queued
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub frame_queued: usize,
    /// The frame scenario: matches in flight
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub frame_matches: usize,
    /// The receive buffer of the UDP servers' sockets, in bytes (0: the system's default)
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub udp_rcvbuf: usize,
    // --netcode (renet_netcode's transports, the baseline) or the quiet ones (the default)
    #[command(flatten)]
    pub transport: TransportArgs,
    /// The server updates when a datagram arrives (at most at --server-hz, at least every 50 ms; quiet transport only)
    #[arg(long)]
    pub wake: bool,
    /// Internal: run this one scenario here and print its JSON
    #[arg(long, value_name = "NAME", hide = true)]
    child: Option<String>,
}

fn scenario(v: &str) -> Result<String, String> {
    let name = v.trim();
    if !SCENARIOS.contains(&name) {
        return Err(format!("no scenario {name}; scenarios: {SCENARIOS:?}"));
    }
    Ok(name.to_owned())
}

fn positive(v: &str) -> Result<f64, String> {
    let x: f64 = v.parse().map_err(|_| format!("not a number: {v}"))?;
    if x <= 0.0 {
        return Err("must be positive".into());
    }
    Ok(x)
}

impl Args {
    /// The number of players of a scenario: `--players`, or the scenario's default.
    pub fn players_or(&self, default: usize) -> usize {
        self.players.unwrap_or(default)
    }

    /// `--client-threads`, or the machine's cores.
    pub fn client_threads(&self) -> usize {
        let cores = || std::thread::available_parallelism().map_or(1, |n| n.get());
        self.client_threads.map_or_else(cores, |n| n as usize)
    }

    /// `--client-idle-ms`.
    pub fn client_idle(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.client_idle_ms)
    }

    /// The flags a scenario's child process gets: every setting, not --json or --only.
    fn child_args(&self, name: &str) -> Vec<String> {
        let mut args = vec![
            format!("--seconds={}", self.seconds),
            format!("--server-hz={}", self.server_hz),
            format!("--client-hz={}", self.client_hz),
            format!("--client-threads={}", self.client_threads()),
            format!("--client-idle-ms={}", self.client_idle_ms),
            format!("--frame-queued={}", self.frame_queued),
            format!("--frame-matches={}", self.frame_matches),
            format!("--udp-rcvbuf={}", self.udp_rcvbuf),
            format!("--child={name}"),
        ];
        if let Some(players) = self.players {
            args.push(format!("--players={players}"));
        }
        if !self.transport.quiet() {
            args.push("--netcode".into());
        }
        if self.wake {
            args.push("--wake".into());
        }
        args
    }

    /// The settings every scenario's report carries.
    pub fn settings(&self, players: usize) -> Value {
        json!({
            "players": players,
            "seconds": self.seconds,
            "server_hz": self.server_hz,
            "client_hz": self.client_hz,
            "client_threads": self.client_threads(),
            "client_idle_ms": self.client_idle_ms,
            "udp_rcvbuf_requested": self.udp_rcvbuf,
        })
    }
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
    let failures = checks::failures(&report);
    let mut head = json!({"scenario": name});
    if let (Some(head), Some(body)) = (head.as_object_mut(), report.as_object_mut()) {
        head.append(body);
        head.insert("machine".into(), measure::machine());
        head.insert("other_processes_cores".into(), json!(other_cores));
        head.insert("warnings".into(), json!(warnings));
        head.insert("failures".into(), json!(failures));
    }
    head
}

/// Runs one scenario in a child process (this program again); returns its report.
fn run_child(name: &str, args: &Args) -> Value {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .args(args.child_args(name))
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
    let args = Args::parse();
    plug::choose(args.transport.quiet(), args.wake);
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
        let report = run_child(name, &args);
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
    fail_if_any(&scenarios);
}

/// Says every scenario's failures loudly on stderr and exits 3 if there is any (after
/// the report is printed and written).
fn fail_if_any(scenarios: &[Value]) {
    let mut failed = false;
    for report in scenarios {
        let name = report["scenario"].as_str().unwrap_or("?");
        for failure in report["failures"].as_array().into_iter().flatten() {
            eprintln!("bench: FAILED: {name}: {}", failure.as_str().unwrap_or("?"));
            failed = true;
        }
    }
    if failed {
        std::process::exit(3);
    }
}
