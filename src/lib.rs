#![doc = include_str!("../README.md")]
#![forbid(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod atomic;
/// The bevy_renet this crate is built on, so a game that names renet's types (a
/// `RenetClient`, a `ConnectionConfig`) uses the same copy and never pins a second one.
pub use bevy_renet;
#[cfg(feature = "negotiated")]
pub mod negotiated;
pub mod shared;
pub use shared::plugins::MatchmakingPlugins;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "transport")]
pub mod transport;

/// Everything a game needs, for glob import: the items of every enabled mode.
pub mod prelude {
    pub use crate::atomic::channel::{AtomicChannel, DEFAULT_ATOMIC_CHANNEL_ID};
    #[cfg(feature = "client")]
    pub use crate::atomic::client::{
        AtomicClientError, AtomicClientPlugin, AtomicClientSettings, AtomicClientState,
        AtomicClientStatus, AtomicClientSystems, AtomicConnected, AtomicJoinQueue,
        AtomicLeaveLobby, AtomicLeaveQueue, AtomicLobbyLeft, AtomicMatchCancelled,
        AtomicMatchChecking, AtomicMatchFound, AtomicMatchProposed, AtomicQueueJoined,
        AtomicQueueLeft, AtomicServerClosing,
    };
    pub use crate::atomic::core::commit::{
        AtomicCommitTimings, AtomicHealthCheck, AtomicMatchStatus,
    };
    pub use crate::atomic::core::protocol::{
        ATOMIC_PROTOCOL_VERSION, AtomicErrorKind, AtomicMatchCancelReason, AtomicMatchedPlayer,
    };
    #[cfg(feature = "server")]
    pub use crate::atomic::server::{
        AtomicDrain, AtomicDrainFinished, AtomicLobby, AtomicMatch, AtomicMatchCommitted,
        AtomicMatchOutcome, AtomicPlayerHealth, AtomicPlayerLocation, AtomicServerPlugin,
        AtomicServerSettings, AtomicServerState, AtomicServerStats, AtomicServerSystems,
        AtomicSettingsError,
    };
    #[cfg(all(feature = "negotiated", feature = "redis"))]
    pub use crate::negotiated::redis::NegotiatedRedisStore;
    #[cfg(feature = "negotiated")]
    pub use crate::negotiated::{
        channel::{DEFAULT_NEGOTIATED_CHANNEL_ID, NegotiatedChannel},
        client::{
            NegotiatedBidPlaced, NegotiatedCancelSearch, NegotiatedCancelled,
            NegotiatedClientError, NegotiatedClientPlugin, NegotiatedClientSettings,
            NegotiatedClientState, NegotiatedClientStatus, NegotiatedClientSystems,
            NegotiatedConnected, NegotiatedMatchFound, NegotiatedRelayClosing,
            NegotiatedRequestPosted, NegotiatedRestarted, NegotiatedSearch,
        },
        core::fact::{NegotiatedFact, NegotiatedFactId, NegotiatedSignedFact},
        core::journal::NegotiatedRelayJournal,
        core::machine::{NegotiatedRestartReason, NegotiatedRole},
        core::protocol::{NEGOTIATED_PROTOCOL_VERSION, NegotiatedErrorKind},
        core::relay_core::NegotiatedRelayLimits,
        core::shared::NegotiatedMemorySharedStore,
        relay::{
            NegotiatedRelayDrain, NegotiatedRelayDrainFinished, NegotiatedRelayPlugin,
            NegotiatedRelaySettings, NegotiatedRelayState, NegotiatedRelaySystems,
            NegotiatedSharedFacts,
        },
    };
    pub use crate::shared::conditions::{client_exists, server_exists};
    pub use crate::shared::connect::MatchmakingConnectTarget;
    pub use crate::shared::connection_config::{
        MatchmakingConfigError, MatchmakingConnectionConfig,
    };
    pub use crate::shared::gate::{MatchmakingGatePolicy, MatchmakingRateLimit};
    pub use crate::shared::inbox::{MatchmakingInbox, matchmaking_process_local_client};
    pub use crate::shared::player::PlayerId;
    pub use crate::shared::plugins::MatchmakingPlugins;
}
