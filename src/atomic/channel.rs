//! The renet channel reserved for atomic matchmaking.

/// The channel id the plugins use unless told otherwise: the first id after renet's
/// three default channels (0, 1, 2).
pub const DEFAULT_ATOMIC_CHANNEL_ID: u8 = 3;

crate::shared::channel::define_channel!(
    /// The renet channel that carries atomic matchmaking messages (reliable, ordered),
    /// with the id the game chose. Insert the same value as a resource on server and
    /// client (the plugins do it from their `channel` field).
    AtomicChannel,
    DEFAULT_ATOMIC_CHANNEL_ID
);
