//! The five immutable facts of a negotiation and their content identity.
//!
//! A Cancel either closes a request (posted by its requester) or withdraws a bid (posted
//! by its bidder, naming the bid): [`NegotiatedFact::kind`] tells the two apart as
//! [`NegotiatedFactKind::Cancel`] and [`NegotiatedFactKind::Withdraw`].
//!
//! A fact never changes once posted. Its identity ([`NegotiatedFactId`]) is a hash of the
//! encoded author and content, so the same fact received twice is recognised as one, and a
//! fact another connection posted with the same content is a different fact (it has
//! another author). Receivers always compute the id themselves: ids are never taken from
//! the wire.

use serde::{Deserialize, Serialize};

use crate::shared::codec;
use crate::shared::player::PlayerId;

/// Content identity of a fact: 64-bit FNV-1a of the encoded `(author, fact)`.
///
/// Not a cryptographic hash: it identifies facts, it does not authenticate them (the
/// relay stamps the author from the connection; see [`NegotiatedSignedFact`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct NegotiatedFactId(pub u64);

impl std::fmt::Display for NegotiatedFactId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of some bytes.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// A request to play, posted into the frame of the rolling queue it was made in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NegotiatedRequest {
    /// The category (game mode) to play; see [`validate_category`](crate::shared::player::validate_category).
    pub category: String,
    /// The frame of the queue the request is posted to (the requester's current frame).
    pub frame: u64,
    /// When it was made, in relay time (microseconds since the relay's epoch).
    pub created_us: u64,
}

/// An offer to play with the author of a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NegotiatedBid {
    /// The request bid on.
    pub request: NegotiatedFactId,
    /// When it was made, in relay time (microseconds); makes each bid unique.
    pub created_us: u64,
    /// Relay time (microseconds) from which the relay refuses to store an accept of this
    /// bid. The bidder may also withdraw it earlier (a [`NegotiatedCancel`] naming it).
    pub deadline_us: u64,
}

/// The requester takes one bid: the match is made and the request is closed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NegotiatedAccept {
    /// The request this closes.
    pub request: NegotiatedFactId,
    /// The bid taken.
    pub bid: NegotiatedFactId,
}

/// The requester turns a bid down (it already accepted another, or gave the request up).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NegotiatedReject {
    /// The request bid on.
    pub request: NegotiatedFactId,
    /// The bid turned down.
    pub bid: NegotiatedFactId,
}

/// The requester abandons its request, or (naming a bid) the bidder withdraws its bid.
///
/// Whichever of a withdrawal and an accept of the same bid the relay stores first wins:
/// the relay refuses the other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NegotiatedCancel {
    /// The request abandoned, or the request of the bid withdrawn.
    pub request: NegotiatedFactId,
    /// `None`: the requester closes the request. `Some`: the bidder withdraws this bid.
    pub bid: Option<NegotiatedFactId>,
}

impl NegotiatedCancel {
    /// The requester closes `request`.
    pub fn request(request: NegotiatedFactId) -> Self {
        Self { request, bid: None }
    }

    /// The bidder withdraws `bid`, a bid on `request`.
    pub fn withdraw(request: NegotiatedFactId, bid: NegotiatedFactId) -> Self {
        Self {
            request,
            bid: Some(bid),
        }
    }
}

/// One fact, as posted (without its author).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NegotiatedFact {
    /// See [`NegotiatedRequest`].
    Request(NegotiatedRequest),
    /// See [`NegotiatedBid`].
    Bid(NegotiatedBid),
    /// See [`NegotiatedAccept`].
    Accept(NegotiatedAccept),
    /// See [`NegotiatedReject`].
    Reject(NegotiatedReject),
    /// See [`NegotiatedCancel`].
    Cancel(NegotiatedCancel),
}

