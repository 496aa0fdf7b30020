#![doc = include_str!("../README.md")]
#![forbid(missing_docs)]
#![forbid(unsafe_code)]

pub mod channel;
#[cfg(feature = "client")]
pub mod client;
pub mod core;
pub mod local_link;
#[cfg(feature = "negotiated")]
pub mod negotiated;
#[cfg(feature = "server")]
pub mod server;
#[cfg(all(feature = "server", feature = "client"))]
pub mod testing;
pub mod transport;

/// Everything a game needs, for glob import.
pub mod prelude {
    pub use crate::channel::{DEFAULT_MATCHMAKING_CHANNEL_ID, MatchmakingChannel};
    #[cfg(feature = "client")]
    pub use crate::client::{
        MatchmakingClientError, MatchmakingClientFaults, MatchmakingClientPlugin,
        MatchmakingClientState, MatchmakingClientStatus, MatchmakingClientSystems,
        MatchmakingConnected, MatchmakingJoinQueue, MatchmakingLeaveLobby, MatchmakingLeaveQueue,
        MatchmakingLobbyLeft, MatchmakingMatchCancelled, MatchmakingMatchChecking,
        MatchmakingMatchFound, MatchmakingMatchProposed, MatchmakingQueueJoined,
        MatchmakingQueueLeft,
    };
    pub use crate::core::commit::{HealthCheck, MatchStatus};
    pub use crate::core::protocol::{
        MatchCancelReason, MatchedPlayer, MatchmakingErrorKind, PROTOCOL_VERSION, PlayerId,
    };
    #[cfg(feature = "server")]
    pub use crate::server::{
        MatchmakingLobby, MatchmakingMatch, MatchmakingMatchCommitted, MatchmakingOutcome,
        MatchmakingPlayerHealth, MatchmakingPlayerLocation, MatchmakingServerPlugin,
        MatchmakingServerSettings, MatchmakingServerState, MatchmakingServerStats,
        MatchmakingServerSystems,
    };
}
