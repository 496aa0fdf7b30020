//! `server --redis URL --node-id NAME`: the server as one node of a cluster on one Redis
//! ([`AtomicClusterServerPlugin`]): one logical queue across every node, each match
//! committed atomically across nodes, a dead node's players re-queued by the survivors.
//!
//! It updates at `--tick-hz` (the node's messages come from its own thread, not from a
//! datagram, so `--wake` does not apply). On SIGTERM, SIGINT or at `--run-for` it stops
//! within 0.2 s: its clients are told the server is closing and to retry elsewhere (they
//! reconnect to another node), and the node gives its lease up, so its queued tickets go
//! and the matches it coordinates roll back (their players on other nodes go back in front). The stats (`--stats-json`,
//! `/stats`, `/metrics`) are this node's share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bevy::app::ScheduleRunnerPlugin;
use bevy::prelude::*;
use bevy_atomic_matchmaking::atomic::cluster::{
    AtomicClusterBackend, AtomicClusterClose, AtomicClusterMatchOutcome, AtomicClusterServer,
    AtomicClusterServerPlugin,
};
use bevy_atomic_matchmaking::atomic::core::cluster::AtomicClusterSettings;
use bevy_atomic_matchmaking::atomic::core::store::AtomicStoreLimits;
use bevy_atomic_matchmaking::bevy_renet::RenetServer;
use bevy_atomic_matchmaking::prelude::*;
use serde_json::json;

use crate::config::Config;
use crate::stats::{self, Shared};

/// What the node's own systems need.
#[derive(Resource)]
pub struct ClusterRun {
    pub config: Config,
    pub shared: Arc<Shared>,
    /// SIGINT and SIGTERM received.
    pub signals: Arc<AtomicUsize>,
    last_stats: Duration,
    last_snapshot: Duration,
    /// When the node began closing (its clients told to retry elsewhere).
    closing_since: Option<Duration>,
}

impl ClusterRun {
    pub fn new(config: Config, shared: Arc<Shared>, signals: Arc<AtomicUsize>) -> Self {
        Self {
            config,
            shared,
            signals,
            last_stats: Duration::ZERO,
            last_snapshot: Duration::ZERO,
            closing_since: None,
        }
    }
}

/// The node's settings, from the matchmaking settings of the flags and the file.
fn node_settings(config: &Config) -> AtomicClusterSettings {
    let mm = config.matchmaking.settings();
    let name = config
        .node_id
        .clone()
        .expect("checked: --redis needs --node-id");
    let mut node = AtomicClusterSettings::new(name);
    node.group_size = mm.players_per_match;
    node.timings = mm.commit;
    node.limits = AtomicStoreLimits {
        capacity: mm.queue_capacity,
        max_categories: mm.max_categories,
    };
    node
}

/// The app of a cluster node.
pub fn build_app(config: &Config) -> App {
    let frame = Duration::from_secs_f64(1.0 / config.tick_hz);
    let url = config.redis.clone().expect("checked: cluster mode");
    let backend = AtomicClusterBackend::redis(url, config.redis_prefix.clone());
    let mut app = App::new();
    app.add_plugins(MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(frame)))
        .add_plugins(AtomicClusterServerPlugin {
            channel: AtomicChannel::default(),
            node: node_settings(config),
            backend,
            gate: config.matchmaking.settings().gate,
            seed: fastrand::u64(..),
        })
        .add_systems(Update, (heartbeat, log_outcomes, log_summary, stop).chain());
    app
}

/// The node's stats as one JSON object.
fn stats_json(
    status: &AtomicClusterServer,
    connected: usize,
    run: &ClusterRun,
    uptime: Duration,
) -> serde_json::Value {
    let c = &status.counters;
    json!({
        "mode": "cluster",
        "node": status.node,
        "lease_epoch": status.lease.as_ref().map(|l| l.epoch),
        "store_reachable": status.store_reachable,
        "connected": connected,
        "uptime_s": uptime.as_secs_f64(),
        "matches_claimed": c.claimed,
        "matches_committed": c.committed,
        "matches_rolled_back": c.rolled_back.values().sum::<u64>(),
        "rollbacks": c.rolled_back,
        "leases_lost": c.leases_lost,
        "nodes_reaped": c.reaped,
        "store_unavailable": c.store_unavailable,
        "store_round_trips": c.store_round_trips,
        "inbox_round_trips": c.inbox_round_trips,
        "matches_forming": status.forming,
        "cluster_live_nodes": status.cluster.as_ref().map(|c| c.live_nodes),
        "cluster_matches_forming": status.cluster.as_ref().map(|c| c.matches_forming),
        "cluster_queued_by_category": status.cluster.as_ref().map(|c| &c.queued_by_category),
        "refused_connections": run.shared.refusals(),
    })
}

