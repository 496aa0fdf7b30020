//! Wire messages of negotiated matchmaking, carried on the [`NegotiatedChannel`](crate::negotiated::NegotiatedChannel).
//!
//! Clients never name an author: the relay stamps each fact with the connection that
//! posted it. Every message is encoded with the crate's size-limited codec.
//!
//! Every [`NegotiatedClientMessage::Post`] gets a verdict on the relay's ordered stream
//! back to its author: [`NegotiatedRelayMessage::Stored`] or
//! [`NegotiatedRelayMessage::Refused`]. Anything the relay forwarded to that client
//! before the verdict was stored before the posted fact; so a requester knows whether its
//! accept counts, and a bidder whose withdrawal is stored knows no accept came first.

use serde::{Deserialize, Serialize};

use crate::shared::player::PlayerId;

use super::fact::{NegotiatedFact, NegotiatedFactId};

/// Version of the negotiated protocol; a client with another version is refused.
///
/// 2: bids carry a deadline, a cancel may name a bid (a withdrawal), and every post gets
/// a verdict ([`NegotiatedRelayMessage::Stored`] or [`NegotiatedRelayMessage::Refused`]).
/// 3: the relay rate-limits connections ([`NegotiatedErrorKind::RateLimited`]).
/// 4: the hello carries the connection config's fingerprint
/// ([`NegotiatedErrorKind::ConfigMismatch`]); the relay drains
/// ([`NegotiatedRelayMessage::RelayClosing`], [`NegotiatedErrorKind::RelayClosing`]).
pub const NEGOTIATED_PROTOCOL_VERSION: u32 = 4;

/// Most frames one subscription may name.
pub const NEGOTIATED_MAX_WATCHED_FRAMES: usize = 4;

/// Client to relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NegotiatedClientMessage {
    /// First message of a connection.
    Hello {
        /// The client's [`NEGOTIATED_PROTOCOL_VERSION`].
        protocol_version: u32,
        /// The fingerprint of the client's connection config (0: unknown); see
        /// `MatchmakingConnectionConfig`.
        config_fingerprint: u64,
    },
    /// Asks the relay for its time.
    TimeRequest {
        /// When the client sent it, on the client's clock (microseconds).
        client_sent_us: u64,
    },
    /// Watch these frames of a category's queue (replaces the previous subscription).
    /// The relay sends the stored facts of every newly watched frame the client may see,
    /// then [`NegotiatedRelayMessage::Synced`] for it, then forwards new facts as they come.
    Subscribe {
        /// The category.
        category: String,
        /// The frames (at most [`NEGOTIATED_MAX_WATCHED_FRAMES`]).
        frames: Vec<u64>,
    },
    /// Stop watching (facts addressed to this client still arrive).
    Unsubscribe,
    /// Post a fact.
    Post {
        /// The fact (the relay stamps the author).
        fact: NegotiatedFact,
    },
}

/// Why the relay refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NegotiatedErrorKind {
    /// Bytes that do not decode as a message.
    Malformed,
    /// A message above the size limit.
    TooLarge,
    /// Something other than hello before hello.
    HelloRequired,
    /// Another protocol version.
    VersionMismatch,
    /// Too many bad messages: the connection is being closed.
    Abuse,
    /// A category name that is not valid.
    InvalidCategory,
    /// A subscription naming too many frames.
    InvalidSubscription,
    /// A request posted outside the relay's current frame (± one).
    FrameOutOfRange,
    /// A fact about a request the relay does not hold (never seen, or expired).
    UnknownRequest,
    /// An accept, reject or withdrawal of a bid the relay does not hold, or of a bid on
    /// another request.
    UnknownBid,
    /// A bid on, or an accept of, a request its requester already accepted or cancelled.
    RequestClosed,
    /// An accept of a bid its bidder withdrew first.
    BidWithdrawn,
    /// An accept of a bid the requester rejected first, or a withdrawal of a bid the
    /// requester accepted first (the accept is sent just before the refusal).
    BidAnswered,
    /// An accept of a bid whose deadline passed (relay time).
    BidExpired,
    /// An accept of a bid whose bidder's connection closed.
    BidderDeparted,
    /// Too many facts from one connection in one frame.
    TooManyFacts,
    /// The relay holds as many facts as it may: try again when frames expire.
    RelayFull,
    /// (Client side) a fact whose author is not entitled to it was ignored.
    NotEntitled,
    /// (Client side) the connection to the relay was lost.
    Connection,
    /// A message that makes no sense now (a second hello; on the client, searching while
    /// already searching or cancelling without a search).
    Unexpected,
    /// A message over the connection's rate limit was dropped (a strike).
    RateLimited,
    /// (Client side) the connection to the relay never opened: a wrong address, a relay
    /// that is down, a refused, expired or wrong-key token, or secure against insecure
    /// (once per attempt, after `NegotiatedClientSettings::connect_timeout` or as soon as
    /// netcode gives up). A connection lost after it opened is
    /// [`Connection`](Self::Connection).
    ConnectFailed,
    /// The client's connection config differs from the relay's (another channel id, the
    /// other mode's config, a dedicated config against a shared one): the connection is
    /// closed. Also reported locally when the client's own config lacks its channel.
    ConfigMismatch,
    /// The relay is draining (closing): it stores no new request or bid. Reconnect to
    /// another relay.
    RelayClosing,
}

