//! `--client A,B,C --clients N`: the load mode. N client apps in one process, each with its
//! own UDP socket and a connect token naming every relay of the list, against relays
//! running elsewhere. Client `i` starts on relay `i % count` (its list is rotated to start
//! there) and searches category `i % count` of `--categories`; after each match it "plays"
//! for `--rematch-after` (default 0.5 s) and searches again (a new search), until
//! `--run-for` ends. Each fails over to the next relay of its list when its relay goes
//! silent or closes the connection (and at once when it says it drains).
//!
//! It exits 0, or 1 if a client never matched (or could not start). With `--json`, stdout
//! has one JSON object per line, keys in alphabetical order (anything else goes to stderr):
//!
//! ```text
//! {"accept":"2be8fe6d8440942e","bid":"93943a96cca90c70","category":"duel","client":7,"event":"matched","other":12,"relay":"127.0.0.1:5001","request":"e08e128e7e75ec7e","role":"requester","search":3,"t_ms":812}
//! {"client":7,"event":"failover","from":"127.0.0.1:5001","reason":"connection timed out","t_ms":9120,"to":"127.0.0.1:5002"}
//! {"clients":20,"errors":192,"event":"summary","failovers":10,"matches":726,"never_matched":0,"pairs":363,"rounds_per_s":180.2}
//! ```
//!
//! - `matched`: one per client per match. `role` is `requester` or `bidder`; `request`,
//!   `bid` and `accept` are the facts' ids as the crate prints them (both players of a pair
//!   print the same three); `search` counts the client's searches from 1, so a client that
//!   is matched twice in one search shows it; `relay` is the address the client was
//!   connected to when the match was found; `t_ms` is since the start of the run.
//! - `failover`: the client's relay went silent or closed the connection, and it now
//!   connects to `to`.
//! - `summary`, last: `matches` counts the `matched` lines (two per pair), `pairs` the
//!   distinct accepts, `failovers` the `failover` lines, `never_matched` the clients with
//!   no match, `errors` the errors the client plugins reported (each printed on stderr
//!   with `--verbose`: a lost connection, a connection that never opened, a refused post),
//!   `rounds_per_s` how many times a second every client app was updated.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::{
    DEFAULT_TOKEN_VALIDITY, MatchmakingFailedOver, matchmaking_disconnect_now,
};
use serde_json::json;

use crate::config::Args;
use crate::{TICK, client_app, list};

/// What a client app saw this update, for the loop to print.
#[derive(Resource, Default)]
struct Log {
    /// Each match, with the relay the client was connected to.
    found: Vec<(NegotiatedMatchFound, Option<SocketAddr>)>,
    failovers: Vec<MatchmakingFailedOver>,
    errors: Vec<NegotiatedClientError>,
    /// Each welcome, with the relay that welcomed the client.
    connected: Vec<Option<SocketAddr>>,
}

/// Notes this frame's matches (with the relay), failovers and errors.
fn record(
    mut log: ResMut<Log>,
    target: Option<Res<MatchmakingConnectTarget>>,
    mut found: MessageReader<NegotiatedMatchFound>,
    mut failovers: MessageReader<MatchmakingFailedOver>,
    mut errors: MessageReader<NegotiatedClientError>,
    mut connected: MessageReader<NegotiatedConnected>,
) {
    let relay = target.map(|t| t.server);
    log.connected.extend(connected.read().map(|_| relay));
    log.found.extend(found.read().map(|f| (f.clone(), relay)));
    log.failovers.extend(failovers.read().cloned());
    log.errors.extend(errors.read().cloned());
}

/// One client of the run.
struct Client {
    id: u64,
    category: String,
    app: App,
    /// Searches so far (the first starts with the app).
    search: u32,
    matches: u32,
    /// When the client searches again after its last match (`--rematch-after`).
    rematch_at: Option<Instant>,
    /// When its current search started.
    searched_at: Instant,
}

/// The run's counts, for the summary.
#[derive(Default)]
struct Totals {
    matches: u64,
    accepts: BTreeSet<String>,
    failovers: u64,
    errors: u64,
    /// Errors by kind.
    error_kinds: BTreeMap<String, u64>,
}

/// The load mode; returns the exit code.
pub fn load(args: &Args, relays: &[SocketAddr], n: usize) -> i32 {
    let identity = match args.identity.load("negotiated") {
        Ok(identity) => identity.with_token_timeout(args.client.token_timeout),
        Err(e) => {
            eprintln!("negotiated: {e}");
            return 1;
        }
    };
    let run_for = args.client.run_for;
    // the tokens must outlive the run: a failover near its end still connects
    let valid_for = run_for + DEFAULT_TOKEN_VALIDITY;
    let categories = &args.client.categories;
    let first_id = fastrand::u64(1..u64::MAX / 2);
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut own = relays.to_vec();
        own.rotate_left(i % relays.len());
        let id = first_id + i as u64;
        let category = categories[i % categories.len()].clone();
        match client_app(&own, id, &category, &identity, valid_for) {
            Ok(mut app) => {
                app.init_resource::<Log>()
                    .add_systems(PostUpdate, record.after(NegotiatedClientSystems::Drive));
                clients.push(Client {
                    id,
                    category,
                    app,
                    search: 1,
                    searched_at: Instant::now(),
                    matches: 0,
                    rematch_at: None,
                });
            }
            Err(e) => {
                eprintln!("negotiated: client {id} cannot start: {e}");
                return 1;
            }
        }
    }
    eprintln!(
        "negotiated: {n} clients of {} searching {} for {run_for:?} (tokens time out after {:?})",
        list(relays),
        categories.join(","),
        args.client.token_timeout
    );
    let (totals, rounds_per_s) = run(args, &mut clients, run_for);
    if args.client.json {
        print_final_states(&clients);
    }
    for client in &mut clients {
        matchmaking_disconnect_now(client.app.world_mut());
        client.app.update();
    }
    let never = clients.iter().filter(|c| c.matches == 0).count();
    print_summary(args, n, &totals, never, rounds_per_s);
    if never > 0 { 1 } else { 0 }
}

