//! Negotiated matchmaking over UDP: clients pair themselves through Request, Bid and
//! Accept facts, with a relay that only stores, forwards and tells the time.
//!
//! ```text
//! cargo run --example negotiated -- [--clients N] [--frame SECONDS] [--timeout SECONDS] [--insecure]
//!     a relay and N clients (default 10) in one process over UDP loopback; prints each
//!     pair and a summary, exits 0 once everyone who can pair did
//! cargo run --example negotiated -- --relay-only [--addr ADDR] [--frame SECONDS] [--run-for SECONDS]
//!     [--drain-timeout SECONDS]
//!     [--key-file PATH] [--insecure]
//!     just the relay (default 127.0.0.1:5001), until Ctrl-C
//! cargo run --example negotiated -- --client ADDR [--category NAME] [--timeout SECONDS] [--verbose]
//!     [--key-file PATH] [--insecure]
//!     one client (default timeout 20 s): prints its match and exits 0, or exits 1 after
//!     the timeout; --verbose prints each state change
//! ```
//!
//! Secure by default: the relay accepts only connect tokens minted with its key. The
//! one-process mode makes a key in memory; `--relay-only` reads (or creates) `--key-file`
//! (default `target/matchmaking-dev.key` of this crate) and `--client` mints its token from
//! the same file, standing in for a game's backend. `--insecure` uses netcode's unsecure
//! mode instead (clients pick their own ids): local experiments only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;

#[path = "common/identity.rs"]
mod identity;
use clap::Parser;
use identity::{Identity, IdentityArgs};

const TICK: Duration = Duration::from_millis(5);

enum Mode {
    /// Relay and clients in one process.
    Together { clients: usize },
    /// Only the relay.
    Relay {
        run_for: Option<Duration>,
        drain_timeout: Duration,
    },
    /// One client of a relay elsewhere.
    Client { relay: SocketAddr },
}

struct Args {
    mode: Mode,
    addr: SocketAddr,
    frame: Duration,
    timeout: Duration,
    category: String,
    verbose: bool,
    identity: IdentityArgs,
}

/// Serverless negotiated matchmaking over UDP: without a mode flag, a relay and N clients
/// in one process; --relay-only runs just the relay; --client ADDR runs one client.
#[derive(Parser)]
#[command(name = "negotiated", args_override_self = true)]
struct Cli {
    /// One-process mode: how many clients to run (1..=512)
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clients)]
    clients: usize,
    /// Run just the relay, until Ctrl-C or --run-for
    #[arg(long, conflicts_with = "client")]
    relay_only: bool,
    /// --relay-only: the relay's UDP address
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5001")]
    addr: SocketAddr,
    /// Run one client of the relay at this address
    #[arg(long, value_name = "ADDR")]
    client: Option<SocketAddr>,
    /// The relay's frame duration, in seconds
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = seconds)]
    frame: Duration,
    /// Exit 1 after this many seconds if not everyone who can pair did (--client: if it found no match)
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = seconds)]
    timeout: Duration,
    /// --relay-only: stop after this many seconds (default: until Ctrl-C)
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    run_for: Option<Duration>,
    /// --relay-only: on SIGTERM or Ctrl-C, how long the negotiations under way may go on
    /// before the relay exits (a second signal exits at once)
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    drain_timeout: Duration,
    /// --client: the category to search
    #[arg(long, value_name = "NAME", default_value = "duel")]
    category: String,
    /// --client: print each state change
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    identity: IdentityArgs,
}

