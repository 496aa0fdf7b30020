//! The server's settings: flags (clap), a TOML file (`--config`), and the checks that
//! refuse nonsense at start (exit 2) instead of panicking or guessing later.
//!
//! Precedence: a flag given on the command line, then the file, then the default shown in
//! `--help`. Durations are seconds as numbers (`0.5`, `2`, `60`) in both.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::identity::{DEFAULT_KEY_FILE, IdentityArgs};
pub use crate::settings::Seconds;
use crate::settings::{GateConfig, read_file};

/// How log lines look on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Time, level, target and message (colours only on a terminal)
    Text,
    /// Target and message only: for journald (which stamps its own time) and scripts
    Plain,
    /// One JSON object per line, for log shippers
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let name = match self {
            LogFormat::Text => "text",
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        };
        f.write_str(name)
    }
}

fn defaults() -> AtomicServerSettings {
    AtomicServerSettings::default()
}

/// A dedicated headless matchmaking server over UDP, accepting only connect tokens minted
/// with its key file (unless --insecure).
///
/// Every setting is a flag and a key of the --config file (flags win). SIGTERM or SIGINT
/// drains the server (clients are told it is closing, matches in flight finish within
/// --drain-timeout), writes the final stats and exits 0; a second signal exits at once
/// with code 130. Exit code 2: a setting was refused at start.
#[derive(Parser, Debug)]
#[command(
    name = "server",
    args_override_self = true,
    allow_negative_numbers = true
)]
pub struct Args {
    /// A TOML file with any of these settings (keys named as the flags, with _ for -;
    /// matchmaking settings in [matchmaking], [matchmaking.commit] and
    /// [matchmaking.gate]); flags given on the command line win
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective settings as TOML (a config file) and exit
    #[arg(long)]
    pub print_config: bool,
    /// The UDP address to listen on (a wildcard such as 0.0.0.0 needs --public-addr)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    addr: SocketAddr,
    /// An address clients send to (the host's public address, a proxy), accepted in
    /// connect tokens besides --addr; repeatable
    #[arg(long = "public-addr", value_name = "ADDR")]
    public_addrs: Vec<SocketAddr>,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Create --key-file if it does not exist (without it, a missing key file is an error,
    /// but for the development default)
    #[arg(long)]
    create_key: bool,
    /// The server's update rate, in updates per second (1..=1000)
    #[arg(long, value_name = "HZ", default_value_t = 60.0)]
    tick_hz: f64,
    /// Update when a datagram arrives (at most at --tick-hz) and at least every 50 ms: the
    /// default with the quiet transport (with --netcode the server updates at --tick-hz)
    #[arg(long, overrides_with = "fixed_rate")]
    wake: bool,
    /// Update at --tick-hz whether or not a datagram arrived, instead of --wake
    #[arg(long = "fixed-rate", overrides_with = "wake")]
    fixed_rate: bool,
    /// Drain and exit after this many seconds, as on SIGTERM (default: run until a signal)
    #[arg(
        long,
        help_heading = "Drain, stats, health and logs",
        value_name = "SECONDS"
    )]
    run_for: Option<Seconds>,
    /// How long matches in flight may take to finish once draining; then they are called off
    #[arg(long, help_heading = "Drain, stats, health and logs", value_name = "SECONDS", default_value_t = Seconds(Duration::from_secs(10)))]
    drain_timeout: Seconds,
    /// Rewrite the stats as one JSON object in this file every --stats-every, and at exit
    /// (atomically: a temporary file beside it, then a rename)
    #[arg(
        long,
        help_heading = "Drain, stats, health and logs",
        value_name = "PATH"
    )]
    stats_json: Option<PathBuf>,
    /// Log a stats summary (and rewrite --stats-json) every this many seconds (at least 0.1)
    #[arg(long, help_heading = "Drain, stats, health and logs", value_name = "SECONDS", default_value_t = Seconds(Duration::from_secs(5)))]
    stats_every: Seconds,
    /// Serve /healthz, /readyz, /stats (JSON) and /metrics (Prometheus text) over HTTP on
    /// this TCP address
    #[arg(
        long,
        help_heading = "Drain, stats, health and logs",
        value_name = "ADDR"
    )]
    metrics: Option<SocketAddr>,
    /// Join a cluster of servers on this Redis (redis://HOST:PORT): one logical queue
    /// across every node, each match committed atomically across nodes; needs --node-id
    #[arg(
        long,
        help_heading = "Cluster (every node on one Redis)",
        value_name = "URL"
    )]
    redis: Option<String>,
    /// This node's name in the cluster, unique among live nodes (letters, digits, - _ .)
    #[arg(
        long,
        help_heading = "Cluster (every node on one Redis)",
        value_name = "NAME"
    )]
    node_id: Option<String>,
    /// The key prefix of the cluster's records in Redis (every node of one cluster uses the
    /// same one)
    #[arg(
        long,
        help_heading = "Cluster (every node on one Redis)",
        value_name = "PREFIX",
        default_value = "matchmaking"
    )]
    redis_prefix: String,
    /// How log lines on stderr look (RUST_LOG sets which are written; default info)
    #[arg(long, help_heading = "Drain, stats, health and logs", value_name = "FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Players in each match (2..=16)
    #[arg(long, help_heading = "Matchmaking ([matchmaking] in --config)", value_name = "N", default_value_t = defaults().players_per_match)]
    players_per_match: usize,
    /// Most tickets one category holds (at least 1); joins beyond it are refused
    #[arg(long, help_heading = "Matchmaking ([matchmaking] in --config)", value_name = "N", default_value_t = defaults().queue_capacity)]
    queue_capacity: usize,
    /// Most categories with tickets at once (at least 1)
    #[arg(long, help_heading = "Matchmaking ([matchmaking] in --config)", value_name = "N", default_value_t = defaults().max_categories)]
    max_categories: usize,
    /// How long a player has to answer the health ping (at least 0.1)
    #[arg(long, help_heading = "Two-phase commit timings ([matchmaking.commit])", value_name = "SECONDS", default_value_t = Seconds(defaults().commit.ping_timeout))]
    ping_timeout: Seconds,
    /// Highest round trip a health ping may take (at least 0.01, at most --ping-timeout)
    #[arg(long, help_heading = "Two-phase commit timings ([matchmaking.commit])", value_name = "SECONDS", default_value_t = Seconds(defaults().commit.max_latency))]
    max_latency: Seconds,
    /// How long to wait for the acknowledgement of one match proposal (at least 0.1)
    #[arg(long, help_heading = "Two-phase commit timings ([matchmaking.commit])", value_name = "SECONDS", default_value_t = Seconds(defaults().commit.notification_timeout))]
    notification_timeout: Seconds,
    /// How many proposal attempts a player gets (at least 1)
    #[arg(long, help_heading = "Two-phase commit timings ([matchmaking.commit])", value_name = "N", default_value_t = defaults().commit.notification_attempts)]
    notification_attempts: u32,
    /// Pause between a timed-out proposal attempt and the next
    #[arg(long, help_heading = "Two-phase commit timings ([matchmaking.commit])", value_name = "SECONDS", default_value_t = Seconds(defaults().commit.notification_backoff))]
    notification_backoff: Seconds,
    /// A frame longer than this is a stall: timings it may have delayed are measured again (at least 0.02)
    #[arg(long, help_heading = "Two-phase commit timings ([matchmaking.commit])", value_name = "SECONDS", default_value_t = Seconds(defaults().commit.stall_threshold))]
    stall_threshold: Seconds,
    /// Bad messages a connection may send; the one that reaches this number refuses it (at least 1)
    #[arg(long, help_heading = "Connection gate ([matchmaking.gate])", value_name = "N", default_value_t = defaults().gate.max_strikes)]
    max_strikes: u32,
    /// How long a refused connection stays open so that its error reaches it
    #[arg(long, help_heading = "Connection gate ([matchmaking.gate])", value_name = "SECONDS", default_value_t = Seconds(defaults().gate.disconnect_grace))]
    disconnect_grace: Seconds,
    /// Messages per second a connection may send on average (at least 1; in --config:
    /// [matchmaking.gate.rate_limit] messages_per_second)
    #[arg(long, help_heading = "Connection gate ([matchmaking.gate])", value_name = "N", default_value_t = defaults().gate.rate_limit.messages_per_second)]
    rate_limit: u32,
    /// Messages a connection may send at once (at least 1; in --config:
    /// [matchmaking.gate.rate_limit] burst)
    #[arg(long, help_heading = "Connection gate ([matchmaking.gate])", value_name = "N", default_value_t = defaults().gate.rate_limit.burst)]
    rate_burst: u32,
    /// How long a player refused for abuse is refused again when it reconnects (0: not at all)
    #[arg(long, help_heading = "Connection gate ([matchmaking.gate])", value_name = "SECONDS", default_value_t = Seconds(defaults().gate.abuse_cooldown))]
    abuse_cooldown: Seconds,
}