/// Updates every client app once a round until `run_for` passed, printing what happens
/// and searching again after each match; returns the totals and the rounds a second.
fn run(args: &Args, clients: &mut [Client], run_for: Duration) -> (Totals, f64) {
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut rounds = 0u64;
    while started.elapsed() < run_for {
        for client in clients.iter_mut() {
            if client.rematch_at.is_some_and(|at| at <= Instant::now()) {
                client.rematch_at = None;
                client.search += 1;
                client.searched_at = Instant::now();
                client.app.world_mut().write_message(NegotiatedSearch {
                    category: client.category.clone(),
                });
            }
            client.app.update();
            let log = std::mem::take(&mut *client.app.world_mut().resource_mut::<Log>());
            let t_ms = started.elapsed().as_millis() as u64;
            report(args, client, log, t_ms, &mut totals);
        }
        rounds += 1;
        std::thread::sleep(TICK);
    }
    let rounds_per_s = rounds as f64 / started.elapsed().as_secs_f64();
    (totals, rounds_per_s)
}

/// Prints one client's events of this update; after a match it searches again.
fn report(args: &Args, client: &mut Client, log: Log, t_ms: u64, totals: &mut Totals) {
    for (found, relay) in log.found {
        totals.matches += 1;
        totals.accepts.insert(found.accept.to_string());
        client.matches += 1;
        print_match(args.client.json, client, &found, relay, t_ms);
        client.rematch_at = Some(Instant::now() + args.client.rematch_after);
    }
    for f in log.failovers {
        totals.failovers += 1;
        if args.client.json {
            let line = json!({"event": "failover", "client": client.id, "from": f.from.to_string(),
                "to": f.to.to_string(), "reason": f.reason, "t_ms": t_ms});
            println!("{line}");
        } else {
            println!(
                "[{t_ms:>6} ms] client {} failed over from {} to {} ({})",
                client.id, f.from, f.to, f.reason
            );
        }
    }
    for relay in log.connected {
        if args.client.json {
            let relay = relay.map_or_else(String::new, |r| r.to_string());
            let line = json!({"event": "connected", "client": client.id, "relay": relay,
                "t_ms": t_ms});
            println!("{line}");
        }
    }
    for error in log.errors {
        totals.errors += 1;
        *totals
            .error_kinds
            .entry(format!("{:?}", error.kind))
            .or_default() += 1;
        if args.verbose {
            eprintln!("client {}: {:?}: {}", client.id, error.kind, error.message);
        }
    }
}

/// One `matched` line.
fn print_match(
    json: bool,
    client: &Client,
    found: &NegotiatedMatchFound,
    relay: Option<SocketAddr>,
    t_ms: u64,
) {
    let role = match found.role {
        NegotiatedRole::Requester => "requester",
        NegotiatedRole::Bidder => "bidder",
    };
    let relay = relay.map_or_else(String::new, |r| r.to_string());
    if json {
        let line = json!({"event": "matched", "client": found.me, "other": found.other,
            "category": found.category, "role": role, "request": found.request.to_string(),
            "bid": found.bid.to_string(), "accept": found.accept.to_string(),
            "search": client.search, "relay": relay, "t_ms": t_ms,
            "wait_ms": client.searched_at.elapsed().as_millis() as u64});
        println!("{line}");
    } else {
        println!(
            "[{t_ms:>6} ms] client {} ({role}, search {}) plays client {} in {} through {relay}; accept {}",
            found.me, client.search, found.other, found.category, found.accept
        );
    }
}

/// Where each client is at the end: `{"event":"final","client":..,"state":".."}`, the
/// client plugin's state, or `Resting` between a match and the next search.
fn print_final_states(clients: &[Client]) {
    for client in clients {
        let state = *client
            .app
            .world()
            .resource::<State<NegotiatedClientState>>()
            .get();
        let state = match (state, client.rematch_at) {
            (_, Some(_)) => "Resting".to_owned(),
            (state, None) => format!("{state:?}"),
        };
        println!(
            "{}",
            json!({"event": "final", "client": client.id, "state": state, "search": client.search})
        );
    }
}

/// The last line.
fn print_summary(args: &Args, n: usize, totals: &Totals, never: usize, rounds_per_s: f64) {
    let rounds_per_s = (rounds_per_s * 10.0).round() / 10.0;
    if args.client.json {
        let line = json!({"event": "summary", "clients": n, "matches": totals.matches,
            "pairs": totals.accepts.len(), "failovers": totals.failovers,
            "never_matched": never, "errors": totals.errors, "errors_by_kind": totals.error_kinds,
            "rounds_per_s": rounds_per_s});
        println!("{line}");
    } else {
        println!(
            "summary: {n} clients, {} matches ({} pairs), {} failovers, {never} never matched, {} errors, {rounds_per_s} rounds/s",
            totals.matches,
            totals.accepts.len(),
            totals.failovers,
            totals.errors
        );
    }
}