fn seconds(value: &str) -> Result<Duration, String> {
    let secs = value.parse::<f64>().map_err(|e| e.to_string())?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err("must be a positive number of seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn clients(value: &str) -> Result<usize, String> {
    let n = value.parse::<usize>().map_err(|e| e.to_string())?;
    if !(1..=512).contains(&n) {
        return Err("must be 1..=512".into());
    }
    Ok(n)
}

fn parse_args() -> Args {
    let cli = Cli::parse();
    let mode = match (cli.relay_only, cli.client) {
        (true, _) => Mode::Relay {
            run_for: cli.run_for,
            drain_timeout: cli.drain_timeout,
        },
        (false, Some(relay)) => Mode::Client { relay },
        (false, None) => Mode::Together {
            clients: cli.clients,
        },
    };
    Args {
        mode,
        addr: cli.addr,
        frame: cli.frame,
        timeout: cli.timeout,
        category: cli.category,
        verbose: cli.verbose,
        identity: cli.identity,
    }
}

fn main() {
    let args = parse_args();
    let code = match args.mode {
        Mode::Together { clients } => together(&args, clients),
        Mode::Relay {
            run_for,
            drain_timeout,
        } => relay_only(&args, run_for, drain_timeout),
        Mode::Client { relay } => client_only(&args, relay),
    };
    std::process::exit(code);
}

fn relay_app(
    addr: SocketAddr,
    frame: Duration,
    identity: &Identity,
) -> std::io::Result<(App, SocketAddr)> {
    let channel = NegotiatedChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins);
    let bound = identity.insert_server(
        &mut app,
        addr,
        &[],
        1024,
        channel.dedicated_connection_config(),
    )?;
    app.add_plugins(NegotiatedRelayPlugin {
        channel,
        settings: NegotiatedRelaySettings {
            frame_duration: frame,
            ..default()
        },
    });
    app.finish(); // the loop drives it by update(): finish the plugins' set-up as run() would
    app.cleanup();
    Ok((app, bound))
}

fn client_app(
    relay: SocketAddr,
    id: u64,
    category: &str,
    identity: &Identity,
) -> std::io::Result<App> {
    let channel = NegotiatedChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins);
    identity.insert_client(&mut app, relay, id, channel.dedicated_connection_config())?;
    app.add_plugins(NegotiatedClientPlugin {
        channel,
        settings: NegotiatedClientSettings {
            bid_timeout: Duration::from_secs(1),
            time_sync_interval: Duration::from_secs(2),
            ..default()
        },
    });
    // the plugin keeps the search until the relay welcomed us and the clock is synced
    app.world_mut().write_message(NegotiatedSearch {
        category: category.to_owned(),
    });
    app.finish(); // the loop drives it by update(): finish the plugins' set-up as run() would
    app.cleanup();
    Ok(app)
}

fn status(app: &App) -> &NegotiatedClientStatus {
    app.world().resource::<NegotiatedClientStatus>()
}

fn describe(found: &NegotiatedMatchFound) -> String {
    let role = match found.role {
        NegotiatedRole::Requester => "requested",
        NegotiatedRole::Bidder => "bid",
    };
    format!(
        "client {} {role} and plays client {} ({}; request {}, bid {}, accept {})",
        found.me, found.other, found.category, found.request, found.bid, found.accept
    )
}

/// A relay and `n` clients in one process, over UDP loopback.
fn together(args: &Args, n: usize) -> i32 {
    let identity = if args.identity.insecure {
        match args.identity.load("negotiated") {
            Ok(identity) => identity,
            Err(e) => {
                eprintln!("negotiated: {e}");
                return 1;
            }
        }
    } else {
        Identity::in_memory()
    };
    let any: SocketAddr = "127.0.0.1:0".parse().expect("valid");
    let (mut relay, addr) = match relay_app(any, args.frame, &identity) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("negotiated: cannot bind the relay: {e}");
            return 1;
        }
    };
    println!(
        "relay on {addr} ({}), frames of {:?}; {n} clients search for \"{}\" at random moments over 1 s",
        identity.describe(None),
        args.frame,
        args.category
    );
    let mut rng = fastrand::Rng::new();
    let started = Instant::now();
    // each client starts at a random moment in the first second
    let mut pending: Vec<(Duration, u64)> = (1..=n as u64)
        .map(|id| (Duration::from_millis(rng.u64(0..1000)), id))
        .collect();
    pending.sort();
    let mut clients: Vec<(u64, App)> = Vec::new();
    let mut reported = std::collections::BTreeSet::new();
    let expected = n - n % 2;
    loop {
        let elapsed = started.elapsed();
        let due = start_due_clients(&mut pending, &mut clients, elapsed, addr, args, &identity);
        if let Err(e) = due {
            eprintln!("negotiated: {e}");
            return 1;
        }
        relay.update();
        for (_, app) in &mut clients {
            app.update();
        }
        print_new_pairs(&clients, &mut reported, elapsed);
        let matched = clients
            .iter()
            .filter(|(_, a)| status(a).found.is_some())
            .count();
        if pending.is_empty() && matched >= expected {
            break;
        }
        if elapsed > args.timeout {
            eprintln!(
                "negotiated: only {matched} of {n} clients matched after {:?}",
                args.timeout
            );
            return 1;
        }
        std::thread::sleep(TICK);
    }
    // keep running briefly so the last accepts and any late bids are settled
    for _ in 0..20 {
        relay.update();
        for (_, app) in &mut clients {
            app.update();
        }
        std::thread::sleep(TICK);
    }

    let mutual = print_summary(&relay, &clients, n, started);
    if mutual { 0 } else { 1 }
}

