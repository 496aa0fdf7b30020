//! Negotiated matchmaking over UDP: clients pair themselves through Request, Bid and
//! Accept facts, with a relay that only stores, forwards and tells the time.
//!
//! ```text
//! cargo run --example negotiated -- [--clients N] [--frame SECONDS] [--timeout SECONDS] [--insecure]
//!     a relay and N clients (default 10) in one process over UDP loopback; prints each
//!     pair and a summary, exits 0 once everyone who can pair did
//! cargo run --example negotiated -- --relay-only [--config relay.toml] [--addr ADDR]
//!     [--frame SECONDS] [--run-for SECONDS] [--drain-timeout SECONDS] [--journal DIR]
//!     [--key-file PATH] [--insecure] [--print-config] ...
//!     just the relay (default 127.0.0.1:5001), until SIGTERM or Ctrl-C, then a drain;
//!     `--help` lists every relay setting (limits, connection gate) with its default
//! cargo run --example negotiated -- --client ADDR[,ADDR...] [--category NAME] [--timeout SECONDS]
//!     [--token-timeout SECONDS] [--verbose] [--key-file PATH] [--insecure]
//!     one client (default timeout 20 s) of the relays at these addresses: it connects to
//!     the first and, when its relay goes silent (no packet for --token-timeout, default
//!     15 s) or closes the connection, fails over to the next, round the list; prints its
//!     match and exits 0, or exits 1 after the timeout (or once every relay refused it);
//!     --verbose prints each state change and failover
//! cargo run --example negotiated -- --client ADDR[,ADDR...] --clients N [--categories a,b,c]
//!     [--run-for SECONDS] [--json] [--token-timeout SECONDS] [--key-file PATH] [--insecure]
//!     the load mode: N clients in one process, client i starting on relay i % count and
//!     searching category i % count (default --category), each searching again after each
//!     match, all failing over as above, until --run-for (default 10 s); exits 0, or 1 if
//!     a client never matched; --json prints one JSON object a line (see load.rs)
//! ```
//!
//! Secure by default: the relay accepts only connect tokens minted with its key. The
//! one-process mode makes a key in memory; `--relay-only` reads (or creates) `--key-file`
//! (default `target/matchmaking-dev.key` of this crate) and `--client` mints its token from
//! the same file, standing in for a game's backend. `--insecure` uses netcode's unsecure
//! mode instead (clients pick their own ids): local experiments only.
//!
//! Exit codes: 0 done (or drained); 1 no match in time, a socket could not be bound, or a
//! key file could not be read; 2 a setting was refused at start (a bad flag, an unknown or
//! bad key in `--config`, a journal that cannot be opened); 130 a second signal.
//!
//! The clients' connect tokens name every relay of `--client` (a relay accepts only tokens
//! naming its address) and stay valid for the whole run; their connection timeout is
//! `--token-timeout`, which is also how long a silent relay takes to be given up.
//!
//! Files: `config.rs` (flags, the relay's config file, checks), `relay.rs` (`--relay-only`),
//! `load.rs` (`--client --clients N`).

mod config;
mod load;
mod relay;

#[path = "../common/identity.rs"]
mod identity;
#[path = "../common/settings.rs"]
mod settings;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{
    DEFAULT_TOKEN_VALIDITY, MatchmakingFailover, insert_client_with_failover,
};

use config::{Args, Mode};
use identity::Identity;

const TICK: Duration = Duration::from_millis(5);

/// The exit code for settings refused at start.
const EXIT_CONFIG: i32 = 2;
/// The exit code after a second signal.
const EXIT_SECOND_SIGNAL: i32 = 130;

fn refuse(problems: &[String]) -> ! {
    for problem in problems {
        eprintln!("negotiated: {problem}");
    }
    eprintln!("negotiated: refusing to start (see negotiated --help)");
    std::process::exit(EXIT_CONFIG);
}

fn main() {
    let args = config::load().unwrap_or_else(|problems| refuse(&problems));
    if args.print_config {
        print!("{}", config::to_toml(&args.config));
        return;
    }
    let code = match &args.mode {
        Mode::Together { clients } => together(&args, *clients),
        Mode::Relay => relay::relay_only(&args),
        Mode::Client { relays } => client_only(&args, relays),
        Mode::Load { relays, clients } => load::load(&args, relays, *clients),
    };
    std::process::exit(code);
}

fn relay_app(
    addr: SocketAddr,
    settings: NegotiatedRelaySettings,
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
    app.add_plugins(NegotiatedRelayPlugin { channel, settings });
    app.finish(); // the loop drives it by update(): finish the plugins' set-up as run() would
    app.cleanup();
    Ok((app, bound))
}

/// A client app for player `id`, connected to the first of `relays` and failing over
/// between them (its token, when secure, valid for `valid_for`), searching `category`.
fn client_app(
    relays: &[SocketAddr],
    id: u64,
    category: &str,
    identity: &Identity,
    valid_for: Duration,
) -> std::io::Result<App> {
    let channel = NegotiatedChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins);
    let config = channel.dedicated_connection_config();
    let failover = identity.failover(relays, id, config, valid_for)?;
    insert_client_with_failover(&mut app, failover)?;
    app.add_plugins(NegotiatedClientPlugin {
        channel,
        settings: NegotiatedClientSettings {
            bid_timeout: Duration::from_secs(1),
            time_sync_interval: Duration::from_secs(2),
            ..default()
        },
    });
    app.add_systems(Update, move_on_when_the_relay_closes);
    // the plugin keeps the search until the relay welcomed us and the clock is synced
    app.world_mut().write_message(NegotiatedSearch {
        category: category.to_owned(),
    });
    app.finish(); // the loop drives it by update(): finish the plugins' set-up as run() would
    app.cleanup();
    Ok(app)
}

