//! Logs: one tracing subscriber for everything (the server's events, the plugin's, renet's
//! `log` records), filtered by `RUST_LOG` (default [`DEFAULT_FILTER`]), on stderr in
//! `--log-format`, colours only on a terminal (and without `NO_COLOR`).
//!
//! renetcode's server logs every connection packet it refuses (at ERROR or WARN, with the
//! cause) and nothing else says why: a client with a wrong key retries 4 times a second, so
//! printed as is anyone could flood the log. A tap layer reads those records instead, counts
//! them by cause (the stats' `netcode_refused_by_cause`) and the server logs one line a
//! second at most (`refusal_summary` in main.rs). They are hidden from the log unless
//! `RUST_LOG` names `renetcode`. The tap has its own filter, so `RUST_LOG=off` silences
//! the log but not the counts. What renetcode does not log cannot be counted: a token
//! refused because the server is full (it answers "denied", silently), or a client already
//! connected from the same address or id (logged at DEBUG only, and not a refusal).

use std::io::IsTerminal;
use std::sync::Arc;

use bevy::log::tracing::{Event, Level, Metadata, Subscriber, field};
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;
use crate::stats::{RefusalCause, Shared};

/// The filter without `RUST_LOG`: info (the plugin logs each commit and rollback at debug,
/// and so does the server, target `server`).
const DEFAULT_FILTER: &str = "info";

/// The log target whose refusals the tap counts.
const RENETCODE_SERVER: &str = "renetcode::server";

/// Installs the subscriber (and the `log` bridge); an error for a bad `RUST_LOG`.
pub fn init(format: LogFormat, shared: Arc<Shared>) -> Result<(), String> {
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();
    let directives = match rust_log.trim() {
        "" => DEFAULT_FILTER,
        set => set,
    };
    let env = EnvFilter::builder()
        .parse(directives)
        .map_err(|e| format!("RUST_LOG={rust_log:?}: {e}"))?;
    // renetcode's refusals are summarised by the tap unless RUST_LOG asks for them
    let reveal = rust_log.contains("renetcode");
    let shown = filter_fn(move |m| reveal || !is_refusal_record(m));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    type Boxed = Box<dyn Layer<Registry> + Send + Sync>;
    let fmt: Boxed = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(env.and(shown))
            .boxed(),
        LogFormat::Plain => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .without_time()
            .with_level(false)
            .with_filter(env.and(shown))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(env.and(shown))
            .boxed(),
    };
    let tap: Boxed = RefusalTap(shared).with_filter(TapFilter).boxed();
    Registry::default()
        .with(vec![fmt, tap])
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

/// A renetcode server record at WARN or ERROR: a refused or dropped packet.
fn is_refusal_record(m: &Metadata<'_>) -> bool {
    *m.level() <= Level::WARN && m.target().starts_with(RENETCODE_SERVER)
}

/// Lets through renetcode's server records at WARN and ERROR only.
struct TapFilter;

impl<S: Subscriber> Filter<S> for TapFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        is_refusal_record(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::WARN)
    }
}

/// Counts renetcode's refusals by cause.
struct RefusalTap(Arc<Shared>);

impl<S: Subscriber> Layer<S> for RefusalTap {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut message = MessageVisitor(String::new());
        event.record(&mut message);
        match classify(&message.0) {
            Some(cause) => self.0.refused(cause),
            None => self.0.ignored(),
        }
    }
}

/// The cause of a refusal, from renetcode's message (its `NetcodeError` texts); `None` for
/// packets it dropped for another reason (a duplicate, too short, not netcode).
fn classify(message: &str) -> Option<RefusalCause> {
    let causes = [
        ("error while encoding or decoding", RefusalCause::BadToken),
        (
            "token does not contain the server address",
            RefusalCause::WrongServerAddress,
        ),
        ("connection expired", RefusalCause::Expired),
        ("invalid version info", RefusalCause::Protocol),
        ("invalid protocol id", RefusalCause::Protocol),
        ("max amount allowed of pending clients", RefusalCause::Busy),
        ("unable to add connect token entry", RefusalCause::Busy),
    ];
    causes
        .iter()
        .find(|(text, _)| message.contains(text))
        .map(|&(_, cause)| cause)
}

/// The `message` field of an event (a `log` record's text).
struct MessageVisitor(String);

impl field::Visit for MessageVisitor {
    fn record_str(&mut self, f: &field::Field, value: &str) {
        if f.name() == "message" {
            self.0 = value.to_owned();
        }
    }

    fn record_debug(&mut self, f: &field::Field, value: &dyn std::fmt::Debug) {
        if f.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
