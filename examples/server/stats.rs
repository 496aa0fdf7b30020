//! The server's numbers: the summary line, the stats JSON (the `--stats-json` file and the
//! HTTP `/stats` endpoint), and the state shared with the HTTP thread and the log tap.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::transport::MatchmakingTransportStats;

/// Why netcode refused a connection packet: what renetcode's server logs for it (the only
/// place it says; see `logging.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefusalCause {
    /// The private part of the token does not decrypt: another key (or not a token).
    BadToken,
    /// The token does not name any of the server's addresses (`--public-addr`).
    WrongServerAddress,
    /// The token expired (or the clocks disagree).
    Expired,
    /// Another netcode version or protocol id.
    Protocol,
    /// Too many clients connecting at once (netcode's pending slots are full).
    Busy,
}

impl RefusalCause {
    pub const ALL: [RefusalCause; 5] = [
        RefusalCause::BadToken,
        RefusalCause::WrongServerAddress,
        RefusalCause::Expired,
        RefusalCause::Protocol,
        RefusalCause::Busy,
    ];

    /// The key in the stats JSON.
    pub fn key(self) -> &'static str {
        match self {
            RefusalCause::BadToken => "bad_token",
            RefusalCause::WrongServerAddress => "wrong_server_address",
            RefusalCause::Expired => "expired",
            RefusalCause::Protocol => "protocol",
            RefusalCause::Busy => "busy",
        }
    }

    /// For the log line.
    pub fn describe(self) -> &'static str {
        match self {
            RefusalCause::BadToken => "bad token (signed with another key?)",
            RefusalCause::WrongServerAddress => {
                "wrong server address (the token names none of this server's addresses: --public-addr?)"
            }
            RefusalCause::Expired => "expired token (or a clock off)",
            RefusalCause::Protocol => "protocol (another netcode version or protocol id)",
            RefusalCause::Busy => "busy (too many clients connecting at once)",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the app, the HTTP thread and the log tap share (in an `Arc`).
#[derive(Default)]
pub struct Shared {
    /// The UDP socket is bound (set before the first update).
    pub bound: AtomicBool,
    /// A drain started.
    pub draining: AtomicBool,
    /// Milliseconds since `started` at the last update: `/healthz` fails when it stalls.
    pub heartbeat_ms: AtomicU64,
    /// The last stats JSON (refreshed about once a second).
    pub snapshot: Mutex<String>,
    /// Connection packets netcode refused, by [`RefusalCause::index`], since start.
    refused: [AtomicU64; RefusalCause::ALL.len()],
    /// Packets renetcode's server dropped for another reason (duplicates, not netcode).
    ignored: AtomicU64,
    pub started: Option<Instant>,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            started: Some(Instant::now()),
            ..default()
        }
    }

    /// Counts a refused connection packet (the log tap calls it).
    pub fn refused(&self, cause: RefusalCause) {
        self.refused[cause.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a packet renetcode dropped that was not a refusal (the log tap calls it).
    pub fn ignored(&self) {
        self.ignored.fetch_add(1, Ordering::Relaxed);
    }

    /// Refused connection packets by cause, since start.
    pub fn refusals(&self) -> BTreeMap<&'static str, u64> {
        RefusalCause::ALL
            .iter()
            .map(|c| (c.key(), self.refused[c.index()].load(Ordering::Relaxed)))
            .collect()
    }

    /// Refused connection packets by cause, in [`RefusalCause::ALL`] order.
    pub fn refusal_counts(&self) -> [u64; RefusalCause::ALL.len()] {
        std::array::from_fn(|i| self.refused[i].load(Ordering::Relaxed))
    }

    /// Milliseconds since the process started.
    pub fn now_ms(&self) -> u64 {
        self.started.map_or(0, |s| s.elapsed().as_millis() as u64)
    }
}

/// What the stats show besides [`AtomicServerStats`].
pub struct Extra<'a> {
    pub connected: usize,
    pub draining: bool,
    pub uptime: Duration,
    pub transport: Option<MatchmakingTransportStats>,
    pub shared: &'a Shared,
}