/// The kind of a fact, without its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NegotiatedFactKind {
    /// [`NegotiatedFact::Request`].
    Request,
    /// [`NegotiatedFact::Bid`].
    Bid,
    /// [`NegotiatedFact::Accept`].
    Accept,
    /// [`NegotiatedFact::Reject`].
    Reject,
    /// [`NegotiatedFact::Cancel`] of a request (no bid named).
    Cancel,
    /// [`NegotiatedFact::Cancel`] naming a bid: its bidder withdraws it.
    Withdraw,
}

impl NegotiatedFact {
    /// The fact's kind.
    pub fn kind(&self) -> NegotiatedFactKind {
        match self {
            NegotiatedFact::Request(_) => NegotiatedFactKind::Request,
            NegotiatedFact::Bid(_) => NegotiatedFactKind::Bid,
            NegotiatedFact::Accept(_) => NegotiatedFactKind::Accept,
            NegotiatedFact::Reject(_) => NegotiatedFactKind::Reject,
            NegotiatedFact::Cancel(c) if c.bid.is_some() => NegotiatedFactKind::Withdraw,
            NegotiatedFact::Cancel(_) => NegotiatedFactKind::Cancel,
        }
    }

    /// The request this fact is about: `None` for a request itself.
    pub fn request(&self) -> Option<NegotiatedFactId> {
        match self {
            NegotiatedFact::Request(_) => None,
            NegotiatedFact::Bid(b) => Some(b.request),
            NegotiatedFact::Accept(a) => Some(a.request),
            NegotiatedFact::Reject(r) => Some(r.request),
            NegotiatedFact::Cancel(c) => Some(c.request),
        }
    }

    /// The bid this fact answers or withdraws (accept, reject and withdrawal).
    pub fn bid(&self) -> Option<NegotiatedFactId> {
        match self {
            NegotiatedFact::Accept(a) => Some(a.bid),
            NegotiatedFact::Reject(r) => Some(r.bid),
            NegotiatedFact::Cancel(c) => c.bid,
            _ => None,
        }
    }
}

/// A fact with the author the relay stamped on it: the transport client id of the
/// connection that posted it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NegotiatedSignedFact {
    /// Who posted it (stamped by the relay, never taken from the poster).
    pub author: PlayerId,
    /// What was posted.
    pub fact: NegotiatedFact,
}

impl NegotiatedSignedFact {
    /// A fact by this author.
    pub fn new(author: PlayerId, fact: NegotiatedFact) -> Self {
        Self { author, fact }
    }

    /// The content id: FNV-1a 64 of the codec encoding of `(author, fact)`.
    pub fn id(&self) -> NegotiatedFactId {
        NegotiatedFactId(fnv1a64(&codec::encode(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn id_depends_on_author_and_content() {
        let fact = NegotiatedFact::Cancel(NegotiatedCancel::request(NegotiatedFactId(9)));
        let a = NegotiatedSignedFact::new(1, fact.clone());
        let b = NegotiatedSignedFact::new(2, fact.clone());
        assert_eq!(a.id(), NegotiatedSignedFact::new(1, fact).id());
        assert_ne!(a.id(), b.id());
        let other = NegotiatedSignedFact::new(
            1,
            NegotiatedFact::Cancel(NegotiatedCancel::request(NegotiatedFactId(10))),
        );
        assert_ne!(a.id(), other.id());
    }

    #[test]
    fn a_cancel_naming_a_bid_is_a_withdrawal() {
        let (r, b) = (NegotiatedFactId(1), NegotiatedFactId(2));
        let cancel = NegotiatedFact::Cancel(NegotiatedCancel::request(r));
        let withdraw = NegotiatedFact::Cancel(NegotiatedCancel::withdraw(r, b));
        assert_eq!(cancel.kind(), NegotiatedFactKind::Cancel);
        assert_eq!(withdraw.kind(), NegotiatedFactKind::Withdraw);
        assert_eq!((cancel.bid(), withdraw.bid()), (None, Some(b)));
        assert_eq!(withdraw.request(), Some(r));
    }
}
