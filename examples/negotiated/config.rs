//! The example's flags (clap), the relay's TOML file (`--config`), and the checks that
//! refuse nonsense at start (exit 2) instead of panicking or clamping it silently.
//!
//! The same design as the `server` example's `config.rs`: a flag given on the command line,
//! then the file, then the default shown in `--help`. Durations are seconds as numbers
//! (`0.25`, `2`, `60`) in both.
//!
//! The file holds every field of [`NegotiatedRelaySettings`] but its `epoch`: `None`, the
//! Unix time when the relay starts, is what a deployed relay needs (relay time is then
//! wall-clock time, so frames and a `--journal` survive restarts). A fixed epoch is for
//! tests: in a file, every restart would start relay time over at the same value, behind
//! the frames of the facts already stored and of the clients already connected.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bevy_atomic_matchmaking::negotiated::core::frame::NEGOTIATED_MIN_FRAME;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{
    DEFAULT_TOKEN_TIMEOUT_SECONDS, MAX_TOKEN_SERVER_ADDRESSES,
};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Serialize};

use crate::identity::{DEFAULT_KEY_FILE, IdentityArgs};
pub use crate::settings::Seconds;
use crate::settings::{GateConfig, read_file};

/// The example's frame duration (the plugin's default is 60 s): short, so that the
/// one-process mode finishes in a second or two.
const DEFAULT_FRAME: Duration = Duration::from_secs(2);

/// The key prefix of `--redis` unless `--redis-prefix`.
const DEFAULT_REDIS_PREFIX: &str = "negotiated";

/// The relay's name in a shared store unless `--relay-name`.
const DEFAULT_RELAY_NAME: &str = "relay";

/// The relay's address unless `--addr`.
const DEFAULT_ADDR: &str = "127.0.0.1:5001";

/// How long the load mode's clients search unless `--run-for`.
const DEFAULT_LOAD_RUN_FOR: Duration = Duration::from_secs(10);

fn defaults() -> NegotiatedRelaySettings {
    NegotiatedRelaySettings::default()
}

