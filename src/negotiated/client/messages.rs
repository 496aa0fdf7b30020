//! The Bevy messages: what the game asks for and what the plugin reports.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use crate::negotiated::core::fact::NegotiatedFactId;
use crate::negotiated::core::machine::{NegotiatedMatch, NegotiatedRestartReason, NegotiatedRole};
use crate::negotiated::core::protocol::NegotiatedErrorKind;
use crate::shared::player::PlayerId;

/// Game → plugin: start searching in this category (kept until connected and synced).
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct NegotiatedSearch {
    /// The category.
    pub category: String,
}

/// Game → plugin: abandon the search (cancels our open request).
#[derive(Message, Reflect, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[reflect(Message, Debug, Clone, PartialEq, Default)]
pub struct NegotiatedCancelSearch;

/// The relay welcomed us.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct NegotiatedConnected {
    /// Our id.
    pub client_id: PlayerId,
    /// The relay's frame duration.
    pub frame_duration: Duration,
}

/// The relay is draining: it stores no new request or bid. A game reconnects to another
/// relay (the client's state is `RelayClosing` until the connection closes).
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct NegotiatedRelayClosing {
    /// Whether another relay may take the client.
    pub retry_elsewhere: bool,
}

/// We posted a request.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct NegotiatedRequestPosted {
    /// The request.
    pub request: NegotiatedFactId,
    /// The category.
    pub category: String,
    /// Its frame.
    pub frame: u64,
}

/// We bid on a request.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct NegotiatedBidPlaced {
    /// The bid.
    pub bid: NegotiatedFactId,
    /// The request.
    pub request: NegotiatedFactId,
    /// Its author.
    pub requester: PlayerId,
}

/// Paired: start the game with `other`.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct NegotiatedMatchFound {
    /// The category.
    pub category: String,
    /// Our id.
    pub me: PlayerId,
    /// The other player.
    pub other: PlayerId,
    /// Our side (the requester may host).
    pub role: NegotiatedRole,
    /// The request.
    pub request: NegotiatedFactId,
    /// The accepted bid.
    pub bid: NegotiatedFactId,
    /// The accept.
    pub accept: NegotiatedFactId,
}

impl NegotiatedMatchFound {
    /// The machine's match, seen by player `me`.
    pub(super) fn new(me: PlayerId, found: NegotiatedMatch) -> Self {
        Self {
            category: found.category,
            me,
            other: found.other,
            role: found.role,
            request: found.request,
            bid: found.bid,
            accept: found.accept,
        }
    }
}

/// The search was abandoned.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct NegotiatedCancelled {
    /// The category.
    pub category: String,
    /// Our request that was cancelled, if one was open.
    pub request: Option<NegotiatedFactId>,
}

/// The search went back to looking.
#[derive(Message, Reflect, Debug, Clone, Copy, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct NegotiatedRestarted {
    /// Why.
    pub reason: NegotiatedRestartReason,
}

/// Something went wrong: refused by the relay, an ignored fact, or a local problem.
#[derive(Message, Reflect, Debug, Clone, PartialEq, Eq)]
#[reflect(Message, Debug, Clone, PartialEq)]
pub struct NegotiatedClientError {
    /// What.
    pub kind: NegotiatedErrorKind,
    /// For humans.
    pub message: String,
}

impl NegotiatedClientError {
    /// An error of this kind.
    pub(crate) fn new(kind: NegotiatedErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// What the game asked for since the last frame.
#[derive(SystemParam)]
pub(super) struct GameRequests<'w, 's> {
    /// Searches to start.
    pub(super) searches: MessageReader<'w, 's, NegotiatedSearch>,
    /// Searches to abandon.
    pub(super) cancels: MessageReader<'w, 's, NegotiatedCancelSearch>,
}

/// Where the plugin's reports go.
#[derive(SystemParam)]
pub(super) struct ClientReports<'w> {
    pub(super) connected: MessageWriter<'w, NegotiatedConnected>,
    pub(super) closing: MessageWriter<'w, NegotiatedRelayClosing>,
    pub(super) posted: MessageWriter<'w, NegotiatedRequestPosted>,
    pub(super) bid: MessageWriter<'w, NegotiatedBidPlaced>,
    pub(super) found: MessageWriter<'w, NegotiatedMatchFound>,
    pub(super) cancelled: MessageWriter<'w, NegotiatedCancelled>,
    pub(super) restarted: MessageWriter<'w, NegotiatedRestarted>,
    pub(super) errors: MessageWriter<'w, NegotiatedClientError>,
}
