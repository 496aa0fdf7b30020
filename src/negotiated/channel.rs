//! The renet channel reserved for negotiated matchmaking.

use bevy::prelude::*;
use bevy_renet::renet::{ChannelConfig, ConnectionConfig};

use crate::channel::{add_reliable_channel, reliable_channel_config};

/// The channel id the negotiated plugins use unless told otherwise: the one after the
/// atomic [`MatchmakingChannel`](crate::channel::MatchmakingChannel)'s default (3), so a
/// game can run both modes on one connection.
pub const DEFAULT_NEGOTIATED_CHANNEL_ID: u8 = 4;

/// The renet channel that carries negotiated-matchmaking messages (reliable, ordered),
/// with the id the game chose. Insert the same value on relay and clients (the plugins do
/// it from their `channel` field).
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatedChannel {
    /// The channel id, unique among the game's own channels in each direction.
    pub id: u8,
}

impl Default for NegotiatedChannel {
    fn default() -> Self {
        Self {
            id: DEFAULT_NEGOTIATED_CHANNEL_ID,
        }
    }
}

impl NegotiatedChannel {
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
        add_reliable_channel(config, self.id, "NegotiatedChannel");
    }

    /// Renet's default connection config plus this channel.
    pub fn connection_config(&self) -> ConnectionConfig {
        let mut config = ConnectionConfig::default();
        self.add_to(&mut config);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::MatchmakingChannel;

    #[test]
    fn both_modes_share_a_connection() {
        let mut config = NegotiatedChannel::default().connection_config();
        MatchmakingChannel::default().add_to(&mut config);
        assert_eq!(config.server_channels_config.len(), 5);
        assert_eq!(config.client_channels_config.len(), 5);
    }

    #[test]
    #[should_panic(expected = "already used")]
    fn a_taken_id_panics() {
        let mut config = NegotiatedChannel::new(1).connection_config();
        NegotiatedChannel::new(1).add_to(&mut config);
    }
}
