//! Where the machine stands, and the match it ends in.

use std::time::Duration;

use crate::shared::player::PlayerId;

use crate::negotiated::core::fact::NegotiatedFactId;

use super::NegotiatedRestartReason;

/// Which side of the conversation we were on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiatedRole {
    /// We posted the request and accepted the other player's bid.
    Requester,
    /// We bid and the other player accepted.
    Bidder,
}

/// A match: the request, the accepted bid and the accept, which the relay stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NegotiatedMatch {
    /// The category.
    pub category: String,
    /// The other player.
    pub other: PlayerId,
    /// Our side.
    pub role: NegotiatedRole,
    /// The request.
    pub request: NegotiatedFactId,
    /// The accepted bid.
    pub bid: NegotiatedFactId,
    /// The accept.
    pub accept: NegotiatedFactId,
}

impl NegotiatedMatch {
    /// The requester, given our own id.
    pub fn requester(&self, me: PlayerId) -> PlayerId {
        match self.role {
            NegotiatedRole::Requester => me,
            NegotiatedRole::Bidder => self.other,
        }
    }

    /// The bidder, given our own id.
    pub fn bidder(&self, me: PlayerId) -> PlayerId {
        match self.role {
            NegotiatedRole::Requester => self.other,
            NegotiatedRole::Bidder => me,
        }
    }
}

/// Where the machine stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiatedPhase {
    /// Not searching.
    Idle,
    /// Searching: waiting for the current frames, then bidding or requesting.
    Looking,
    /// Our request is open.
    Requesting {
        /// The request.
        request: NegotiatedFactId,
        /// Its frame.
        frame: u64,
    },
    /// We accepted a bid on our request and wait for the relay's verdict: matched once
    /// the relay stored the accept; back to requesting if it refused it.
    Accepting {
        /// Our request.
        request: NegotiatedFactId,
        /// Its frame.
        frame: u64,
        /// The bid accepted.
        bid: NegotiatedFactId,
        /// Its author.
        bidder: PlayerId,
        /// Our accept.
        accept: NegotiatedFactId,
        /// The game asked to stop meanwhile: idle if the accept is refused.
        cancelled: bool,
    },
    /// Our bid waits for an answer.
    Bidding {
        /// The bid.
        bid: NegotiatedFactId,
        /// The request bid on.
        request: NegotiatedFactId,
        /// Its author.
        requester: PlayerId,
        /// When we bid (relay time).
        since: Duration,
        /// The bid's deadline (relay time): we withdraw it then.
        deadline: Duration,
    },
    /// We withdrew our bid and wait for the relay's verdict: free once the withdrawal is
    /// stored (or refused for a bid that can no longer be accepted), matched if the
    /// requester's accept was stored first.
    Withdrawing {
        /// The bid.
        bid: NegotiatedFactId,
        /// The request bid on.
        request: NegotiatedFactId,
        /// Its author.
        requester: PlayerId,
        /// Our withdrawal.
        withdrawal: NegotiatedFactId,
        /// Why we withdrew (reported when free).
        reason: NegotiatedRestartReason,
        /// The game asked to stop: idle when free instead of looking again.
        cancelled: bool,
    },
    /// Paired.
    Matched(NegotiatedMatch),
}