/// Serverless negotiated matchmaking over UDP: without a mode flag, a relay and N clients
/// in one process; --relay-only runs just the relay; --client A,B,C runs one client (or,
/// with --clients N, N clients) of the relays at those addresses, failing over between them.
///
/// Every relay setting is a flag and, with --relay-only, a key of the --config file (flags
/// win); the one-process mode's relay takes the same flags. SIGTERM or Ctrl-C drains
/// --relay-only (clients are told it is closing, negotiations under way may finish within
/// --drain-timeout) and it exits 0; a second signal exits at once with code 130. Exit
/// code 2: a setting was refused at start.
#[derive(Parser, Debug)]
#[command(
    name = "negotiated",
    args_override_self = true,
    allow_negative_numbers = true
)]
pub struct Cli {
    /// One-process mode: how many clients to run (1..=512); with --client, the load mode:
    /// this many clients of the relays, searching again after each match until --run-for
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clients)]
    clients: usize,
    /// Run just the relay, until SIGTERM, Ctrl-C or --run-for
    #[arg(long, conflicts_with = "client")]
    relay_only: bool,
    #[command(flatten)]
    client_flags: ClientFlags,
    /// Exit 1 after this many seconds if not everyone who can pair did (--client: if it
    /// found no match)
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = positive_seconds)]
    timeout: Duration,
    /// --client: the category to search
    #[arg(long, value_name = "NAME", default_value = "duel")]
    category: String,
    /// --client: print each state change
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    identity: IdentityArgs,
    /// A TOML file with any of the relay's settings (keys named as the flags, with _ for -;
    /// the relay's own settings in [relay], [relay.limits], [relay.gate] and
    /// [relay.gate.rate_limit]); flags given on the command line win
    #[arg(
        long,
        help_heading = "Relay process (--relay-only)",
        value_name = "FILE",
        requires = "relay_only"
    )]
    config: Option<PathBuf>,
    /// Print the effective settings as TOML (a config file) and exit
    #[arg(
        long,
        help_heading = "Relay process (--relay-only)",
        requires = "relay_only"
    )]
    print_config: bool,
    /// The relay's UDP address
    #[arg(long, help_heading = "Relay process (--relay-only)", value_name = "ADDR", default_value = DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Drain and exit after this many seconds, as on SIGTERM (default: run until a signal);
    /// --client --clients N: how long the clients search (default 10)
    #[arg(
        long,
        help_heading = "Relay process (--relay-only)",
        value_name = "SECONDS"
    )]
    run_for: Option<Seconds>,
    /// Once draining (SIGTERM, Ctrl-C, --run-for), how long the negotiations under way may
    /// go on before the relay exits (a second signal exits at once)
    #[arg(long, help_heading = "Relay process (--relay-only)", value_name = "SECONDS", default_value_t = Seconds(Duration::from_secs(10)))]
    drain_timeout: Seconds,
    /// The relay's frame duration: requests expire one to two frames after they were posted
    /// (at least 0.01; in --config: [relay] frame_duration)
    #[arg(long, help_heading = "Relay settings ([relay] in --config)", value_name = "SECONDS", default_value_t = Seconds(DEFAULT_FRAME))]
    frame: Seconds,
    /// Record every fact in files in this directory (created if missing) before it is
    /// reported stored, and read them back at start, so that a restarted relay keeps every
    /// match mutual (default: facts in memory only)
    #[arg(
        long,
        help_heading = "Relay settings ([relay] in --config)",
        value_name = "DIR"
    )]
    journal: Option<PathBuf>,
    /// Share one fact store with the other relays on this Redis (redis://HOST:PORT): the
    /// store decides every verdict, any relay serves any client, and clients fail over
    /// between them (a --journal is then not used)
    #[arg(
        long,
        help_heading = "Relay settings ([relay] in --config)",
        value_name = "URL"
    )]
    redis: Option<String>,
    /// With --redis: the key prefix the relays share
    #[arg(long, help_heading = "Relay settings ([relay] in --config)", value_name = "PREFIX", default_value = DEFAULT_REDIS_PREFIX)]
    redis_prefix: String,
    /// With --redis: this relay's name in the store's records of connections (a random
    /// part is added per run)
    #[arg(long, help_heading = "Relay settings ([relay] in --config)", value_name = "NAME", default_value = DEFAULT_RELAY_NAME)]
    relay_name: String,
    /// Facts one connection may post into one frame (at least 1), not counting its rejects
    /// of bids and withdrawals of its bids
    #[arg(long, help_heading = "Relay limits ([relay.limits])", value_name = "N", default_value_t = defaults().limits.max_facts_per_frame)]
    max_facts_per_frame: usize,
    /// Facts held in all (at least 1); past it posts are refused with RelayFull until frames
    /// expire
    #[arg(long, help_heading = "Relay limits ([relay.limits])", value_name = "N", default_value_t = defaults().limits.max_facts)]
    max_facts: usize,
    /// Departed players remembered for later subscribers (at least 1)
    #[arg(long, help_heading = "Relay limits ([relay.limits])", value_name = "N", default_value_t = defaults().limits.max_departed)]
    max_departed: usize,
    /// Bad messages a connection may send; the one that reaches this number refuses it (at
    /// least 1)
    #[arg(long, help_heading = "Connection gate ([relay.gate])", value_name = "N", default_value_t = defaults().gate.max_strikes)]
    max_strikes: u32,
    /// How long a refused connection stays open so that its error reaches it
    #[arg(long, help_heading = "Connection gate ([relay.gate])", value_name = "SECONDS", default_value_t = Seconds(defaults().gate.disconnect_grace))]
    disconnect_grace: Seconds,
    /// Messages per second a connection may send on average (at least 1; in --config:
    /// [relay.gate.rate_limit] messages_per_second)
    #[arg(long, help_heading = "Connection gate ([relay.gate])", value_name = "N", default_value_t = defaults().gate.rate_limit.messages_per_second)]
    rate_limit: u32,
    /// Messages a connection may send at once (at least 1; in --config:
    /// [relay.gate.rate_limit] burst)
    #[arg(long, help_heading = "Connection gate ([relay.gate])", value_name = "N", default_value_t = defaults().gate.rate_limit.burst)]
    rate_burst: u32,
    /// How long a player refused for abuse is refused again when it reconnects (0: not at
    /// all)
    #[arg(long, help_heading = "Connection gate ([relay.gate])", value_name = "SECONDS", default_value_t = Seconds(defaults().gate.abuse_cooldown))]
    abuse_cooldown: Seconds,
}

