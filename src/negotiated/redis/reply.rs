//! The scripts' replies read back: log positions and entries, and a post's verdict with the
//! refusal the rules give (the same kinds and messages as the relay's own rules).

use crate::negotiated::core::fact::{NegotiatedFact, NegotiatedSignedFact};
use crate::negotiated::core::protocol::NegotiatedErrorKind;
use crate::negotiated::core::relay_core::{NegotiatedRefusal, NegotiatedRelayLimits};
use crate::negotiated::core::shared::{
    NegotiatedLogEntry, NegotiatedLogEvent, NegotiatedLogPosition, NegotiatedSharedStoreError,
    NegotiatedSharedVerdict,
};
use crate::negotiated::core::store::NegotiatedStoreError;
use crate::shared::codec;
use crate::shared::player::PlayerId;

fn corrupt(what: impl std::fmt::Display) -> NegotiatedSharedStoreError {
    NegotiatedSharedStoreError::Corrupt(what.to_string())
}

fn text(bytes: &[u8]) -> Result<&str, NegotiatedSharedStoreError> {
    std::str::from_utf8(bytes).map_err(|_| corrupt(format!("not text: {bytes:?}")))
}

/// A stream id (`ms-seq`) as a log position.
pub(super) fn position(bytes: &[u8]) -> Result<NegotiatedLogPosition, NegotiatedSharedStoreError> {
    let id = text(bytes)?;
    let parsed = id.split_once('-').and_then(|(ms, seq)| {
        Some(NegotiatedLogPosition::new(
            ms.parse().ok()?,
            seq.parse().ok()?,
        ))
    });
    parsed.ok_or_else(|| corrupt(format!("not a log position: {id:?}")))
}

fn player(bytes: &[u8]) -> Result<PlayerId, NegotiatedSharedStoreError> {
    let id = text(bytes)?;
    id.parse()
        .map_err(|_| corrupt(format!("not a player id: {id:?}")))
}

/// A stored fact, decoded with the size-limited codec.
fn signed(bytes: &[u8]) -> Result<NegotiatedSignedFact, NegotiatedSharedStoreError> {
    codec::decode(bytes).map_err(|e| corrupt(format!("a stored fact does not decode: {e}")))
}

/// The read script's reply: `[trimmed, exists, (id, type, value)...]`, or Behind when the
/// log no longer holds what follows `after`.
pub(super) fn log_read(
    after: NegotiatedLogPosition,
    reply: &[Vec<u8>],
) -> Result<Vec<NegotiatedLogEntry>, NegotiatedSharedStoreError> {
    let [trimmed, exists, rest @ ..] = reply else {
        return Err(corrupt("a read answered too little"));
    };
    if after != NegotiatedLogPosition::START {
        // a log that expired altogether (or a Redis that lost it) lost what was after
        if exists.as_slice() != b"1" {
            return Err(NegotiatedSharedStoreError::Behind(after));
        }
        if !trimmed.is_empty() && position(trimmed)? > after {
            return Err(NegotiatedSharedStoreError::Behind(after));
        }
    }
    if rest.len() % 3 != 0 {
        return Err(corrupt("a read answered a partial entry"));
    }
    rest.chunks(3)
        .map(|entry| {
            let [id, kind, value] = entry else {
                unreachable!("chunks of three")
            };
            let event = match kind.as_slice() {
                b"s" => NegotiatedLogEvent::Stored(signed(value)?),
                b"c" => NegotiatedLogEvent::Connected(player(value)?),
                b"d" => NegotiatedLogEvent::Departed(player(value)?),
                other => return Err(corrupt(format!("a log entry of type {other:?}"))),
            };
            Ok(NegotiatedLogEntry {
                position: position(id)?,
                event,
            })
        })
        .collect()
}

