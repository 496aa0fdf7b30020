//! The renet connection config an app runs on, as the plugins check it: the channel each
//! plugin needs must be in it, reliable and ordered, in both directions, and client and
//! server must run on the same config. renet's `RenetServer` and `RenetClient` do not show
//! their channels, so the config is recorded beside them: the transport helpers of
//! [`crate::transport`] and the test harness insert [`MatchmakingConnectionConfig`], and a
//! game that builds its own `RenetServer` or `RenetClient` inserts it too.
//!
//! With it:
//! - a plugin whose channel the config lacks reports that once (a client also writes its
//!   error message) and leaves renet alone, instead of renet panicking on an unknown
//!   channel;
//! - the hello carries the config's [fingerprint](MatchmakingConnectionConfig::fingerprint),
//!   and a server or relay refuses a client whose config differs (a dedicated config
//!   against a shared one, the other mode's, another channel id) with a
//!   `ConfigMismatch` error on both sides.

use std::fmt;

use bevy::prelude::*;
use bevy_renet::renet::{ChannelConfig, ConnectionConfig, DisconnectReason, SendType};

use crate::shared::channel::MatchmakingChannelId;

/// The kind of one renet channel.
#[derive(Reflect, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[reflect(Debug, Clone, PartialEq)]
pub enum MatchmakingChannelKind {
    /// Unreliable.
    Unreliable,
    /// Reliable, unordered.
    ReliableUnordered,
    /// Reliable and ordered: what matchmaking needs.
    ReliableOrdered,
}

/// One channel of one direction of a connection config.
#[derive(Reflect, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[reflect(Debug, Clone, PartialEq)]
pub struct MatchmakingChannelShape {
    /// The channel id.
    pub id: u8,
    /// Its kind.
    pub kind: MatchmakingChannelKind,
}

/// The connection config the app's `RenetServer` or `RenetClient` was built with, as far
/// as the plugins check it (see the [module documentation](self)).
#[derive(Resource, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Resource, Debug, Clone, PartialEq)]
pub struct MatchmakingConnectionConfig {
    /// A hash of every channel (id, kind, memory, resend time) in both directions and of the
    /// bytes per tick: equal on both sides exactly when renet will carry every message.
    pub fingerprint: u64,
    /// The channels the server sends on.
    pub server_channels: Vec<MatchmakingChannelShape>,
    /// The channels the client sends on.
    pub client_channels: Vec<MatchmakingChannelShape>,
}

impl MatchmakingConnectionConfig {
    /// The record of `config`.
    pub fn new(config: &ConnectionConfig) -> Self {
        let shapes = |channels: &[ChannelConfig]| channels.iter().map(shape).collect();
        Self {
            fingerprint: fingerprint(config),
            server_channels: shapes(&config.server_channels_config),
            client_channels: shapes(&config.client_channels_config),
        }
    }

    /// Whether `channel_id` is reliable and ordered in both directions.
    pub fn carries(&self, channel_id: u8) -> bool {
        let reliable = |channels: &[MatchmakingChannelShape]| {
            channels
                .iter()
                .any(|c| c.id == channel_id && c.kind == MatchmakingChannelKind::ReliableOrdered)
        };
        reliable(&self.server_channels) && reliable(&self.client_channels)
    }

    /// `Ok` if the config carries `channel_id` ([`carries`](Self::carries)); otherwise an
    /// error naming the plugin (`who`), its channel and the config's channels.
    pub fn check(&self, channel_id: u8, who: &str) -> Result<(), MatchmakingConfigError> {
        if self.carries(channel_id) {
            return Ok(());
        }
        Err(MatchmakingConfigError {
            message: format!(
                "{who} uses channel {channel_id}, but the connection config has no reliable \
                 ordered channel {channel_id} in both directions (server channels: {}; \
                 client channels: {}). Build the config from the plugin's channel \
                 (connection_config(), dedicated_connection_config() or add_to)",
                list(&self.server_channels),
                list(&self.client_channels)
            ),
        })
    }
}

impl From<&ConnectionConfig> for MatchmakingConnectionConfig {
    fn from(config: &ConnectionConfig) -> Self {
        Self::new(config)
    }
}

/// Run condition: the app's recorded connection config carries the plugin's channel (or no
/// config is recorded: the game built its own and did not say). The plugins run their
/// systems only then, so renet never meets an unknown channel.
pub(crate) fn channel_carried<C: MatchmakingChannelId>(
    channel: Res<C>,
    config: Option<Res<MatchmakingConnectionConfig>>,
) -> bool {
    config.is_none_or(|c| c.carries(channel.channel_id()))
}

/// The problem with the recorded config, if it does not carry `channel`: checked when the
/// config is inserted or changed.
#[cfg_attr(not(any(feature = "client", feature = "negotiated")), allow(dead_code))]
pub(crate) fn config_problem<C: MatchmakingChannelId>(
    channel: &C,
    config: Option<&MatchmakingConnectionConfig>,
    who: &str,
) -> Option<MatchmakingConfigError> {
    config?.check(channel.channel_id(), who).err()
}

/// The fingerprint a hello carries: the recorded config's, or 0 (unknown).
#[cfg_attr(not(any(feature = "client", feature = "negotiated")), allow(dead_code))]
pub(crate) fn hello_fingerprint(config: Option<&MatchmakingConnectionConfig>) -> u64 {
    config.map_or(0, |c| c.fingerprint)
}