/// The flags of the client processes (`--client`, and its load mode with `--clients`).
#[derive(clap::Args, Debug)]
struct ClientFlags {
    /// Run one client of the relays at these addresses (comma-separated, in order): it
    /// connects to the first and fails over to the next when its relay goes silent; its
    /// connect token names every address. With --clients N: the load mode
    #[arg(long, value_name = "ADDR[,ADDR...]", value_parser = relay_list)]
    client: Option<RelayList>,
    /// The connection timeout of the connect tokens the clients mint, in whole seconds (at
    /// least 1): a relay silent this long is given up (and the client fails over)
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TOKEN_TIMEOUT_SECONDS as u64, value_parser = clap::value_parser!(u64).range(1..=3600))]
    token_timeout: u64,
    /// --client --clients N: the categories, comma-separated; client i searches category
    /// i % count (default: --category)
    #[arg(
        long,
        value_name = "NAME[,NAME...]",
        value_delimiter = ',',
        value_parser = category,
        requires = "client"
    )]
    categories: Vec<String>,
    /// --client --clients N: one JSON object per line on stdout (matched, failover, summary)
    #[arg(long, requires = "client")]
    json: bool,
    /// --client --clients N: how long a matched client "plays" before it searches again (0:
    /// at once; a client that searches again at once can exceed the relay's --rate-limit)
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Duration::from_millis(500)), requires = "client")]
    rematch_after: Seconds,
}

/// A category name the client plugin accepts.
fn category(value: &str) -> Result<String, String> {
    bevy_atomic_matchmaking::shared::player::validate_category(value)?;
    Ok(value.to_owned())
}

/// `--client`'s relay addresses, in order.
#[derive(Clone, Debug)]
pub struct RelayList(pub Vec<SocketAddr>);

fn relay_list(value: &str) -> Result<RelayList, String> {
    let relays = value
        .split(',')
        .map(|a| {
            a.trim()
                .parse::<SocketAddr>()
                .map_err(|e| format!("{a:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if relays.len() > MAX_TOKEN_SERVER_ADDRESSES {
        return Err(format!(
            "at most {MAX_TOKEN_SERVER_ADDRESSES} addresses (a connect token's limit)"
        ));
    }
    Ok(RelayList(relays))
}

fn positive_seconds(value: &str) -> Result<Duration, String> {
    let secs = value.parse::<Seconds>()?;
    if secs.0.is_zero() {
        return Err("must be a positive number of seconds".into());
    }
    Ok(secs.0)
}

fn clients(value: &str) -> Result<usize, String> {
    let n = value.parse::<usize>().map_err(|e| e.to_string())?;
    if !(1..=512).contains(&n) {
        return Err("must be 1..=512".into());
    }
    Ok(n)
}

/// The `--relay-only` process's settings, as the config file and `--print-config` spell
/// them (the one-process mode uses `relay`, from the flags).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub addr: SocketAddr,
    pub key_file: PathBuf,
    pub insecure: bool,
    pub netcode: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_for: Option<Seconds>,
    pub drain_timeout: Seconds,
    pub relay: RelayConfig,
}

/// [`NegotiatedRelaySettings`] but its `epoch` (see the module's comment), in the file's
/// units.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    pub frame_duration: Seconds,
    /// The journal's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<PathBuf>,
    /// The Redis of a fact store shared with other relays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    pub redis_prefix: String,
    pub relay_name: String,
    pub limits: LimitsConfig,
    pub gate: GateConfig,
}

/// [`NegotiatedRelayLimits`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_facts_per_frame: usize,
    pub max_facts: usize,
    pub max_departed: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR.parse().expect("an address"),
            key_file: DEFAULT_KEY_FILE.into(),
            insecure: false,
            netcode: false,
            run_for: None,
            drain_timeout: Seconds(Duration::from_secs(10)),
            relay: RelayConfig::default(),
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        let s = defaults();
        let (l, g) = (&s.limits, &s.gate);
        Self {
            frame_duration: Seconds(DEFAULT_FRAME),
            journal: None,
            redis: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.into(),
            relay_name: DEFAULT_RELAY_NAME.into(),
            limits: LimitsConfig {
                max_facts_per_frame: l.max_facts_per_frame,
                max_facts: l.max_facts,
                max_departed: l.max_departed,
            },
            gate: GateConfig::from(g),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        RelayConfig::default().limits
    }
}

impl RelayConfig {
    /// The plugin's settings, with the journal opened and read once (so that a journal
    /// that cannot be read is an error here, not the plugin's panic at start).
    pub fn settings(&self) -> Result<NegotiatedRelaySettings, String> {
        let journal = match &self.journal {
            None => None,
            Some(dir) => {
                let what = || format!("--journal ([relay] journal) {}", dir.display());
                let journal = NegotiatedRelayJournal::open_dir(dir)
                    .map_err(|e| format!("{}: cannot open: {e}", what()))?;
                journal
                    .lock()
                    .load()
                    .map_err(|e| format!("{}: cannot be read back: {e}", what()))?;
                Some(journal)
            }
        };
        let l = &self.limits;
        Ok(NegotiatedRelaySettings {
            frame_duration: self.frame_duration.0,
            limits: NegotiatedRelayLimits {
                max_facts_per_frame: l.max_facts_per_frame,
                max_facts: l.max_facts,
                max_departed: l.max_departed,
            },
            gate: self.gate.policy(),
            epoch: None,
            journal,
            shared: self
                .redis
                .as_ref()
                .map(|url| NegotiatedSharedFacts::redis(url, &self.redis_prefix, &self.relay_name)),
        })
    }
}

