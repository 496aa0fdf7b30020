//! Negotiated matchmaking: clients pair themselves through Request, Bid and Accept facts,
//! with a relay that only stores and forwards facts and tells the time.
//!
//! There is no matchmaking service. A client looking for a game reads the current and the
//! prior frame of a rolling queue (frame = floor(relay time / frame duration)); if it sees
//! an open request it bids on one, otherwise it posts its own request and accepts the
//! first bid. Requests expire one to two frames after they were posted. See
//! [`machine`] for the whole algorithm, including the tie-break that pairs two clients who
//! posted at the same moment.
//!
//! - Pure core (no Bevy): [`fact`] (the five facts and their content ids), [`store`]
//!   (facts by frame), [`frame`] (frame math), [`clock`] (relay-clock estimation),
//!   [`machine`] (the client algorithm), [`router`] (the relay's storage and routing),
//!   [`protocol`] (wire messages).
//! - Bevy: [`NegotiatedRelayPlugin`](relay::NegotiatedRelayPlugin) on the relay,
//!   [`NegotiatedClientPlugin`](client::NegotiatedClientPlugin) in the game, both over
//!   bevy_renet on the [`NegotiatedChannel`](channel::NegotiatedChannel).
//! - [`testing`]: an in-process harness with manual time.
//!
//! Trust: the relay stamps every fact with the connection that sent it; clients ignore
//! facts whose author is not entitled to them (only the requester accepts, rejects or
//! cancels its request; nobody bids on their own request). Every byte from the network is
//! decoded with the crate's size-limited codec.

pub mod channel;
pub mod client;
pub mod clock;
pub mod fact;
pub mod frame;
pub mod machine;
pub mod protocol;
pub mod relay;
pub mod router;
pub mod store;
pub mod testing;

/// Everything a game needs for negotiated matchmaking, for glob import.
pub mod prelude {
    pub use super::channel::{DEFAULT_NEGOTIATED_CHANNEL_ID, NegotiatedChannel};
    pub use super::client::{
        NegotiatedBidPlaced, NegotiatedCancelSearch, NegotiatedCancelled, NegotiatedClientError,
        NegotiatedClientPlugin, NegotiatedClientSettings, NegotiatedClientState,
        NegotiatedClientStatus, NegotiatedClientSystems, NegotiatedConnected, NegotiatedMatchFound,
        NegotiatedRequestPosted, NegotiatedRestarted, NegotiatedSearch,
    };
    pub use super::fact::{NegotiatedFact, NegotiatedFactId, NegotiatedSignedFact};
    pub use super::machine::{NegotiatedRestartReason, NegotiatedRole};
    pub use super::protocol::{NEGOTIATED_PROTOCOL_VERSION, NegotiatedErrorKind};
    pub use super::relay::{
        NegotiatedRelayPlugin, NegotiatedRelaySettings, NegotiatedRelayState,
        NegotiatedRelaySystems,
    };
    pub use crate::core::protocol::PlayerId;
}
