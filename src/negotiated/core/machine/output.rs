//! What the machine says: messages for the relay and events for the game, gathered in
//! the machine until the public call that caused them returns them.

use crate::shared::player::PlayerId;

use super::{NegotiatedMachine, NegotiatedMatch};
use crate::negotiated::core::fact::{NegotiatedFact, NegotiatedFactId, NegotiatedSignedFact};
use crate::negotiated::core::protocol::{NegotiatedClientMessage, NegotiatedErrorKind};

/// Why the machine went back to looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NegotiatedRestartReason {
    /// Our request expired without a bid.
    RequestExpired,
    /// The requester rejected our bid, or accepted another.
    BidRejected,
    /// The requester did not answer our bid in time.
    BidTimedOut,
    /// The request we bid on was cancelled or expired, or its requester left (or our own
    /// request was closed by a fact we did not post).
    RequestClosed,
    /// We saw an older open request than ours: we cancelled ours to bid on it.
    TieBreak,
    /// The connection to the relay was lost (the relay may have lost our facts).
    ConnectionLost,
    /// The relay refused our request or our bid.
    Refused,
}

/// What happened, for the game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedEvent {
    /// We posted a request.
    RequestPosted {
        /// The request.
        request: NegotiatedFactId,
        /// The category.
        category: String,
        /// Its frame.
        frame: u64,
    },
    /// We bid on a request.
    BidPlaced {
        /// The bid.
        bid: NegotiatedFactId,
        /// The request.
        request: NegotiatedFactId,
        /// Its author.
        requester: PlayerId,
    },
    /// Paired.
    Matched(NegotiatedMatch),
    /// Back to looking.
    Restarted(NegotiatedRestartReason),
    /// The search was abandoned (with the request we cancelled, if one was open).
    Cancelled {
        /// The category.
        category: String,
        /// Our cancelled request.
        request: Option<NegotiatedFactId>,
    },
    /// Something went wrong.
    Error {
        /// What.
        kind: NegotiatedErrorKind,
        /// For humans.
        message: String,
    },
}

/// One thing the machine wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedOutput {
    /// Send this to the relay.
    Send(NegotiatedClientMessage),
    /// Report this.
    Event(NegotiatedEvent),
}

impl NegotiatedMachine {
    /// Sends our own fact (when online: offline, what still matters is posted again
    /// once back); returns its id. It joins our store once the relay's verdict says it
    /// was stored.
    pub(super) fn post(&mut self, fact: NegotiatedFact) -> NegotiatedFactId {
        let id = NegotiatedSignedFact::new(self.config.me, fact.clone()).id();
        if self.online {
            self.pending.insert(id, fact.clone());
            self.send(NegotiatedClientMessage::Post { fact });
        }
        id
    }

    pub(super) fn send(&mut self, message: NegotiatedClientMessage) {
        self.out.push(NegotiatedOutput::Send(message));
    }

    pub(super) fn event(&mut self, event: NegotiatedEvent) {
        self.out.push(NegotiatedOutput::Event(event));
    }

    pub(super) fn error(&mut self, kind: NegotiatedErrorKind, message: String) {
        self.event(NegotiatedEvent::Error { kind, message });
    }

    /// Everything said since the last call.
    pub(super) fn take(&mut self) -> Vec<NegotiatedOutput> {
        std::mem::take(&mut self.out)
    }
}
