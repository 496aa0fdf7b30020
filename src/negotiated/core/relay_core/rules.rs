//! The relay's storage rules, first writer wins: what may be stored given what is stored.
//!
//! These keep the relay free of matchmaking (it never picks a bid or pairs anyone) while
//! making each decision final: once an accept of a bid is stored, no withdrawal of it is;
//! once a withdrawal is stored, no accept is. Each side learns which came first from the
//! verdict on its own post and the ordered stream before it.

use std::time::Duration;

use crate::shared::player::validate_category;

use super::super::clock::as_us;
use super::super::fact::{
    NegotiatedFact, NegotiatedFactId, NegotiatedFactKind, NegotiatedRequest, NegotiatedSignedFact,
};
use super::super::frame::NegotiatedFrames;
use super::super::protocol::NegotiatedErrorKind;
use super::super::store::{NegotiatedAnswer, NegotiatedStoreError};
use super::{NegotiatedRefusal, NegotiatedRelayCore};

impl NegotiatedRelayCore {
    /// Whether `signed`, new to the store, may be stored at relay time `now`; where it
    /// would live (frame, category) if so.
    pub(super) fn check(
        &self,
        signed: &NegotiatedSignedFact,
        now: Duration,
    ) -> Result<(u64, String), NegotiatedRefusal> {
        if let NegotiatedFact::Request(r) = &signed.fact {
            check_request(self.frames, r, now)?;
        }
        let (frame, category) = self
            .store
            .locate(&signed.fact, true)
            .map_err(store_refusal)?;
        let request = signed.fact.request();
        match (signed.fact.kind(), request, signed.fact.bid()) {
            (NegotiatedFactKind::Bid, Some(request), _) => self.check_open(request)?,
            (NegotiatedFactKind::Accept, Some(request), Some(bid)) => {
                self.check_open(request)?;
                self.check_acceptable(bid, now)?;
            }
            (NegotiatedFactKind::Withdraw, _, Some(bid)) => self.check_withdrawable(signed, bid)?,
            _ => {}
        }
        self.check_capacity(signed, frame)?;
        Ok((frame, category))
    }

    /// A bid or an accept: its request is neither accepted nor cancelled by its requester.
    fn check_open(&self, request: NegotiatedFactId) -> Result<(), NegotiatedRefusal> {
        if self.store.is_closed(request) {
            return Err(NegotiatedRefusal::new(
                NegotiatedErrorKind::RequestClosed,
                format!("request {request} was already accepted or cancelled"),
            ));
        }
        Ok(())
    }

    /// An accept: its bid was neither withdrawn nor rejected first, its deadline has not
    /// passed and its bidder is still here.
    fn check_acceptable(
        &self,
        bid: NegotiatedFactId,
        now: Duration,
    ) -> Result<(), NegotiatedRefusal> {
        let refuse =
            |kind, why: &str| Err(NegotiatedRefusal::new(kind, format!("bid {bid} {why}")));
        match self.store.answer_to(bid) {
            Some(NegotiatedAnswer::Withdrawn(_)) => {
                return refuse(
                    NegotiatedErrorKind::BidWithdrawn,
                    "was withdrawn by its bidder",
                );
            }
            Some(NegotiatedAnswer::Rejected(_) | NegotiatedAnswer::Accepted(_)) => {
                return refuse(NegotiatedErrorKind::BidAnswered, "was already answered");
            }
            None => {}
        }
        if self.dead_bids.contains(&bid) {
            return refuse(
                NegotiatedErrorKind::BidderDeparted,
                "is from a player who left",
            );
        }
        let deadline = self.store.bid(bid).map(|(_, b)| b.deadline_us);
        if deadline.is_some_and(|deadline| as_us(now) >= deadline) {
            return refuse(NegotiatedErrorKind::BidExpired, "is past its deadline");
        }
        Ok(())
    }

    /// A withdrawal by the bidder: its bid was not accepted first (the accept then wins
    /// and goes to the bidder with the refusal).
    fn check_withdrawable(
        &self,
        signed: &NegotiatedSignedFact,
        bid: NegotiatedFactId,
    ) -> Result<(), NegotiatedRefusal> {
        if !self.store.is_entitled(signed.author, &signed.fact) {
            return Ok(());
        }
        match self.store.accept_of_bid(bid) {
            Some(accept) => Err(NegotiatedRefusal {
                winner: Some(accept.signed()),
                ..NegotiatedRefusal::new(
                    NegotiatedErrorKind::BidAnswered,
                    format!("bid {bid} was accepted before its withdrawal"),
                )
            }),
            None => Ok(()),
        }
    }

    /// Room for the fact: in the store (a bidder's withdrawal always fits: at most one
    /// per stored bid), and in its author's share of the frame.
    fn check_capacity(
        &self,
        signed: &NegotiatedSignedFact,
        frame: u64,
    ) -> Result<(), NegotiatedRefusal> {
        let withdrawal = signed.fact.kind() == NegotiatedFactKind::Withdraw
            && self.store.is_entitled(signed.author, &signed.fact);
        if !withdrawal && self.store.len() >= self.limits.max_facts {
            return Err(NegotiatedRefusal::new(
                NegotiatedErrorKind::RelayFull,
                format!(
                    "the relay holds its limit of {} facts; try again when frames expire",
                    self.limits.max_facts
                ),
            ));
        }
        if self.store.counts_toward_share(signed.author, &signed.fact)
            && self.store.count_by(signed.author, frame) >= self.limits.max_facts_per_frame
        {
            return Err(NegotiatedRefusal::new(
                NegotiatedErrorKind::TooManyFacts,
                format!(
                    "at most {} facts per connection in one frame",
                    self.limits.max_facts_per_frame
                ),
            ));
        }
        Ok(())
    }
}

/// A request: a valid category, posted to the relay's current frame ± one. The one rule
/// that needs no store, only the relay's clock: a relay sharing a store checks it itself.
pub fn check_request(
    frames: NegotiatedFrames,
    r: &NegotiatedRequest,
    now: Duration,
) -> Result<(), NegotiatedRefusal> {
    validate_category(&r.category)
        .map_err(|why| NegotiatedRefusal::new(NegotiatedErrorKind::InvalidCategory, why))?;
    let current = frames.frame_of(now);
    if r.frame.saturating_add(1) < current || r.frame > current.saturating_add(1) {
        return Err(NegotiatedRefusal::new(
            NegotiatedErrorKind::FrameOutOfRange,
            format!(
                "request posted to frame {} but the relay is in frame {current}; sync your clock",
                r.frame
            ),
        ));
    }
    Ok(())
}

/// A store error as a refusal.
fn store_refusal(e: NegotiatedStoreError) -> NegotiatedRefusal {
    let kind = match e {
        NegotiatedStoreError::UnknownRequest(_) | NegotiatedStoreError::NotARequest(_) => {
            NegotiatedErrorKind::UnknownRequest
        }
        NegotiatedStoreError::UnknownBid(_) | NegotiatedStoreError::BidOfAnotherRequest(_) => {
            NegotiatedErrorKind::UnknownBid
        }
    };
    NegotiatedRefusal::new(kind, e.to_string())
}