/// Every setting, as the config file and `--print-config` spell them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub addr: SocketAddr,
    pub public_addrs: Vec<SocketAddr>,
    pub key_file: PathBuf,
    pub create_key: bool,
    pub insecure: bool,
    pub netcode: bool,
    pub tick_hz: f64,
    pub wake: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_for: Option<Seconds>,
    pub drain_timeout: Seconds,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_json: Option<PathBuf>,
    pub stats_every: Seconds,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    pub log_format: LogFormat,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    pub redis_prefix: String,
    pub matchmaking: MatchmakingConfig,
}

/// [`AtomicServerSettings`], in the file's units.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MatchmakingConfig {
    pub players_per_match: usize,
    pub queue_capacity: usize,
    pub max_categories: usize,
    pub commit: CommitConfig,
    pub gate: GateConfig,
}

/// [`AtomicCommitTimings`], in the file's units.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CommitConfig {
    pub ping_timeout: Seconds,
    pub max_latency: Seconds,
    pub notification_timeout: Seconds,
    pub notification_attempts: u32,
    pub notification_backoff: Seconds,
    pub stall_threshold: Seconds,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:5000".parse().expect("an address"),
            public_addrs: Vec::new(),
            key_file: DEFAULT_KEY_FILE.into(),
            create_key: false,
            insecure: false,
            netcode: false,
            tick_hz: 60.0,
            wake: true,
            run_for: None,
            drain_timeout: Seconds(Duration::from_secs(10)),
            stats_json: None,
            stats_every: Seconds(Duration::from_secs(5)),
            metrics: None,
            log_format: LogFormat::Text,
            redis: None,
            node_id: None,
            redis_prefix: "matchmaking".into(),
            matchmaking: MatchmakingConfig::from(&defaults()),
        }
    }
}