/// The post script's reply as a verdict on `fact`; `refused` is the caller's own refusal
/// of it (told when the fact was no duplicate).
pub(super) fn verdict(
    limits: &NegotiatedRelayLimits,
    fact: &NegotiatedFact,
    refused: Option<NegotiatedRefusal>,
    reply: &[Vec<u8>],
) -> Result<NegotiatedSharedVerdict, NegotiatedSharedStoreError> {
    match reply {
        [tag, at] if tag == b"ok" => Ok(NegotiatedSharedVerdict::Stored(position(at)?)),
        [tag, at] if tag == b"dup" => Ok(NegotiatedSharedVerdict::Duplicate(position(at)?)),
        [tag, at] if tag == b"pre" => match refused {
            Some(refusal) => Ok(NegotiatedSharedVerdict::Refused(refusal, position(at)?)),
            None => Err(corrupt("a post refused as the caller refused it, unasked")),
        },
        [tag, code, at, winner @ ..] if tag == b"no" => {
            let winner = match winner {
                [] => None,
                [bytes] => Some(signed(bytes)?),
                _ => return Err(corrupt("a refusal with several winners")),
            };
            let refusal = refusal(limits, fact, text(code)?, winner)?;
            Ok(NegotiatedSharedVerdict::Refused(refusal, position(at)?))
        }
        _ => Err(corrupt(format!("a post answered {} items", reply.len()))),
    }
}

/// The refusal the script's `code` names, as the relay's rules word it.
fn refusal(
    limits: &NegotiatedRelayLimits,
    fact: &NegotiatedFact,
    code: &str,
    winner: Option<NegotiatedSignedFact>,
) -> Result<NegotiatedRefusal, NegotiatedSharedStoreError> {
    let request = fact.request().unwrap_or_default();
    let bid = fact.bid().unwrap_or_default();
    let store = |kind, error: NegotiatedStoreError| NegotiatedRefusal::new(kind, error.to_string());
    let of_bid = |kind, why: &str| NegotiatedRefusal::new(kind, format!("bid {bid} {why}"));
    let refusal = match code {
        "unknown_request" => store(
            NegotiatedErrorKind::UnknownRequest,
            NegotiatedStoreError::UnknownRequest(request),
        ),
        "not_a_request" => store(
            NegotiatedErrorKind::UnknownRequest,
            NegotiatedStoreError::NotARequest(request),
        ),
        "unknown_bid" => store(
            NegotiatedErrorKind::UnknownBid,
            NegotiatedStoreError::UnknownBid(bid),
        ),
        "bid_of_another_request" => store(
            NegotiatedErrorKind::UnknownBid,
            NegotiatedStoreError::BidOfAnotherRequest(bid),
        ),
        "closed" => NegotiatedRefusal::new(
            NegotiatedErrorKind::RequestClosed,
            format!("request {request} was already accepted or cancelled"),
        ),
        "withdrawn" => of_bid(
            NegotiatedErrorKind::BidWithdrawn,
            "was withdrawn by its bidder",
        ),
        "answered" => of_bid(NegotiatedErrorKind::BidAnswered, "was already answered"),
        "departed" => of_bid(
            NegotiatedErrorKind::BidderDeparted,
            "is from a player who left",
        ),
        "expired" => of_bid(NegotiatedErrorKind::BidExpired, "is past its deadline"),
        "accepted" => NegotiatedRefusal {
            winner: Some(winner.ok_or_else(|| corrupt("an accepted bid without its accept"))?),
            ..of_bid(
                NegotiatedErrorKind::BidAnswered,
                "was accepted before its withdrawal",
            )
        },
        "full" => NegotiatedRefusal::new(
            NegotiatedErrorKind::RelayFull,
            format!(
                "the relay holds its limit of {} facts; try again when frames expire",
                limits.max_facts
            ),
        ),
        "too_many" => NegotiatedRefusal::new(
            NegotiatedErrorKind::TooManyFacts,
            format!(
                "at most {} facts per connection in one frame",
                limits.max_facts_per_frame
            ),
        ),
        other => return Err(corrupt(format!("a refusal of kind {other:?}"))),
    };
    Ok(refusal)
}
