//! The renet channel reserved for negotiated matchmaking.

/// The channel id the negotiated plugins use unless told otherwise: the one after the
/// atomic [`AtomicChannel`](crate::atomic::AtomicChannel)'s default (3), so a
/// game can run both modes on one connection.
pub const DEFAULT_NEGOTIATED_CHANNEL_ID: u8 = 4;

crate::shared::channel::define_channel!(
    /// The renet channel that carries negotiated-matchmaking messages (reliable, ordered),
    /// with the id the game chose. Insert the same value on relay and clients (the plugins
    /// do it from their `channel` field).
    NegotiatedChannel,
    DEFAULT_NEGOTIATED_CHANNEL_ID
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::AtomicChannel;

    #[test]
    fn both_modes_share_a_connection() {
        let mut config = NegotiatedChannel::default().connection_config();
        AtomicChannel::default().add_to(&mut config);
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
