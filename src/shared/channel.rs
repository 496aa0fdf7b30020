//! The renet channels reserved for matchmaking: one reliable ordered channel per mode,
//! with an id the game chooses. [`AtomicChannel`](crate::atomic::AtomicChannel)
//! and [`NegotiatedChannel`](crate::negotiated::NegotiatedChannel) are both made here.

use bevy_renet::renet::{ChannelConfig, ConnectionConfig, SendType};
use std::time::Duration;

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

/// A mode's channel resource: what the shared systems need to know of it.
pub trait MatchmakingChannelId: bevy::prelude::Resource {
    /// The renet channel id.
    fn channel_id(&self) -> u8;
}

/// Defines a mode's channel resource: an id with a default, its renet configuration and
/// the helpers that add it to a connection config.
macro_rules! define_channel {
    ($(#[$meta:meta])* $name:ident, $default:ident) => {
        // the reflect attribute below names these type data: in scope where the macro runs
        use bevy::prelude::{ReflectDefault, ReflectResource};

        $(#[$meta])*
        #[derive(bevy::prelude::Resource, bevy::reflect::Reflect, Debug, Clone, Copy, PartialEq, Eq)]
        #[reflect(Resource, Debug, Clone, PartialEq, Default)]
        pub struct $name {
            /// The channel id, unique among the game's own channels in each direction.
            pub id: u8,
        }

        impl Default for $name {
            fn default() -> Self {
                Self { id: $default }
            }
        }

        impl $crate::shared::channel::MatchmakingChannelId for $name {
            fn channel_id(&self) -> u8 {
                self.id
            }
        }

        impl $name {
            /// A channel with this id.
            pub fn new(id: u8) -> Self {
                Self { id }
            }

            /// The channel's renet configuration.
            pub fn config(&self) -> bevy_renet::renet::ChannelConfig {
                $crate::shared::channel::reliable_channel_config(self.id)
            }

            /// Adds the channel to both directions of a connection config the game builds.
            ///
            /// # Panics
            /// If the game already uses this channel id in either direction.
            pub fn add_to(&self, config: &mut bevy_renet::renet::ConnectionConfig) {
                $crate::shared::channel::add_reliable_channel(config, self.id, stringify!($name));
            }

            /// Renet's default connection config plus this channel: for a connection that
            /// also carries the game's messages on renet's `DefaultChannel`s.
            pub fn connection_config(&self) -> bevy_renet::renet::ConnectionConfig {
                let mut config = bevy_renet::renet::ConnectionConfig::default();
                self.add_to(&mut config);
                config
            }

            /// A connection config with this channel alone, for a dedicated server and the
            /// clients that connect to it (both sides must use the same channels). renet
            /// does some work per channel per connection every frame, so a server with
            /// thousands of connections spends less with one channel than with four.
            pub fn dedicated_connection_config(&self) -> bevy_renet::renet::ConnectionConfig {
                let mut config = bevy_renet::renet::ConnectionConfig {
                    server_channels_config: Vec::new(),
                    client_channels_config: Vec::new(),
                    ..bevy_renet::renet::ConnectionConfig::default()
                };
                self.add_to(&mut config);
                config
            }
        }
    };
}
pub(crate) use define_channel;
