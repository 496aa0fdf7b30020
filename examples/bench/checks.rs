//! What could make a scenario's figures misleading, said in its report: how busy the rest
//! of the machine was while it ran, and warnings read off the report itself (dropped
//! datagrams, clients or a server that could not keep their rate, a setup that did not
//! complete); and what makes them wrong, which fails the bench ([`failures`]: clients that
//! reached less than 90 % of the rounds asked measure themselves, not the server).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Args;
use crate::measure::{machine_busy, process_cpu, round3};

/// Other processes using more than this many cores on average make a warning.
const BUSY_MACHINE_CORES: f64 = 0.2;

/// The machine's CPU clocks when a scenario starts.
pub struct Quietness {
    started: Instant,
    busy: Duration,
    own: Duration,
}

impl Quietness {
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            busy: machine_busy(),
            own: process_cpu(),
        }
    }

    /// Cores other processes used on average since the start.
    pub fn other_cores(&self) -> f64 {
        let busy = machine_busy().saturating_sub(self.busy);
        let own = process_cpu().saturating_sub(self.own);
        let other = busy.as_secs_f64() - own.as_secs_f64();
        round3((other / self.started.elapsed().as_secs_f64()).max(0.0))
    }
}

/// A share of the client rounds asked below which a scenario fails.
const CLIENT_KEPT_UP_SHARE: f64 = 0.9;

/// Why `report`'s figures cannot be trusted (the bench exits non-zero): its clients
/// reached less than 90 % of the rounds a second asked (`client_rounds_per_s_reached`
/// against `client_rounds_per_s_asked`), so its times and costs are the clients' lag.
pub fn failures(report: &Value) -> Vec<String> {
    let field = |key: &str| report.get(key).and_then(Value::as_f64);
    let (Some(asked), Some(reached)) = (
        field("client_rounds_per_s_asked"),
        field("client_rounds_per_s_reached"),
    ) else {
        return Vec::new();
    };
    if reached >= CLIENT_KEPT_UP_SHARE * asked {
        return Vec::new();
    }
    vec![format!(
        "the clients reached only {reached} rounds/s of the {asked} asked (below {} %): the figures measure the clients, not the server (fewer --players, more --client-threads, or a lower --client-hz)",
        CLIENT_KEPT_UP_SHARE * 100.0
    )]
}

/// Warnings about `report` (walked recursively), given the flags it ran with.
pub fn warnings(report: &Value, args: &Args, other_cores: f64) -> Vec<String> {
    let mut found = Vec::new();
    if other_cores > BUSY_MACHINE_CORES {
        found.push(format!(
            "other processes used {other_cores} cores on average while this scenario ran: its figures may be pessimistic"
        ));
    }
    walk(report, "", args, &mut found);
    found
}

fn walk(value: &Value, path: &str, args: &Args, found: &mut Vec<String>) {
    let Value::Object(map) = value else {
        return;
    };
    for (key, v) in map {
        let at = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let Some(warning) = check(key, v, &at, args) {
            found.push(warning);
        }
        walk(v, &at, args, found);
    }
}

fn check(key: &str, v: &Value, at: &str, args: &Args) -> Option<String> {
    let number = v.as_f64().unwrap_or(0.0);
    match key {
        "receive_buffer_errors" if number > 0.0 => Some(format!(
            "{at} = {number}: UDP datagrams were dropped because a receive buffer was full; with one server socket and one per client, almost all at the server's (see server_socket_receive_buffer_bytes and --udp-rcvbuf); the server spent no CPU on those"
        )),
        "client_rounds_per_s" if number < 0.9 * args.client_hz => Some(format!(
            "{at} = {number}, below --client-hz {}: the client threads could not check every client that often",
            args.client_hz
        )),
        "server_frames_per_s" if number < 0.9 * args.server_hz => Some(format!(
            "{at} = {number}, below --server-hz {}",
            args.server_hz
        )),
        "healthy_players_dropped" if number > 0.0 => Some(format!(
            "{at} = {number}: the server dropped healthy players"
        )),
        "clients_gave_up" if v.as_object().is_some_and(|m| !m.is_empty()) => Some(format!(
            "{at} = {v}: some clients never connected or lost their connection"
        )),
        "queued_reduced" if !v.is_null() => Some(format!("{at}: {v}")),
        "error" => Some(format!("{at}: {v}")),
        k if k.starts_with("every_") && v == &json!(false) => Some(format!(
            "{at} is false: the scenario's setup or run did not complete"
        )),
        _ => None,
    }
}