/// The periodic summary's fields.
pub fn stats_line(stats: &AtomicServerStats, extra: &Extra) -> String {
    let q = stats.time_in_queue.percentiles();
    let c = stats.time_to_commit.percentiles();
    let refused: u64 = extra.shared.refusal_counts().iter().sum();
    format!(
        "connected={} queued={} in_flight={} lobbies={} committed={} rolled_back={} requeued={} dropped={} refused={} netcode_refused_packets={} queue_p50={}ms queue_p99={}ms commit_p50={}ms commit_p99={}ms{}",
        extra.connected,
        stats.total_queued(),
        stats.matches_in_flight,
        stats.lobbies_open,
        stats.matches_committed,
        stats.matches_rolled_back,
        stats.players_requeued,
        stats.healthy_players_dropped,
        stats.connections_refused,
        refused,
        q.p50.as_millis(),
        q.p99.as_millis(),
        c.p50.as_millis(),
        c.p99.as_millis(),
        if extra.draining { " draining" } else { "" },
    )
}

/// The stats as one JSON object (the `--stats-json` file, `/stats`).
pub fn stats_json(stats: &AtomicServerStats, extra: &Extra) -> serde_json::Value {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let q = stats.time_in_queue.percentiles();
    let c = stats.time_to_commit.percentiles();
    let refusals = extra.shared.refusals();
    let mut json = serde_json::json!({
        "matches_committed": stats.matches_committed,
        "matches_rolled_back": stats.matches_rolled_back,
        "matches_formed": stats.matches_formed,
        "players_requeued": stats.players_requeued,
        "healthy_players_dropped": stats.healthy_players_dropped,
        "players_queued": stats.total_queued(),
        "players_queued_by_category": stats.players_queued,
        "matches_in_flight": stats.matches_in_flight,
        "lobbies_open": stats.lobbies_open,
        "connections_refused": stats.connections_refused,
        "netcode_refused_packets": refusals.values().sum::<u64>(),
        "netcode_refused_by_cause": refusals,
        "netcode_ignored_packets": extra.shared.ignored.load(Ordering::Relaxed),
        "connected_clients": extra.connected,
        "draining": extra.draining,
        "uptime_s": extra.uptime.as_secs_f64(),
        "rollbacks_by_status": stats.rollbacks_by_status,
        "time_in_queue_ms": {"p50": ms(q.p50), "p90": ms(q.p90), "p99": ms(q.p99), "max": ms(q.max), "count": q.count},
        "time_to_commit_ms": {"p50": ms(c.p50), "p90": ms(c.p90), "p99": ms(c.p99), "max": ms(c.max), "count": c.count},
    });
    if let Some(t) = extra.transport {
        json["transport"] = serde_json::json!({
            "packets_received": t.packets_received,
            "packets_sent": t.packets_sent,
            "acks_damped": t.acks_damped,
            "acks_bundled": t.acks_bundled,
            "keep_alives_damped": t.keep_alives_damped,
        });
    }
    json
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, flushed, then
/// renamed over `path`, so a reader sees the old file or the new one, never half of one.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let temp: PathBuf = path.with_file_name(name);
    let written = std::fs::File::create(&temp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    let result = written.and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The stats in Prometheus' text format (`/metrics`): every number of the JSON, named by
/// its path, maps as labels.
pub fn prometheus(json: &serde_json::Value) -> String {
    let mut out = String::new();
    let serde_json::Value::Object(fields) = json else {
        return out;
    };
    for (key, value) in fields {
        let name = format!("atomic_matchmaking_{key}");
        match value {
            serde_json::Value::Number(n) => out.push_str(&format!("{name} {n}\n")),
            serde_json::Value::Bool(b) => out.push_str(&format!("{name} {}\n", u8::from(*b))),
            serde_json::Value::Object(inner) => {
                for (label, v) in inner {
                    let Some(n) = v.as_f64() else { continue };
                    if key.ends_with("_ms") || key == "transport" {
                        out.push_str(&format!("{name}_{label} {n}\n"));
                    } else {
                        let label = label.replace('\\', "\\\\").replace('"', "\\\"");
                        out.push_str(&format!("{name}{{key=\"{label}\"}} {n}\n"));
                    }
                }
            }
            _ => {}
        }
    }
    out
}