/// A relay that drains says so: move on to the next relay at once, instead of when it
/// closes the connection (a client with one relay stays, so that a negotiation under way
/// may still complete).
fn move_on_when_the_relay_closes(
    mut closing: MessageReader<NegotiatedRelayClosing>,
    failover: Option<ResMut<MatchmakingFailover>>,
) {
    let elsewhere = closing.read().any(|c| c.retry_elsewhere);
    if let Some(mut failover) = failover
        && elsewhere
        && failover.servers().len() > 1
    {
        failover.fail_over_now();
    }
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
    let identity = identity.with_token_timeout(args.client.token_timeout);
    let settings = args
        .config
        .relay
        .settings()
        .unwrap_or_else(|e| refuse(&[e]));
    let any: SocketAddr = "127.0.0.1:0".parse().expect("valid");
    let (mut relay, addr) = match relay_app(any, settings, &identity) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("negotiated: cannot bind the relay: {e}");
            return 1;
        }
    };
    println!(
        "relay on {addr} ({}), frames of {:?}; {n} clients search for \"{}\" at random moments over 1 s",
        identity.describe(None),
        args.config.relay.frame_duration.0,
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

/// One client of `relays`, failing over between them: prints its match and exits 0, or
/// gives up after the timeout (or once every relay refused it).
fn client_only(args: &Args, relays: &[SocketAddr]) -> i32 {
    let identity = match args.identity.load("negotiated") {
        Ok(identity) => identity.with_token_timeout(args.client.token_timeout),
        Err(e) => {
            eprintln!("negotiated: {e}");
            return 1;
        }
    };
    let id = fastrand::u64(1..u64::MAX);
    let valid_for = args.timeout + DEFAULT_TOKEN_VALIDITY;
    let mut app = match client_app(relays, id, &args.category, &identity, valid_for) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("negotiated: cannot start a client: {e}");
            return 1;
        }
    };
    println!(
        "client {id}: searching for \"{}\" through {}",
        args.category,
        list(relays)
    );
    let started = Instant::now();
    let mut errors_seen = 0;
    let mut last = (None, 0);
    let mut connected_once = false;
    loop {
        app.update();
        connected_once |= app
            .world()
            .resource::<bevy_renet::RenetClient>()
            .is_connected();
        if !connected_once
            && let Some(why) = refused_everywhere(&app, &identity, args.timeout, started)
        {
            eprintln!("client {id}: {why}");
            return 1;
        }
        if args.verbose {
            print_changes(&app, id, started, &mut last);
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
                "client {id}: no match after {:?} (state {state:?}); is a relay running at {} and another client searching?",
                args.timeout,
                list(relays)
            );
            leave(&mut app);
            return 1;
        }
        std::thread::sleep(TICK);
    }
}

/// Addresses as `--client` spells them.
fn list(relays: &[SocketAddr]) -> String {
    let relays: Vec<String> = relays.iter().map(ToString::to_string).collect();
    relays.join(",")
}

/// For a client that never connected: why, once netcode gave up on the last relay of the
/// first round (or the timeout passed).
fn refused_everywhere(
    app: &App,
    identity: &Identity,
    timeout: Duration,
    started: Instant,
) -> Option<String> {
    let failover = app.world().get_resource::<MatchmakingFailover>()?;
    let relay = failover.current_server()?;
    let refused = netcode_gave_up(app);
    let last = failover.failovers() as usize + 1 >= failover.servers().len();
    ((refused.is_some() && last) || started.elapsed() > timeout)
        .then(|| identity.refusal(relay, refused))
}

/// `--verbose`: prints each state change, and each failover.
fn print_changes(
    app: &App,
    id: u64,
    started: Instant,
    last: &mut (Option<NegotiatedClientState>, u32),
) {
    let ms = started.elapsed().as_millis();
    let state = *app.world().resource::<State<NegotiatedClientState>>().get();
    if last.0 != Some(state) {
        let restarts = status(app).restarts;
        println!("client {id}: [{ms:>5} ms] {state:?} (restarts so far: {restarts})");
        last.0 = Some(state);
    }
    if let Some(failover) = app.world().get_resource::<MatchmakingFailover>()
        && failover.failovers() != last.1
    {
        last.1 = failover.failovers();
        let to = failover
            .current_server()
            .map_or("-".into(), |a| a.to_string());
        println!(
            "client {id}: [{ms:>5} ms] failover {}: connecting to {to}",
            last.1
        );
    }
}

/// Why netcode stopped trying to connect, if it did.
fn netcode_gave_up(app: &App) -> Option<bevy_renet::netcode::NetcodeDisconnectReason> {
    identity::client_gave_up(app.world())
}

/// Leaves politely: keeps the connection up briefly so our last facts (the accept, when
/// we were the requester) reach the relay and are acknowledged, then closes it so the
/// relay sees us go at once.
fn leave(app: &mut App) {
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        app.update();
        std::thread::sleep(TICK);
    }
    // closed by the game: the failover stops too
    bevy_atomic_matchmaking::transport::matchmaking_disconnect_now(app.world_mut());
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
        let valid_for = args.timeout + DEFAULT_TOKEN_VALIDITY;
        let app = client_app(&[addr], id, &args.category, identity, valid_for)
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