impl Default for MatchmakingConfig {
    fn default() -> Self {
        Self::from(&defaults())
    }
}

impl Default for CommitConfig {
    fn default() -> Self {
        MatchmakingConfig::default().commit
    }
}

impl From<&AtomicServerSettings> for MatchmakingConfig {
    fn from(s: &AtomicServerSettings) -> Self {
        let (c, g) = (&s.commit, &s.gate);
        Self {
            players_per_match: s.players_per_match,
            queue_capacity: s.queue_capacity,
            max_categories: s.max_categories,
            commit: CommitConfig {
                ping_timeout: Seconds(c.ping_timeout),
                max_latency: Seconds(c.max_latency),
                notification_timeout: Seconds(c.notification_timeout),
                notification_attempts: c.notification_attempts,
                notification_backoff: Seconds(c.notification_backoff),
                stall_threshold: Seconds(c.stall_threshold),
            },
            gate: GateConfig::from(g),
        }
    }
}

impl MatchmakingConfig {
    /// The plugin's settings.
    pub fn settings(&self) -> AtomicServerSettings {
        let (c, g) = (&self.commit, &self.gate);
        AtomicServerSettings {
            commit: AtomicCommitTimings {
                ping_timeout: c.ping_timeout.0,
                max_latency: c.max_latency.0,
                notification_timeout: c.notification_timeout.0,
                notification_attempts: c.notification_attempts,
                notification_backoff: c.notification_backoff.0,
                stall_threshold: c.stall_threshold.0,
            },
            players_per_match: self.players_per_match,
            queue_capacity: self.queue_capacity,
            max_categories: self.max_categories,
            gate: g.policy(),
        }
    }
}

