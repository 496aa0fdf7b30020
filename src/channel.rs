//! The renet channel reserved for matchmaking.

use bevy::prelude::*;
use bevy_renet::renet::{ChannelConfig, ConnectionConfig, SendType};
use std::time::Duration;

/// The channel id the plugins use unless told otherwise: the first id after renet's
/// three default channels (0, 1, 2).
pub const DEFAULT_MATCHMAKING_CHANNEL_ID: u8 = 3;

/// The renet channel that carries matchmaking messages (reliable, ordered), with the id
/// the game chose. Insert the same value as a resource on server and client (the
/// plugins do it from their `channel_id` field).
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchmakingChannel {
    /// The channel id, unique among the game's own channels in each direction.
    pub id: u8,
}

impl Default for MatchmakingChannel {
    fn default() -> Self {
        Self {
            id: DEFAULT_MATCHMAKING_CHANNEL_ID,
        }
    }
}

impl MatchmakingChannel {
    /// A channel with this id.
    pub fn new(id: u8) -> Self {
        Self { id }
    }

    /// The channel's renet configuration.
    pub fn config(&self) -> ChannelConfig {
        reliable_channel_config(self.id)
    }

    /// Adds the channel to both directions of a connection config the game builds.
    ///
    /// # Panics
    /// If the game already uses this channel id in either direction.
    pub fn add_to(&self, config: &mut ConnectionConfig) {
        add_reliable_channel(config, self.id, "MatchmakingChannel");
    }

    /// Renet's default connection config plus this channel.
    pub fn connection_config(&self) -> ConnectionConfig {
        let mut config = ConnectionConfig::default();
        self.add_to(&mut config);
        config
    }
}

/// The renet configuration of a matchmaking channel (either mode): reliable ordered, 1 MiB.
pub(crate) fn reliable_channel_config(id: u8) -> ChannelConfig {
    ChannelConfig {
        channel_id: id,
        max_memory_usage_bytes: 1024 * 1024,
        send_type: SendType::ReliableOrdered {
            resend_time: Duration::from_millis(200),
        },
    }
}

/// Adds a matchmaking channel to both directions of `config`; `owner` names the type in
/// the panic message when the id is taken.
pub(crate) fn add_reliable_channel(config: &mut ConnectionConfig, id: u8, owner: &str) {
    for channels in [
        &mut config.server_channels_config,
        &mut config.client_channels_config,
    ] {
        assert!(
            channels.iter().all(|c| c.channel_id != id),
            "channel id {id} is already used by the game; choose another {owner} id"
        );
        channels.push(reliable_channel_config(id));
    }
}