/// Tells `/healthz` the app is updating, and refreshes `/stats` about once a second.
fn heartbeat(
    time: Res<Time<Real>>,
    status: Res<AtomicClusterServer>,
    renet: Option<Res<RenetServer>>,
    mut run: ResMut<ClusterRun>,
) {
    let shared = run.shared.clone();
    shared
        .heartbeat_ms
        .store(shared.now_ms(), Ordering::Relaxed);
    let now = time.elapsed();
    if run.config.metrics.is_some()
        && now.saturating_sub(run.last_snapshot) >= Duration::from_secs(1)
    {
        run.last_snapshot = now;
        let connected = renet.map_or(0, |r| r.connected_clients());
        let json = stats_json(&status, connected, &run, now).to_string();
        if let Ok(mut snapshot) = shared.snapshot.lock() {
            *snapshot = json;
        }
    }
}

/// Each commit and rollback this node coordinated, at debug (`RUST_LOG=info,server=debug`),
/// in the single server's words.
fn log_outcomes(mut outcomes: MessageReader<AtomicClusterMatchOutcome>) {
    for AtomicClusterMatchOutcome(o) in outcomes.read() {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if o.status.is_success() {
            debug!(
                target: "server",
                "match {} committed: lobby {} category {} players {:?} at_ms {at_ms}",
                o.match_id,
                o.lobby_code.as_deref().unwrap_or("-"),
                o.category,
                o.players
            );
        } else {
            debug!(
                target: "server",
                "match {} rolled back ({}): category {} players {:?} re-queued {:?} at_ms {at_ms}",
                o.match_id, o.status, o.category, o.players, o.requeued
            );
        }
    }
}

/// The summary every `--stats-every`, at info, and the `--stats-json` file rewritten.
fn log_summary(
    time: Res<Time<Real>>,
    status: Res<AtomicClusterServer>,
    renet: Option<Res<RenetServer>>,
    mut run: ResMut<ClusterRun>,
) {
    let now = time.elapsed();
    if now.saturating_sub(run.last_stats) < run.config.stats_every.0 {
        return;
    }
    run.last_stats = now;
    let c = &status.counters;
    info!(
        "node {}: lease {:?}, store {}, {} connected, {} claimed, {} committed, rolled back {:?}",
        status.node,
        status.lease.as_ref().map(|l| l.epoch),
        if status.store_reachable {
            "reachable"
        } else {
            "UNREACHABLE"
        },
        renet.as_ref().map_or(0, |r| r.connected_clients()),
        c.claimed,
        c.committed,
        c.rolled_back
    );
    if run.config.stats_json.is_some() {
        let connected = renet.map_or(0, |r| r.connected_clients());
        write_stats(&stats_json(&status, connected, &run, now), &run);
    }
}

fn write_stats(json: &serde_json::Value, run: &ClusterRun) {
    if let Some(path) = &run.config.stats_json
        && let Err(e) = stats::write_atomically(path, &format!("{json}\n"))
    {
        warn!("cannot write --stats-json {}: {e}", path.display());
    }
}

/// How long a closing node waits for its closing notices to go out before it exits.
const CLOSING: Duration = Duration::from_millis(200);

/// A signal, or `--run-for`, stops the node: its clients are told to retry elsewhere and
/// disconnected, then the final stats, then exit 0 (the plugin gives the lease up as the app
/// goes away).
fn stop(
    time: Res<Time<Real>>,
    status: Res<AtomicClusterServer>,
    renet: Option<Res<RenetServer>>,
    mut run: ResMut<ClusterRun>,
    mut close: MessageWriter<AtomicClusterClose>,
    mut exit: MessageWriter<AppExit>,
) {
    if let Some(since) = run.closing_since {
        if time.elapsed().saturating_sub(since) >= CLOSING {
            exit.write(AppExit::Success);
        }
        return;
    }
    let Some(why) = crate::stop_reason(&run.signals, &run.config, time.elapsed()) else {
        return;
    };
    let connected = renet.map_or(0, |r| r.connected_clients());
    let json = stats_json(&status, connected, &run, time.elapsed());
    write_stats(&json, &run);
    println!(
        "server: node {} stopping after {why}: its clients are told to retry elsewhere and its \
         lease is given up (its queued tickets go, matches it coordinates roll back); final \
         stats {json}",
        status.node
    );
    close.write(AtomicClusterClose);
    run.closing_since = Some(time.elapsed());
}