/// Each field path [`AtomicServerSettings::validate`] names, with its flag.
const SETTING_FLAGS: &[(&str, &str)] = &[
    ("commit.ping_timeout", "--ping-timeout"),
    ("commit.max_latency", "--max-latency"),
    ("commit.notification_timeout", "--notification-timeout"),
    ("commit.notification_attempts", "--notification-attempts"),
    ("commit.stall_threshold", "--stall-threshold"),
    ("players_per_match", "--players-per-match"),
    ("queue_capacity", "--queue-capacity"),
    ("max_categories", "--max-categories"),
    ("gate.max_strikes", "--max-strikes"),
    ("gate.rate_limit.messages_per_second", "--rate-limit"),
    ("gate.rate_limit.burst", "--rate-burst"),
];

/// What the command line and the config file ask for.
pub struct Loaded {
    pub config: Config,
    pub print_config: bool,
    /// `--key-file` (or `key_file`) was given, rather than the development default.
    pub key_file_given: bool,
}

/// Parses the command line (exiting 2 on a bad flag, 0 after `--help`), reads `--config`
/// and merges them; every problem is one line of the error.
pub fn load() -> Result<Loaded, Vec<String>> {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let mut config = match &args.config {
        Some(path) => read_file(path).map_err(|e| vec![e])?,
        None => Config::default(),
    };
    apply_flags(&mut config, &args, &matches);
    let key_file_given = config.key_file != Path::new(DEFAULT_KEY_FILE);
    check(&config)?;
    Ok(Loaded {
        config,
        print_config: args.print_config,
        key_file_given,
    })
}

/// Copies every flag given on the command line over the file's value.
fn apply_flags(config: &mut Config, args: &Args, matches: &ArgMatches) {
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    macro_rules! flags {
        ($($id:literal => $dst:expr, $src:expr;)*) => {
            $( if given($id) { $dst = $src.clone(); } )*
        };
    }
    let (mm, id) = (&mut config.matchmaking, &args.identity);
    flags! {
        "addr" => config.addr, args.addr;
        "public_addrs" => config.public_addrs, args.public_addrs;
        "key_file" => config.key_file, id.key_file;
        "create_key" => config.create_key, args.create_key;
        "insecure" => config.insecure, id.insecure;
        "tick_hz" => config.tick_hz, args.tick_hz;
        "wake" => config.wake, args.wake;
        "fixed_rate" => config.wake, !args.fixed_rate;
        "run_for" => config.run_for, args.run_for;
        "drain_timeout" => config.drain_timeout, args.drain_timeout;
        "stats_json" => config.stats_json, args.stats_json;
        "stats_every" => config.stats_every, args.stats_every;
        "metrics" => config.metrics, args.metrics;
        "log_format" => config.log_format, args.log_format;
        "redis" => config.redis, args.redis;
        "node_id" => config.node_id, args.node_id;
        "redis_prefix" => config.redis_prefix, args.redis_prefix;
        "players_per_match" => mm.players_per_match, args.players_per_match;
        "queue_capacity" => mm.queue_capacity, args.queue_capacity;
        "max_categories" => mm.max_categories, args.max_categories;
        "ping_timeout" => mm.commit.ping_timeout, args.ping_timeout;
        "max_latency" => mm.commit.max_latency, args.max_latency;
        "notification_timeout" => mm.commit.notification_timeout, args.notification_timeout;
        "notification_attempts" => mm.commit.notification_attempts, args.notification_attempts;
        "notification_backoff" => mm.commit.notification_backoff, args.notification_backoff;
        "stall_threshold" => mm.commit.stall_threshold, args.stall_threshold;
        "max_strikes" => mm.gate.max_strikes, args.max_strikes;
        "disconnect_grace" => mm.gate.disconnect_grace, args.disconnect_grace;
        "rate_limit" => mm.gate.rate_limit.messages_per_second, args.rate_limit;
        "rate_burst" => mm.gate.rate_limit.burst, args.rate_burst;
        "abuse_cooldown" => mm.gate.abuse_cooldown, args.abuse_cooldown;
    }
    // --netcode and --quiet override each other; either on the command line wins
    if given("netcode") || given("quiet") {
        config.netcode = !id.transport.quiet();
    }
}