/// Longest human-readable text in an error message, in bytes; longer text is cut.
pub const NEGOTIATED_MAX_ERROR_TEXT: usize = 256;

/// Cuts `text` to [`NEGOTIATED_MAX_ERROR_TEXT`] bytes at a character boundary, so an
/// error message always fits the codec limit whatever went into it.
pub fn bounded_error_text(mut text: String) -> String {
    if text.len() > NEGOTIATED_MAX_ERROR_TEXT {
        let mut end = NEGOTIATED_MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Relay to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NegotiatedRelayMessage {
    /// The relay accepted the hello.
    Welcome {
        /// The relay's [`NEGOTIATED_PROTOCOL_VERSION`].
        protocol_version: u32,
        /// The id the relay stamps on this client's facts.
        client_id: PlayerId,
        /// The frame duration of the queue, in microseconds.
        frame_duration_us: u64,
    },
    /// Answer to [`NegotiatedClientMessage::TimeRequest`].
    Time {
        /// Echo of the request's timestamp.
        client_sent_us: u64,
        /// When the relay received the request, on its clock (microseconds).
        relay_received_us: u64,
        /// When the relay answered, on its clock (microseconds).
        relay_sent_us: u64,
    },
    /// A fact, with the author the relay stamped.
    Fact {
        /// The connection that posted it.
        author: PlayerId,
        /// The fact.
        fact: NegotiatedFact,
    },
    /// The connection of this client closed (and has not come back): requests it posted
    /// will not be answered. Sent to the watchers of the frames where it posted requests,
    /// and with the stored facts of such a frame to a new subscriber.
    Departed {
        /// The client that left.
        author: PlayerId,
    },
    /// The relay stored (or already held) the fact this client posted with this id.
    Stored {
        /// The id of the posted fact (stamped with this client).
        fact: NegotiatedFactId,
    },
    /// The relay refused to store the fact this client posted with this id.
    Refused {
        /// The id of the posted fact (stamped with this client).
        fact: NegotiatedFactId,
        /// Why.
        kind: NegotiatedErrorKind,
        /// For humans.
        message: String,
    },
    /// Every stored fact of this newly watched frame was sent.
    Synced {
        /// The category.
        category: String,
        /// The frame.
        frame: u64,
    },
    /// The relay is draining (closing): it stores no new request or bid, lets the
    /// negotiations under way finish for a while, then closes. Sent once per connection.
    RelayClosing {
        /// Whether another relay may take the client (always true from this crate's relay).
        retry_elsewhere: bool,
    },
    /// Something was refused.
    Error {
        /// What.
        kind: NegotiatedErrorKind,
        /// For humans.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negotiated::core::fact::*;
    use crate::shared::codec;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip() {
        let messages = vec![
            NegotiatedClientMessage::Hello {
                protocol_version: NEGOTIATED_PROTOCOL_VERSION,
                config_fingerprint: 0,
            },
            NegotiatedClientMessage::Subscribe {
                category: "duel".into(),
                frames: vec![1, 2],
            },
            NegotiatedClientMessage::Post {
                fact: NegotiatedFact::Accept(NegotiatedAccept {
                    request: NegotiatedFactId(1),
                    bid: NegotiatedFactId(2),
                }),
            },
            NegotiatedClientMessage::Post {
                fact: NegotiatedFact::Bid(NegotiatedBid {
                    request: NegotiatedFactId(1),
                    created_us: u64::MAX,
                    deadline_us: u64::MAX,
                }),
            },
            NegotiatedClientMessage::Post {
                fact: NegotiatedFact::Cancel(NegotiatedCancel::withdraw(
                    NegotiatedFactId(1),
                    NegotiatedFactId(2),
                )),
            },
        ];
        for m in messages {
            assert_eq!(
                codec::decode::<NegotiatedClientMessage>(&codec::encode(&m)),
                Ok(m)
            );
        }
        let verdicts = vec![
            NegotiatedRelayMessage::Stored {
                fact: NegotiatedFactId(u64::MAX),
            },
            NegotiatedRelayMessage::Refused {
                fact: NegotiatedFactId(3),
                kind: NegotiatedErrorKind::BidWithdrawn,
                message: bounded_error_text("x".repeat(5000)),
            },
        ];
        for m in verdicts {
            let bytes = codec::encode(&m);
            assert!(bytes.len() < codec::MAX_MESSAGE_BYTES);
            assert_eq!(codec::decode::<NegotiatedRelayMessage>(&bytes), Ok(m));
        }
    }

    #[test]
    fn error_text_is_bounded_at_a_char_boundary() {
        let text = "é".repeat(NEGOTIATED_MAX_ERROR_TEXT);
        let cut = bounded_error_text(text);
        assert!(
            cut.len() <= NEGOTIATED_MAX_ERROR_TEXT && cut.len() >= NEGOTIATED_MAX_ERROR_TEXT - 1
        );
        assert!(cut.chars().all(|c| c == 'é'));
        let m = NegotiatedRelayMessage::Error {
            kind: NegotiatedErrorKind::Malformed,
            message: bounded_error_text("x".repeat(5000)),
        };
        assert!(codec::encode(&m).len() < codec::MAX_MESSAGE_BYTES);
        assert_eq!(bounded_error_text("short".into()), "short");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = codec::decode::<NegotiatedClientMessage>(&bytes);
            let _ = codec::decode::<NegotiatedRelayMessage>(&bytes);
        }
    }
}
