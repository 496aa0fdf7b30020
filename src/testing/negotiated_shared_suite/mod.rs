//! The suite every [`NegotiatedSharedStore`] passes: the in-memory store in the crate's unit
//! tests, the Redis store in `tests/negotiated` (where a `redis-server` can be started).
//!
//! Each case takes a fresh, empty store on the suite's frame grid ([`SUITE_FRAME`]) with
//! the limits it asks for; [`run_all`] runs every case. [`differential`] applies one random
//! sequence of posts, connects and disconnects to two stores and checks they give the same
//! verdicts and log the same events.

mod cases;
mod differential;

use std::time::Duration;

use crate::negotiated::core::fact::{
    NegotiatedAccept, NegotiatedBid, NegotiatedCancel, NegotiatedFact, NegotiatedFactId,
    NegotiatedReject, NegotiatedRequest, NegotiatedSignedFact,
};
use crate::negotiated::core::frame::NegotiatedFrames;
use crate::negotiated::core::protocol::NegotiatedErrorKind;
use crate::negotiated::core::relay_core::{NegotiatedRefusal, NegotiatedRelayLimits};
use crate::negotiated::core::shared::{
    NegotiatedConnection, NegotiatedLogEntry, NegotiatedLogEvent, NegotiatedLogPosition,
    NegotiatedSharedStore, NegotiatedSharedVerdict,
};
use crate::shared::player::PlayerId;

pub use differential::{
    DIFFERENTIAL_LIMITS, NegotiatedDifferentialReport, NegotiatedVerdictKind, differential,
};

/// The frame duration of every case.
pub const SUITE_FRAME: Duration = Duration::from_secs(1);

/// Relay time of the suite's first frame (any time works; this one is far from zero).
pub const SUITE_EPOCH: Duration = Duration::from_secs(1_000_000);

/// Makes a fresh, empty store on a frame grid, deciding by some limits.
pub type NegotiatedMakeStore<'a, S> = dyn FnMut(NegotiatedFrames, NegotiatedRelayLimits) -> S + 'a;

