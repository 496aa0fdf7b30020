//! What the `server` and `negotiated --relay-only` config files share: durations in seconds
//! that refuse nonsense, the connection gate in the file's units, and reading the file.
//!
//! Included by both with `#[path]`.

// each example that includes this module uses a different part of it
#![allow(dead_code)]

use std::fmt;
use std::path::Path;
use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The longest duration any setting takes: a year (longer is a typo, and would overflow
/// deadlines).
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A duration given as seconds (`0.25`, `2`, `60`): finite, not negative, at most a year.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(pub Duration);

impl Seconds {
    fn from_f64(secs: f64) -> Result<Self, String> {
        if secs.is_nan() {
            return Err("NaN is not a duration".into());
        }
        if secs.is_infinite() {
            return Err("an infinite duration is not allowed (give a number of seconds)".into());
        }
        if secs < 0.0 {
            return Err(format!("{secs} s is negative"));
        }
        if secs > MAX_SECONDS {
            return Err(format!("{secs} s is more than a year ({MAX_SECONDS} s)"));
        }
        Ok(Self(Duration::from_secs_f64(secs)))
    }
}

impl std::str::FromStr for Seconds {
    type Err = String;
    fn from_str(v: &str) -> Result<Self, String> {
        let secs = v
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{v:?} is not a number of seconds"))?;
        Self::from_f64(secs)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

impl Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.as_secs_f64())
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of seconds (0.5, 2, 60)")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Seconds, E> {
                Seconds::from_f64(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
                Seconds::from_f64(v as f64).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                Seconds::from_f64(v as f64).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// [`MatchmakingGatePolicy`], in the file's units.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    pub max_strikes: u32,
    pub disconnect_grace: Seconds,
    pub abuse_cooldown: Seconds,
    pub rate_limit: RateLimitConfig,
}

/// [`MatchmakingRateLimit`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub messages_per_second: u32,
    pub burst: u32,
}

impl From<&MatchmakingGatePolicy> for GateConfig {
    fn from(g: &MatchmakingGatePolicy) -> Self {
        Self {
            max_strikes: g.max_strikes,
            disconnect_grace: Seconds(g.disconnect_grace),
            abuse_cooldown: Seconds(g.abuse_cooldown),
            rate_limit: RateLimitConfig {
                messages_per_second: g.rate_limit.messages_per_second,
                burst: g.rate_limit.burst,
            },
        }
    }
}

impl GateConfig {
    /// The gate policy.
    pub fn policy(&self) -> MatchmakingGatePolicy {
        MatchmakingGatePolicy {
            max_strikes: self.max_strikes,
            disconnect_grace: self.disconnect_grace.0,
            rate_limit: MatchmakingRateLimit {
                messages_per_second: self.rate_limit.messages_per_second,
                burst: self.rate_limit.burst,
            },
            abuse_cooldown: self.abuse_cooldown.0,
        }
    }
}

/// The plugins' default gate (the server's and the relay's are the same).
impl Default for GateConfig {
    fn default() -> Self {
        Self::from(&MatchmakingGatePolicy::default())
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        GateConfig::default().rate_limit
    }
}

/// Reads a `--config` TOML file.
pub fn read_file<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("--config {}: {e}", path.display()))
}