/// Just the relay, until Ctrl-C or `--run-for`.
fn relay_only(args: &Args, run_for: Option<Duration>, drain_timeout: Duration) -> i32 {
    let identity = match args.identity.load("negotiated") {
        Ok(identity) => identity,
        Err(e) => {
            eprintln!("negotiated: {e}");
            return 1;
        }
    };
    let (mut relay, addr) = match relay_app(args.addr, args.frame, &identity) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("negotiated: cannot bind {}: {e}", args.addr);
            return 1;
        }
    };
    let signals = Arc::new(AtomicUsize::new(0));
    {
        let signals = signals.clone();
        if let Err(e) = ctrlc::set_handler(move || {
            signals.fetch_add(1, Ordering::SeqCst);
        }) {
            eprintln!("negotiated: no Ctrl-C handler ({e}); stop with --run-for");
        }
    }
    println!(
        "relay on {addr} ({}), frames of {:?}; Ctrl-C to stop",
        identity.describe(Some(&args.identity.key_file)),
        args.frame
    );
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut draining = false;
    loop {
        let signalled = signals.load(Ordering::SeqCst);
        if signalled >= 2 {
            println!("relay: second signal: exiting at once");
            return 130;
        }
        let ended = run_for.is_some_and(|d| started.elapsed() >= d);
        if !draining && (signalled == 1 || ended) {
            draining = true;
            println!("relay: draining: telling clients the relay is closing ({drain_timeout:?})");
            relay.world_mut().write_message(NegotiatedRelayDrain {
                timeout: drain_timeout,
            });
        }
        relay.update();
        let finished = relay
            .world_mut()
            .resource_mut::<Messages<NegotiatedRelayDrainFinished>>()
            .drain()
            .next();
        if let Some(finished) = finished {
            println!(
                "relay: drained: {} clients told, {} posts refused",
                finished.clients_told, finished.posts_refused
            );
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            let state = relay.world().resource::<NegotiatedRelayState>();
            let stats = state.stats();
            println!(
                "relay: {} clients, {} facts held, {} stored, {} sent, {} expired, {} refused",
                state.connected(),
                state.store().len(),
                stats.facts_stored,
                stats.facts_sent,
                stats.facts_expired,
                stats.facts_refused,
            );
        }
        std::thread::sleep(TICK);
    }
    println!("relay: stopped");
    0
}

/// One client: prints its match and exits 0, or gives up after the timeout.
fn client_only(args: &Args, relay: SocketAddr) -> i32 {
    let identity = match args.identity.load("negotiated") {
        Ok(identity) => identity,
        Err(e) => {
            eprintln!("negotiated: {e}");
            return 1;
        }
    };
    let id = fastrand::u64(1..u64::MAX);
    let mut app = match client_app(relay, id, &args.category, &identity) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("negotiated: cannot start a client: {e}");
            return 1;
        }
    };
    println!(
        "client {id}: searching for \"{}\" through {relay}",
        args.category
    );
    let started = Instant::now();
    let mut errors_seen = 0;
    let mut last_state = None;
    let mut connected_once = false;
    loop {
        app.update();
        connected_once |= app
            .world()
            .resource::<bevy_renet::RenetClient>()
            .is_connected();
        let refused = netcode_gave_up(&app);
        if !connected_once && (refused.is_some() || started.elapsed() > args.timeout) {
            eprintln!("client {id}: {}", identity.refusal(relay, refused));
            return 1;
        }
        let state = *app.world().resource::<State<NegotiatedClientState>>().get();
        if args.verbose && last_state != Some(state) {
            println!(
                "client {id}: [{:>5} ms] {state:?} (restarts so far: {})",
                started.elapsed().as_millis(),
                status(&app).restarts
            );
            last_state = Some(state);
        }
        let status = status(&app);
        if let Some(found) = &status.found {
            println!("client {id}: matched: {}", describe(found));
            leave(&mut app);
            return 0;
        }
        if let Some(error) = &status.last_error
            && errors_seen == 0
        {
            errors_seen += 1;
            eprintln!("client {id}: {:?}: {}", error.kind, error.message);
        }
        if started.elapsed() > args.timeout {
            let state = *app.world().resource::<State<NegotiatedClientState>>().get();
            eprintln!(
                "client {id}: no match after {:?} (state {state:?}); is a relay running at {relay} and another client searching?",
                args.timeout
            );
            leave(&mut app);
            return 1;
        }
        std::thread::sleep(TICK);
    }
}