/// A server's or relay's check of its recorded config: logs the problem once per change.
#[cfg_attr(not(any(feature = "server", feature = "negotiated")), allow(dead_code))]
pub(crate) fn report_server_config<C: MatchmakingChannelId>(
    channel: Res<C>,
    config: Option<Res<MatchmakingConnectionConfig>>,
) {
    let who = std::any::type_name::<C>()
        .rsplit("::")
        .next()
        .unwrap_or("the plugin");
    if let Some(problem) = config_problem(&*channel, config.as_deref(), who) {
        error!("matchmaking: {problem}; the plugin does not read or send until it is fixed");
    }
}

/// Why renet closed a connection, when the reason shows the two sides' configs differ (the
/// peer sent on a channel this side lacks).
#[cfg_attr(not(any(feature = "server", feature = "negotiated")), allow(dead_code))]
pub(crate) fn config_disagreement(reason: DisconnectReason) -> Option<String> {
    match reason {
        DisconnectReason::ReceivedInvalidChannelId(id) => Some(format!(
            "it sent on channel {id}, which this side's connection config lacks: its config \
             differs (another channel id, or the other mode's config)"
        )),
        _ => None,
    }
}

/// A connection config that cannot carry a plugin's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MatchmakingConfigError {
    /// For humans: which plugin, which channel, and what the config has.
    pub message: String,
}

impl fmt::Display for MatchmakingChannelShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            MatchmakingChannelKind::Unreliable => "unreliable",
            MatchmakingChannelKind::ReliableUnordered => "reliable unordered",
            MatchmakingChannelKind::ReliableOrdered => "reliable ordered",
        };
        write!(f, "{} ({kind})", self.id)
    }
}

fn list(channels: &[MatchmakingChannelShape]) -> String {
    if channels.is_empty() {
        return "none".into();
    }
    let names: Vec<String> = channels.iter().map(ToString::to_string).collect();
    names.join(", ")
}

fn shape(channel: &ChannelConfig) -> MatchmakingChannelShape {
    let kind = match channel.send_type {
        SendType::Unreliable => MatchmakingChannelKind::Unreliable,
        SendType::ReliableUnordered { .. } => MatchmakingChannelKind::ReliableUnordered,
        SendType::ReliableOrdered { .. } => MatchmakingChannelKind::ReliableOrdered,
    };
    MatchmakingChannelShape {
        id: channel.channel_id,
        kind,
    }
}

/// FNV-1a over the config's numbers: stable across builds and Rust versions (the two
/// sides may be built apart), never 0 (0 in a hello means "unknown").
fn fingerprint(config: &ConnectionConfig) -> u64 {
    let mut hash = Fnv::default();
    hash.write(config.available_bytes_per_tick);
    for channels in [
        &config.server_channels_config,
        &config.client_channels_config,
    ] {
        hash.write(channels.len() as u64);
        for channel in channels {
            hash.write(u64::from(channel.channel_id));
            hash.write(channel.max_memory_usage_bytes as u64);
            let (kind, resend) = match channel.send_type {
                SendType::Unreliable => (0, 0),
                SendType::ReliableUnordered { resend_time } => (1, resend_time.as_micros()),
                SendType::ReliableOrdered { resend_time } => (2, resend_time.as_micros()),
            };
            hash.write(kind);
            hash.write(resend as u64);
        }
    }
    hash.0.max(1)
}

/// The 64-bit FNV-1a hash, fed whole `u64`s (little-endian).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, value: u64) {
        for byte in value.to_le_bytes() {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::channel::add_reliable_channel;

    fn with_channel(mut config: ConnectionConfig, id: u8) -> ConnectionConfig {
        add_reliable_channel(&mut config, id, "test");
        config
    }

    #[test]
    fn equal_configs_have_equal_fingerprints_and_any_difference_changes_it() {
        let shared = with_channel(ConnectionConfig::default(), 3);
        let again = with_channel(ConnectionConfig::default(), 3);
        let other_id = with_channel(ConnectionConfig::default(), 4);
        let dedicated = with_channel(
            ConnectionConfig {
                server_channels_config: Vec::new(),
                client_channels_config: Vec::new(),
                ..default()
            },
            3,
        );
        let fp = |c: &ConnectionConfig| MatchmakingConnectionConfig::new(c).fingerprint;
        assert_eq!(fp(&shared), fp(&again));
        assert_ne!(fp(&shared), fp(&other_id));
        assert_ne!(fp(&shared), fp(&dedicated));
        assert_ne!(fp(&shared), 0);
    }

    #[test]
    fn a_missing_or_unordered_channel_is_an_error_naming_both_sides() {
        let record = MatchmakingConnectionConfig::new(&ConnectionConfig::default());
        assert!(
            record.carries(2),
            "renet's default channel 2 is reliable ordered"
        );
        let err = record.check(4, "NegotiatedRelayPlugin").unwrap_err();
        assert!(
            err.message.contains("NegotiatedRelayPlugin uses channel 4"),
            "{err}"
        );
        assert!(err.message.contains("2 (reliable ordered)"), "{err}");
        assert!(err.message.contains("0 (unreliable)"), "{err}");
        assert!(record.check(0, "p").is_err(), "unreliable is not enough");
        assert!(record.check(1, "p").is_err(), "unordered is not enough");
        let ok = MatchmakingConnectionConfig::new(&with_channel(ConnectionConfig::default(), 4));
        assert_eq!(ok.check(4, "NegotiatedRelayPlugin"), Ok(()));
    }
}