type Case<S> = fn(&mut NegotiatedMakeStore<'_, S>);

/// Runs every case, each on fresh stores from `make`.
pub fn run_all<S: NegotiatedSharedStore>(
    mut make: impl FnMut(NegotiatedFrames, NegotiatedRelayLimits) -> S,
) {
    let all: [(&str, Case<S>); 16] = [
        ("a_post_is_stored_once", cases::a_post_is_stored_once),
        (
            "unknown_requests_are_refused",
            cases::unknown_requests_are_refused,
        ),
        ("unknown_bids_are_refused", cases::unknown_bids_are_refused),
        (
            "a_closed_request_takes_no_bid_or_accept",
            cases::a_closed_request_takes_no_bid_or_accept,
        ),
        (
            "an_answered_or_late_bid_takes_no_accept",
            cases::an_answered_or_late_bid_takes_no_accept,
        ),
        (
            "a_departed_bidders_bids_take_no_accept",
            cases::a_departed_bidders_bids_take_no_accept,
        ),
        (
            "an_accepted_bid_cannot_be_withdrawn",
            cases::an_accepted_bid_cannot_be_withdrawn,
        ),
        (
            "a_full_store_refuses_all_but_withdrawals",
            cases::a_full_store_refuses_all_but_withdrawals,
        ),
        (
            "an_authors_share_of_a_frame_is_bounded",
            cases::an_authors_share_of_a_frame_is_bounded,
        ),
        (
            "forged_facts_are_stored_without_effect",
            cases::forged_facts_are_stored_without_effect,
        ),
        (
            "dropped_frames_are_forgotten",
            cases::dropped_frames_are_forgotten,
        ),
        (
            "requests_need_a_category_and_a_near_frame",
            cases::requests_need_a_category_and_a_near_frame,
        ),
        (
            "only_the_latest_open_connection_departs",
            cases::only_the_latest_open_connection_departs,
        ),
        ("the_log_is_in_order", cases::the_log_is_in_order),
        (
            "a_trimmed_log_says_behind",
            cases::a_trimmed_log_says_behind,
        ),
        ("every_post_is_idempotent", cases::every_post_is_idempotent),
    ];
    for (name, case) in all {
        eprintln!("negotiated shared store suite: {name}");
        case(&mut make);
    }
}

/// The suite's grid.
pub(crate) fn frames() -> NegotiatedFrames {
    NegotiatedFrames::new(SUITE_FRAME)
}

/// Relay time `ms` milliseconds after the suite's epoch.
pub(crate) fn at(ms: u64) -> Duration {
    SUITE_EPOCH + Duration::from_millis(ms)
}

/// Relay time in microseconds.
pub(crate) fn us(time: Duration) -> u64 {
    u64::try_from(time.as_micros()).unwrap_or(u64::MAX)
}

/// A fact's id as the store computes it.
pub(crate) fn id(author: PlayerId, fact: &NegotiatedFact) -> NegotiatedFactId {
    NegotiatedSignedFact::new(author, fact.clone()).id()
}

/// A request in `category` posted at `now`, to the frame of `now`.
pub(crate) fn request_in(category: &str, now: Duration, created_us: u64) -> NegotiatedFact {
    NegotiatedFact::Request(NegotiatedRequest {
        category: category.into(),
        frame: frames().frame_of(now),
        created_us,
    })
}

/// A "duel" request posted at `now`.
pub(crate) fn request(now: Duration) -> NegotiatedFact {
    request_in("duel", now, us(now))
}

/// A bid on `request`, unique by `created_us`, acceptable until `deadline`.
pub(crate) fn bid(
    request: NegotiatedFactId,
    created_us: u64,
    deadline: Duration,
) -> NegotiatedFact {
    NegotiatedFact::Bid(NegotiatedBid {
        request,
        created_us,
        deadline_us: us(deadline),
    })
}

/// The accept of `bid`.
pub(crate) fn accept(request: NegotiatedFactId, bid: NegotiatedFactId) -> NegotiatedFact {
    NegotiatedFact::Accept(NegotiatedAccept { request, bid })
}

/// The reject of `bid`.
pub(crate) fn reject(request: NegotiatedFactId, bid: NegotiatedFactId) -> NegotiatedFact {
    NegotiatedFact::Reject(NegotiatedReject { request, bid })
}

/// The cancel of `request`.
pub(crate) fn cancel(request: NegotiatedFactId) -> NegotiatedFact {
    NegotiatedFact::Cancel(NegotiatedCancel::request(request))
}

/// The withdrawal of `bid`.
pub(crate) fn withdraw(request: NegotiatedFactId, bid: NegotiatedFactId) -> NegotiatedFact {
    NegotiatedFact::Cancel(NegotiatedCancel::withdraw(request, bid))
}

/// Connection `number` on relay `relay`.
pub(crate) fn connection(relay: &str, number: u64) -> NegotiatedConnection {
    NegotiatedConnection {
        relay: relay.into(),
        number,
    }
}

/// The verdict on a post (the store must answer).
pub(crate) fn post<S: NegotiatedSharedStore>(
    store: &mut S,
    author: PlayerId,
    fact: &NegotiatedFact,
    now: Duration,
) -> NegotiatedSharedVerdict {
    store
        .post(author, fact, now)
        .unwrap_or_else(|e| panic!("post of {fact:?} by {author}: {e}"))
}

/// Posts a fact that must be stored; its id and log position.
pub(crate) fn stored<S: NegotiatedSharedStore>(
    store: &mut S,
    author: PlayerId,
    fact: &NegotiatedFact,
    now: Duration,
) -> (NegotiatedFactId, NegotiatedLogPosition) {
    match post(store, author, fact, now) {
        NegotiatedSharedVerdict::Stored(at) => (id(author, fact), at),
        other => panic!("{fact:?} by {author}: expected stored, got {other:?}"),
    }
}

/// Posts a fact that must be refused with `kind`; the refusal.
pub(crate) fn refused<S: NegotiatedSharedStore>(
    store: &mut S,
    author: PlayerId,
    fact: &NegotiatedFact,
    now: Duration,
    kind: NegotiatedErrorKind,
) -> NegotiatedRefusal {
    match post(store, author, fact, now) {
        NegotiatedSharedVerdict::Refused(refusal, _) if refusal.kind == kind => refusal,
        other => panic!("{fact:?} by {author}: expected {kind:?}, got {other:?}"),
    }
}

/// Everything the log holds, in order.
pub(crate) fn log<S: NegotiatedSharedStore>(store: &mut S) -> Vec<NegotiatedLogEntry> {
    store
        .read(NegotiatedLogPosition::START, usize::MAX, Duration::ZERO)
        .expect("read the log")
}

/// The events the log holds, in order.
pub(crate) fn events<S: NegotiatedSharedStore>(store: &mut S) -> Vec<NegotiatedLogEvent> {
    log(store).into_iter().map(|entry| entry.event).collect()
}

/// The log event of a stored fact.
pub(crate) fn stored_event(author: PlayerId, fact: &NegotiatedFact) -> NegotiatedLogEvent {
    NegotiatedLogEvent::Stored(NegotiatedSignedFact::new(author, fact.clone()))
}

/// A store on the suite's grid with the default limits.
pub(crate) fn fresh<S>(make: &mut NegotiatedMakeStore<'_, S>) -> S {
    make(frames(), NegotiatedRelayLimits::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negotiated::core::shared::NegotiatedMemorySharedStore;

    #[test]
    fn the_memory_store_passes_the_suite() {
        run_all(NegotiatedMemorySharedStore::new);
    }

    #[test]
    fn two_memory_stores_agree() {
        for seed in 0..8 {
            let mut a = NegotiatedMemorySharedStore::new(frames(), DIFFERENTIAL_LIMITS);
            let mut b = NegotiatedMemorySharedStore::new(frames(), DIFFERENTIAL_LIMITS);
            let report = differential(&mut a, &mut b, seed, 200);
            assert!(report.stored > 20, "{report:?}");
        }
    }
}