/// Which of the three runs.
pub enum Mode {
    /// Relay and clients in one process.
    Together { clients: usize },
    /// Only the relay.
    Relay,
    /// One client of relays elsewhere, failing over between them.
    Client { relays: Vec<SocketAddr> },
    /// `clients` clients of relays elsewhere, searching again after each match.
    Load {
        relays: Vec<SocketAddr>,
        clients: usize,
    },
}

/// What the client processes are asked (`--client`, and its load mode).
pub struct ClientArgs {
    /// The connect tokens' connection timeout.
    pub token_timeout: Duration,
    /// The load mode's categories (never empty).
    pub categories: Vec<String>,
    /// The load mode's JSON lines.
    pub json: bool,
    /// How long the load mode's clients search.
    pub run_for: Duration,
    /// How long a matched client of the load mode waits before it searches again.
    pub rematch_after: Duration,
}

/// What the command line (and, with `--relay-only`, the config file) ask for.
pub struct Args {
    pub mode: Mode,
    /// The relay's settings: the whole of `--relay-only`'s, and the one-process mode's
    /// `relay`.
    pub config: Config,
    pub print_config: bool,
    pub timeout: Duration,
    pub category: String,
    pub verbose: bool,
    /// `--client`'s key file, `--insecure` and transport (the relay's are in `config`).
    pub identity: IdentityArgs,
    /// The client processes' own flags.
    pub client: ClientArgs,
}

impl Args {
    /// The identity flags the relay's config asks for.
    pub fn relay_identity(&self) -> IdentityArgs {
        let mut identity = self.identity.clone();
        identity.key_file = self.config.key_file.clone();
        identity.insecure = self.config.insecure;
        identity.transport.netcode = self.config.netcode;
        identity
    }
}

/// Parses the command line (exiting 2 on a bad flag, 0 after `--help`), reads `--config`
/// and merges them; every problem is one line of the error.
pub fn load() -> Result<Args, Vec<String>> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let mut config = match &cli.config {
        Some(path) => read_file(path).map_err(|e| vec![e])?,
        None => Config::default(),
    };
    apply_flags(&mut config, &cli, &matches);
    check(&config)?;
    let load = matches.value_source("clients") == Some(ValueSource::CommandLine);
    let mode = match (cli.relay_only, cli.client_flags.client.clone()) {
        (true, _) => Mode::Relay,
        (false, Some(RelayList(relays))) if load => Mode::Load {
            relays,
            clients: cli.clients,
        },
        (false, Some(RelayList(relays))) => Mode::Client { relays },
        (false, None) => Mode::Together {
            clients: cli.clients,
        },
    };
    let client = client_args(&cli);
    Ok(Args {
        mode,
        config,
        print_config: cli.print_config,
        timeout: cli.timeout,
        category: cli.category,
        verbose: cli.verbose,
        identity: cli.identity,
        client,
    })
}

/// The client processes' flags, defaults filled in.
fn client_args(cli: &Cli) -> ClientArgs {
    let flags = &cli.client_flags;
    let categories = match flags.categories.is_empty() {
        true => vec![cli.category.clone()],
        false => flags.categories.clone(),
    };
    ClientArgs {
        token_timeout: Duration::from_secs(flags.token_timeout),
        categories,
        json: flags.json,
        run_for: cli.run_for.map_or(DEFAULT_LOAD_RUN_FOR, |s| s.0),
        rematch_after: flags.rematch_after.0,
    }
}