/// Why netcode stopped trying to connect, if it did.
fn netcode_gave_up(app: &App) -> Option<bevy_renet::netcode::NetcodeDisconnectReason> {
    identity::client_gave_up(app.world())
}

/// Leaves politely: keeps the connection up briefly so our last facts (the accept, when
/// we were the requester) reach the relay and are acknowledged, then closes it so the
/// relay sees us go at once (netcode sends its disconnect packets on the next update).
fn leave(app: &mut App) {
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        app.update();
        std::thread::sleep(TICK);
    }
    if let Some(mut client) = app
        .world_mut()
        .get_resource_mut::<bevy_renet::RenetClient>()
    {
        client.disconnect();
    }
    app.update();
}

/// Starts every client whose random start time has come.
fn start_due_clients(
    pending: &mut Vec<(Duration, u64)>,
    clients: &mut Vec<(u64, App)>,
    elapsed: Duration,
    addr: std::net::SocketAddr,
    args: &Args,
    identity: &Identity,
) -> Result<(), String> {
    while let Some((at, id)) = pending.first().copied()
        && at <= elapsed
    {
        pending.remove(0);
        let app = client_app(addr, id, &args.category, identity)
            .map_err(|e| format!("client {id} cannot start: {e}"))?;
        clients.push((id, app));
    }
    Ok(())
}

/// Prints each pair once, when its requester has found its match.
fn print_new_pairs(
    clients: &[(u64, App)],
    reported: &mut std::collections::BTreeSet<u64>,
    elapsed: Duration,
) {
    for (id, app) in clients {
        if let Some(found) = &status(app).found
            && found.role == NegotiatedRole::Requester
            && reported.insert(*id)
        {
            reported.insert(found.other);
            println!(
                "[{:>5} ms] pair: client {} (requester) + client {} (bidder); request {}, bid {}, accept {}",
                elapsed.as_millis(),
                found.me,
                found.other,
                found.request,
                found.bid,
                found.accept,
            );
        }
    }
}

/// Prints the summary line; returns whether every pair was mutual.
fn print_summary(relay: &App, clients: &[(u64, App)], n: usize, started: Instant) -> bool {
    let mut partners = std::collections::BTreeMap::new();
    for (id, app) in clients {
        if let Some(found) = &status(app).found {
            partners.insert(*id, found.other);
        }
    }
    let mutual = partners.iter().all(|(a, b)| partners.get(b) == Some(a));
    let restarts: u32 = clients.iter().map(|(_, a)| status(a).restarts).sum();
    let unmatched: Vec<u64> = clients
        .iter()
        .filter(|(_, a)| status(a).found.is_none())
        .map(|(id, _)| *id)
        .collect();
    let state = relay.world().resource::<NegotiatedRelayState>();
    let stats = state.stats();
    println!(
        "summary: {} pairs from {n} clients in {} ms; unmatched {:?}; {} restarts; relay stored {} facts, sent {}, refused {}; all pairs mutual: {mutual}",
        partners.len() / 2,
        started.elapsed().as_millis(),
        unmatched,
        restarts,
        stats.facts_stored,
        stats.facts_sent,
        stats.facts_refused,
    );
    mutual
}