/// Every value that cannot work, one line each (flag and file key named).
fn check(config: &Config) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if !(config.tick_hz.is_finite() && (1.0..=1000.0).contains(&config.tick_hz)) {
        problems.push(format!(
            "--tick-hz (tick_hz) {} must be 1..=1000",
            config.tick_hz
        ));
    }
    if config.stats_every.0 < Duration::from_millis(100) {
        problems.push(format!(
            "--stats-every (stats_every) {} s is below 0.1 s",
            config.stats_every
        ));
    }
    if config.addr.ip().is_unspecified() && config.public_addrs.is_empty() && !config.insecure {
        problems.push(format!(
            "--addr {} is a wildcard address: a connect token must name the address clients \
             send to, and a server accepts only tokens naming one of its addresses, so every \
             client would be refused; give the host's address as --public-addr IP:{} \
             (repeatable), or bind to that address",
            config.addr,
            config.addr.port()
        ));
    }
    check_cluster(config, &mut problems);
    for public in &config.public_addrs {
        if public.ip().is_unspecified() || public.port() == 0 {
            problems.push(format!(
                "--public-addr {public} is not an address a client can send to"
            ));
        }
    }
    if let Err(e) = config.matchmaking.settings().validate() {
        for problem in e.problems {
            let flag = SETTING_FLAGS
                .iter()
                .filter(|(path, _)| problem.starts_with(path))
                .max_by_key(|(path, _)| path.len())
                .map_or(String::new(), |(path, flag)| {
                    format!(" ({flag}, [matchmaking] {path})")
                });
            problems.push(format!("{problem}{flag}"));
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems),
    }
}

/// A cluster node needs a name; a name or a prefix without Redis means nothing.
fn check_cluster(config: &Config, problems: &mut Vec<String>) {
    let name_ok = |name: &str| {
        (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match (&config.redis, &config.node_id) {
        (Some(url), _) if !url.starts_with("redis://") => problems.push(format!(
            "--redis (redis) {url:?} is not a redis://HOST:PORT URL"
        )),
        (Some(_), None) => problems.push(
            "--redis needs --node-id NAME (node_id): each node of a cluster has its own name"
                .into(),
        ),
        (None, Some(_)) => {
            problems.push("--node-id (node_id) names a cluster node: give --redis URL too".into())
        }
        _ => {}
    }
    if let Some(name) = &config.node_id
        && !name_ok(name)
    {
        problems.push(format!(
            "--node-id (node_id) {name:?} must be 1 to 64 letters, digits, - _ or ."
        ));
    }
    if !name_ok(&config.redis_prefix) {
        problems.push(format!(
            "--redis-prefix (redis_prefix) {:?} must be 1 to 64 letters, digits, - _ or .",
            config.redis_prefix
        ));
    }
}

/// The effective settings as a TOML config file.
pub fn to_toml(config: &Config) -> String {
    let body = toml::to_string_pretty(config).expect("the settings serialize as TOML");
    let mut out = String::from(
        "# the server's effective settings (server --print-config); durations in seconds\n",
    );
    if config.run_for.is_none() {
        out.push_str("# run_for: unset (run until SIGTERM or SIGINT)\n");
    }
    if config.stats_json.is_none() {
        out.push_str("# stats_json: unset (no stats file)\n");
    }
    if config.metrics.is_none() {
        out.push_str("# metrics: unset (no HTTP listener)\n");
    }
    out + &body
}