/// Copies every flag given on the command line over the file's value.
fn apply_flags(config: &mut Config, cli: &Cli, matches: &ArgMatches) {
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    macro_rules! flags {
        ($($id:literal => $dst:expr, $src:expr;)*) => {
            $( if given($id) { $dst = $src.clone(); } )*
        };
    }
    let (relay, id) = (&mut config.relay, &cli.identity);
    flags! {
        "addr" => config.addr, cli.addr;
        "key_file" => config.key_file, id.key_file;
        "insecure" => config.insecure, id.insecure;
        "run_for" => config.run_for, cli.run_for;
        "drain_timeout" => config.drain_timeout, cli.drain_timeout;
        "frame" => relay.frame_duration, cli.frame;
        "journal" => relay.journal, cli.journal;
        "redis" => relay.redis, cli.redis;
        "redis_prefix" => relay.redis_prefix, cli.redis_prefix;
        "relay_name" => relay.relay_name, cli.relay_name;
        "max_facts_per_frame" => relay.limits.max_facts_per_frame, cli.max_facts_per_frame;
        "max_facts" => relay.limits.max_facts, cli.max_facts;
        "max_departed" => relay.limits.max_departed, cli.max_departed;
        "max_strikes" => relay.gate.max_strikes, cli.max_strikes;
        "disconnect_grace" => relay.gate.disconnect_grace, cli.disconnect_grace;
        "rate_limit" => relay.gate.rate_limit.messages_per_second, cli.rate_limit;
        "rate_burst" => relay.gate.rate_limit.burst, cli.rate_burst;
        "abuse_cooldown" => relay.gate.abuse_cooldown, cli.abuse_cooldown;
    }
    // --netcode and --quiet override each other; either on the command line wins
    if given("netcode") || given("quiet") {
        config.netcode = !id.transport.quiet();
    }
}

/// Every value that cannot work, one line each (flag and file key named).
fn check(config: &Config) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let relay = &config.relay;
    check_redis(relay, &mut problems);
    if relay.frame_duration.0 < NEGOTIATED_MIN_FRAME {
        problems.push(format!(
            "--frame ([relay] frame_duration) {} s is below the minimum {} s",
            relay.frame_duration,
            NEGOTIATED_MIN_FRAME.as_secs_f64()
        ));
    }
    let l = &relay.limits;
    let limits = [
        (
            "--max-facts-per-frame",
            "max_facts_per_frame",
            l.max_facts_per_frame,
        ),
        ("--max-facts", "max_facts", l.max_facts),
        ("--max-departed", "max_departed", l.max_departed),
    ];
    for (flag, key, value) in limits {
        if value == 0 {
            problems.push(format!(
                "{flag} ([relay.limits] {key}) {value} must be at least 1"
            ));
        }
    }
    // the gate clamps its counts to at least 1: any count it would change is refused
    let (gate, clamped) = (relay.gate.policy(), relay.gate.policy().clamped());
    let counts = [
        (
            "--max-strikes ([relay.gate] max_strikes)",
            gate.max_strikes,
            clamped.max_strikes,
        ),
        (
            "--rate-limit ([relay.gate.rate_limit] messages_per_second)",
            gate.rate_limit.messages_per_second,
            clamped.rate_limit.messages_per_second,
        ),
        (
            "--rate-burst ([relay.gate.rate_limit] burst)",
            gate.rate_limit.burst,
            clamped.rate_limit.burst,
        ),
    ];
    for (what, value, usable) in counts {
        if value != usable {
            problems.push(format!("{what} {value} must be at least {usable}"));
        }
    }
    let reported = counts.iter().any(|(_, value, usable)| value != usable);
    if clamped != gate && !reported {
        problems.push(format!("the connection gate {gate:?} must be {clamped:?}"));
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems),
    }
}

/// `--redis`, `--redis-prefix` and `--relay-name`.
fn check_redis(relay: &RelayConfig, problems: &mut Vec<String>) {
    let name_ok = |s: &str| {
        (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if let Some(url) = &relay.redis {
        if !url.starts_with("redis://") {
            problems.push(format!(
                "--redis ([relay] redis) {url:?} is not a redis://HOST:PORT URL"
            ));
        }
        if relay.journal.is_some() {
            problems.push(
                "--journal and --redis: the shared store is the record; give one of them".into(),
            );
        }
    }
    for (flag, key, value) in [
        ("--redis-prefix", "redis_prefix", &relay.redis_prefix),
        ("--relay-name", "relay_name", &relay.relay_name),
    ] {
        if !name_ok(value) {
            problems.push(format!(
                "{flag} ([relay] {key}) {value:?} must be 1 to 64 letters, digits, - _ or ."
            ));
        }
    }
}

/// The effective settings as a TOML config file.
pub fn to_toml(config: &Config) -> String {
    let body = toml::to_string_pretty(config).expect("the settings serialize as TOML");
    let mut out = String::from(
        "# the relay's effective settings (negotiated --relay-only --print-config); \
         durations in seconds\n",
    );
    if config.run_for.is_none() {
        out.push_str("# run_for: unset (run until SIGTERM or Ctrl-C)\n");
    }
    if config.relay.journal.is_none() {
        out.push_str("# [relay] journal: unset (facts in memory only)\n");
    }
    out + &body
}
