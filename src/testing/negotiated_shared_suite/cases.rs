//! The cases of the shared-store suite: one per storage rule and refusal, idempotency,
//! departures of the latest connection, the log's order and trimming.

use std::time::Duration;

use crate::negotiated::core::fact::{
    NegotiatedFact, NegotiatedFactId, NegotiatedRequest, NegotiatedSignedFact,
};
use crate::negotiated::core::protocol::NegotiatedErrorKind as Kind;
use crate::negotiated::core::relay_core::NegotiatedRelayLimits;
use crate::negotiated::core::shared::{
    NEGOTIATED_LOG_KEPT_FRAMES, NegotiatedLogEvent, NegotiatedLogPosition, NegotiatedSharedStore,
    NegotiatedSharedStoreError, NegotiatedSharedVerdict,
};

use super::*;

/// A long deadline.
fn later() -> Duration {
    at(3_600_000)
}

/// A stored request by `requester` and a stored bid on it by `bidder`: their ids.
fn request_and_bid<S: NegotiatedSharedStore>(
    store: &mut S,
    requester: PlayerId,
    bidder: PlayerId,
    now: Duration,
) -> (NegotiatedFactId, NegotiatedFactId) {
    let (r, _) = stored(
        store,
        requester,
        &request_in("duel", now, us(now) + requester),
        now,
    );
    let (b, _) = stored(store, bidder, &bid(r, us(now) + bidder, later()), now);
    (r, b)
}

/// A post is stored once: again it is a duplicate, no later than the log's end, and the
/// log holds it once, at the position its verdict gave.
pub fn a_post_is_stored_once<S: NegotiatedSharedStore>(make: &mut NegotiatedMakeStore<'_, S>) {
    let mut store = fresh(make);
    let fact = request(at(0));
    let (_, position) = stored(&mut store, 1, &fact, at(0));
    match post(&mut store, 1, &fact, at(1)) {
        NegotiatedSharedVerdict::Duplicate(end) => assert!(end >= position),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    let entries = log(&mut store);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].position, position);
    assert_eq!(entries[0].event, stored_event(1, &fact));
    // the same content by another author is another fact
    stored(&mut store, 2, &fact, at(2));
}

/// A fact about a request needs the request: unknown, or not a request.
pub fn unknown_requests_are_refused<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let mut store = fresh(make);
    let nowhere = NegotiatedFactId(42);
    refused(
        &mut store,
        2,
        &bid(nowhere, 1, later()),
        at(0),
        Kind::UnknownRequest,
    );
    refused(&mut store, 1, &cancel(nowhere), at(0), Kind::UnknownRequest);
    let (r, b) = request_and_bid(&mut store, 1, 2, at(0));
    // a bid named as a request
    refused(
        &mut store,
        3,
        &bid(b, 3, later()),
        at(1),
        Kind::UnknownRequest,
    );
    refused(&mut store, 1, &accept(b, b), at(1), Kind::UnknownRequest);
    refused(&mut store, 2, &withdraw(b, b), at(1), Kind::UnknownRequest);
    stored(&mut store, 1, &accept(r, b), at(2));
    assert_eq!(events(&mut store).len(), 3);
}

/// An accept, reject or withdrawal needs a stored bid on the same request.
pub fn unknown_bids_are_refused<S: NegotiatedSharedStore>(make: &mut NegotiatedMakeStore<'_, S>) {
    let mut store = fresh(make);
    let (r, b) = request_and_bid(&mut store, 1, 2, at(0));
    let (other, other_bid) = request_and_bid(&mut store, 3, 4, at(1));
    let nowhere = NegotiatedFactId(42);
    refused(&mut store, 1, &accept(r, nowhere), at(2), Kind::UnknownBid);
    refused(&mut store, 1, &reject(r, nowhere), at(2), Kind::UnknownBid);
    refused(
        &mut store,
        2,
        &withdraw(r, nowhere),
        at(2),
        Kind::UnknownBid,
    );
    // a bid on another request, the request itself
    refused(
        &mut store,
        1,
        &accept(r, other_bid),
        at(2),
        Kind::UnknownBid,
    );
    refused(
        &mut store,
        4,
        &withdraw(r, other_bid),
        at(2),
        Kind::UnknownBid,
    );
    refused(&mut store, 1, &reject(r, other), at(2), Kind::UnknownBid);
    refused(&mut store, 1, &accept(r, r), at(2), Kind::UnknownBid);
    stored(&mut store, 1, &accept(r, b), at(3));
}

/// The requester's accept or cancel closes its request: no bid or accept after it, while
/// rejects and cancels are still stored.
pub fn a_closed_request_takes_no_bid_or_accept<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let mut store = fresh(make);
    let (r, b) = request_and_bid(&mut store, 1, 2, at(0));
    let (b3, _) = stored(&mut store, 3, &bid(r, 3, later()), at(1));
    stored(&mut store, 1, &accept(r, b), at(2));
    refused(
        &mut store,
        4,
        &bid(r, 4, later()),
        at(3),
        Kind::RequestClosed,
    );
    refused(&mut store, 1, &accept(r, b3), at(3), Kind::RequestClosed);
    stored(&mut store, 1, &reject(r, b3), at(4));
    stored(&mut store, 1, &cancel(r), at(4));
    let (c, c_bid) = request_and_bid(&mut store, 5, 6, at(5));
    stored(&mut store, 5, &cancel(c), at(6));
    refused(
        &mut store,
        7,
        &bid(c, 7, later()),
        at(7),
        Kind::RequestClosed,
    );
    refused(&mut store, 5, &accept(c, c_bid), at(7), Kind::RequestClosed);
    // the bidder may still withdraw from a closed request
    stored(&mut store, 6, &withdraw(c, c_bid), at(8));
}

/// An accept of a bid withdrawn, rejected or already accepted, or at its deadline.
pub fn an_answered_or_late_bid_takes_no_accept<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let mut store = fresh(make);
    let (r, withdrawn) = request_and_bid(&mut store, 1, 2, at(0));
    stored(&mut store, 2, &withdraw(r, withdrawn), at(1));
    refused(
        &mut store,
        1,
        &accept(r, withdrawn),
        at(2),
        Kind::BidWithdrawn,
    );
    let (rejected, _) = stored(&mut store, 3, &bid(r, 3, later()), at(2));
    stored(&mut store, 1, &reject(r, rejected), at(3));
    refused(
        &mut store,
        1,
        &accept(r, rejected),
        at(4),
        Kind::BidAnswered,
    );
    // rejected then withdrawn: the reject came first
    stored(&mut store, 3, &withdraw(r, rejected), at(5));
    refused(
        &mut store,
        1,
        &accept(r, rejected),
        at(5),
        Kind::BidAnswered,
    );
    let deadline = at(100);
    let (late, _) = stored(&mut store, 4, &bid(r, 4, deadline), at(5));
    let just_after = deadline + Duration::from_micros(1);
    let (in_time, _) = stored(&mut store, 5, &bid(r, 5, just_after), at(6));
    refused(&mut store, 1, &accept(r, late), deadline, Kind::BidExpired);
    stored(&mut store, 1, &accept(r, in_time), deadline);
}

/// A bidder's unanswered bids take no accept once its latest connection closed, even
/// after it connects again; answered ones keep their answer; new ones are acceptable.
pub fn a_departed_bidders_bids_take_no_accept<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let mut store = fresh(make);
    let link = connection("a", 1);
    store.connect(2, &link, at(0)).unwrap();
    let (r, open) = request_and_bid(&mut store, 1, 2, at(0));
    let (rejected, _) = stored(&mut store, 2, &bid(r, 22, later()), at(1));
    stored(&mut store, 1, &reject(r, rejected), at(1));
    store.disconnect(2, &link, at(2)).unwrap();
    refused(&mut store, 1, &accept(r, open), at(3), Kind::BidderDeparted);
    refused(
        &mut store,
        1,
        &accept(r, rejected),
        at(3),
        Kind::BidAnswered,
    );
    store.connect(2, &connection("b", 1), at(4)).unwrap();
    refused(&mut store, 1, &accept(r, open), at(5), Kind::BidderDeparted);
    let (fresh_bid, _) = stored(&mut store, 2, &bid(r, 23, later()), at(5));
    stored(&mut store, 1, &accept(r, fresh_bid), at(6));
    let departed = events(&mut store)
        .iter()
        .filter(|e| **e == NegotiatedLogEvent::Departed(2))
        .count();
    assert_eq!(departed, 1);
}

/// A bidder's withdrawal after the requester's accept is refused, with the accept.
pub fn an_accepted_bid_cannot_be_withdrawn<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let mut store = fresh(make);
    let (r, b) = request_and_bid(&mut store, 1, 2, at(0));
    let the_accept = accept(r, b);
    stored(&mut store, 1, &the_accept, at(1));
    let refusal = refused(&mut store, 2, &withdraw(r, b), at(2), Kind::BidAnswered);
    assert_eq!(
        refusal.winner,
        Some(NegotiatedSignedFact::new(1, the_accept))
    );
    // someone else's withdrawal of it is not the bidder's: stored, without effect
    stored(&mut store, 3, &withdraw(r, b), at(3));
    // a forged accept answers nothing: the bidder's withdrawal is stored and wins
    let (r2, b2) = request_and_bid(&mut store, 4, 5, at(4));
    stored(&mut store, 6, &accept(r2, b2), at(5));
    stored(&mut store, 5, &withdraw(r2, b2), at(6));
    refused(&mut store, 4, &accept(r2, b2), at(7), Kind::BidWithdrawn);
}

/// A full store refuses new facts, but a bidder's withdrawal of its bid always fits; the
/// room comes back when frames are dropped.
pub fn a_full_store_refuses_all_but_withdrawals<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let limits = NegotiatedRelayLimits {
        max_facts: 3,
        ..NegotiatedRelayLimits::default()
    };
    let mut store = make(frames(), limits);
    let (r, b) = request_and_bid(&mut store, 1, 2, at(0));
    let (b3, _) = stored(&mut store, 3, &bid(r, 3, later()), at(1));
    refused(&mut store, 4, &request(at(2)), at(2), Kind::RelayFull);
    refused(&mut store, 1, &accept(r, b), at(2), Kind::RelayFull);
    refused(&mut store, 4, &withdraw(r, b3), at(2), Kind::RelayFull);
    stored(&mut store, 2, &withdraw(r, b), at(3));
    stored(&mut store, 3, &withdraw(r, b3), at(3));
    refused(&mut store, 1, &cancel(r), at(4), Kind::RelayFull);
    let dropped = at(3 * 1000);
    stored(&mut store, 4, &request(dropped), dropped);
}

/// An author's facts in one frame are bounded, not counting its rejects of bids on its
/// requests and withdrawals of its own bids; the next frame is a fresh share.
pub fn an_authors_share_of_a_frame_is_bounded<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let limits = NegotiatedRelayLimits {
        max_facts_per_frame: 2,
        ..NegotiatedRelayLimits::default()
    };
    let mut store = make(frames(), limits);
    let (r, _) = stored(&mut store, 1, &request_in("duel", at(0), 1), at(0));
    stored(&mut store, 1, &request_in("duel", at(0), 2), at(0));
    refused(
        &mut store,
        1,
        &request_in("duel", at(0), 3),
        at(1),
        Kind::TooManyFacts,
    );
    let mut bids = Vec::new();
    for bidder in 2..=4 {
        bids.push(stored(&mut store, bidder, &bid(r, bidder, later()), at(2)).0);
    }
    for b in &bids[1..] {
        stored(&mut store, 1, &reject(r, *b), at(3));
    }
    refused(
        &mut store,
        1,
        &accept(r, bids[0]),
        at(3),
        Kind::TooManyFacts,
    );
    // bidder 2: its second fact fills its share; its withdrawal still counts for nothing
    stored(&mut store, 2, &bid(r, 20, later()), at(4));
    refused(
        &mut store,
        2,
        &bid(r, 21, later()),
        at(4),
        Kind::TooManyFacts,
    );
    stored(&mut store, 2, &withdraw(r, bids[0]), at(5));
    // someone else's rejects count
    stored(&mut store, 3, &reject(r, bids[2]), at(5));
    refused(
        &mut store,
        3,
        &reject(r, bids[0]),
        at(5),
        Kind::TooManyFacts,
    );
    let next = at(1000);
    stored(&mut store, 1, &request(next), next);
}

/// Facts their authors are not entitled to are stored but close and answer nothing.
pub fn forged_facts_are_stored_without_effect<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let mut store = fresh(make);
    let (r, b) = request_and_bid(&mut store, 1, 2, at(0));
    stored(&mut store, 3, &accept(r, b), at(1));
    stored(&mut store, 2, &accept(r, b), at(1));
    stored(&mut store, 3, &cancel(r), at(1));
    stored(&mut store, 3, &reject(r, b), at(1));
    stored(&mut store, 1, &withdraw(r, b), at(1));
    // the requester bidding on its own request
    stored(&mut store, 1, &bid(r, 1, later()), at(1));
    // none of it closed the request or answered the bid
    let (b4, _) = stored(&mut store, 4, &bid(r, 4, later()), at(2));
    stored(&mut store, 1, &accept(r, b), at(3));
    refused(&mut store, 1, &accept(r, b4), at(4), Kind::RequestClosed);
    assert_eq!(events(&mut store).len(), 10);
}

/// A frame is dropped two frames after it ends: its facts are unknown, a request posted
/// to it again is out of range; until then a repost is a duplicate.
pub fn dropped_frames_are_forgotten<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let mut store = fresh(make);
    let posted = at(500);
    let fact = request(posted);
    let (r, b) = request_and_bid(&mut store, 1, 2, posted);
    let kept = at(2 * 1000 + 999);
    stored(&mut store, 3, &fact, posted);
    assert!(matches!(
        post(&mut store, 3, &fact, kept),
        NegotiatedSharedVerdict::Duplicate(_)
    ));
    let (b5, _) = stored(&mut store, 5, &bid(r, 5, later()), kept);
    let dropped = at(3 * 1000);
    refused(
        &mut store,
        6,
        &bid(r, 6, later()),
        dropped,
        Kind::UnknownRequest,
    );
    refused(&mut store, 1, &accept(r, b), dropped, Kind::UnknownRequest);
    refused(&mut store, 1, &accept(r, b5), dropped, Kind::UnknownRequest);
    refused(&mut store, 3, &fact, dropped, Kind::FrameOutOfRange);
}

/// A request needs a valid category and the relay's frame ± one.
pub fn requests_need_a_category_and_a_near_frame<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let mut store = fresh(make);
    let now = at(5_500);
    refused(
        &mut store,
        1,
        &request_in("no spaces", now, 1),
        now,
        Kind::InvalidCategory,
    );
    refused(
        &mut store,
        1,
        &request_in("", now, 1),
        now,
        Kind::InvalidCategory,
    );
    for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
        let frame = frames().frame_of(now).checked_add_signed(offset).unwrap();
        let fact = NegotiatedFact::Request(NegotiatedRequest {
            category: "duel".into(),
            frame,
            created_us: 7,
        });
        if ok {
            stored(&mut store, 1, &fact, now);
        } else {
            refused(&mut store, 1, &fact, now, Kind::FrameOutOfRange);
        }
    }
    assert_eq!(events(&mut store).len(), 3);
}

/// Connects and closes: a player's latest open connection departs, once; the close of an
/// older one, or a second close, changes nothing; a connect of the latest open one is
/// logged once.
pub fn only_the_latest_open_connection_departs<S: NegotiatedSharedStore>(
    make: &mut NegotiatedMakeStore<'_, S>,
) {
    let mut store = fresh(make);
    let (a, b) = (connection("relay-a", 1), connection("relay-b", 7));
    let first = store.connect(7, &a, at(0)).unwrap();
    assert_eq!(
        store.connect(7, &a, at(1)).unwrap(),
        first,
        "connected already"
    );
    store.connect(7, &b, at(2)).unwrap();
    let end = store.disconnect(7, &a, at(3)).unwrap();
    assert_eq!(end, log(&mut store).last().unwrap().position);
    store.disconnect(7, &b, at(4)).unwrap();
    store.disconnect(7, &b, at(5)).unwrap();
    store.connect(7, &b, at(6)).unwrap();
    // a player never seen departs on its first close
    store.disconnect(9, &a, at(7)).unwrap();
    use NegotiatedLogEvent::{Connected, Departed};
    assert_eq!(
        events(&mut store),
        vec![
            Connected(7),
            Connected(7),
            Departed(7),
            Connected(7),
            Departed(9)
        ]
    );
}

/// The log holds every stored fact and connection event in order; each verdict's
/// position is its entry (stored) or the log's end (refused, duplicate); reads page.
pub fn the_log_is_in_order<S: NegotiatedSharedStore>(make: &mut NegotiatedMakeStore<'_, S>) {
    let mut store = fresh(make);
    let (r, p1) = stored(&mut store, 1, &request(at(0)), at(0));
    let p2 = store.connect(2, &connection("a", 1), at(1)).unwrap();
    let (b, p3) = stored(&mut store, 2, &bid(r, 2, later()), at(1));
    let refusal = post(&mut store, 2, &bid(NegotiatedFactId(1), 3, later()), at(2));
    assert_eq!(refusal.position(), p3, "decided at the log's end");
    let (_, p4) = stored(&mut store, 1, &accept(r, b), at(2));
    let p5 = store.disconnect(2, &connection("a", 1), at(3)).unwrap();
    let positions = [p1, p2, p3, p4, p5];
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let entries = log(&mut store);
    let found: Vec<_> = entries.iter().map(|e| e.position).collect();
    assert_eq!(found, positions);
    assert_eq!(entries[1].event, NegotiatedLogEvent::Connected(2));
    assert_eq!(entries[4].event, NegotiatedLogEvent::Departed(2));
    let page = store.read(p1, 2, Duration::ZERO).unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        [p2, p3]
    );
    let start = store
        .read(NegotiatedLogPosition::START, 1, Duration::ZERO)
        .unwrap();
    assert_eq!(start[0].position, p1);
    // nothing after the end, even waiting a little
    let waited = store.read(p5, 10, Duration::from_millis(30)).unwrap();
    assert!(waited.is_empty());
    assert!(store.round_trips() >= 10);
}

/// The log keeps its entries [`NEGOTIATED_LOG_KEPT_FRAMES`] frames: a read from before
/// the newest entry trimmed off is behind; from the start it gets what is left.
pub fn a_trimmed_log_says_behind<S: NegotiatedSharedStore>(make: &mut NegotiatedMakeStore<'_, S>) {
    let mut store = fresh(make);
    let (_, p1) = stored(&mut store, 1, &request(at(0)), at(0));
    let (_, p2) = stored(&mut store, 2, &request(at(1)), at(1));
    let trimming = at(u64::from(NEGOTIATED_LOG_KEPT_FRAMES + 1) * 1000);
    let (_, p3) = stored(&mut store, 3, &request(trimming), trimming);
    let behind = store.read(p1, 10, Duration::ZERO);
    assert_eq!(behind, Err(NegotiatedSharedStoreError::Behind(p1)));
    let left = store
        .read(NegotiatedLogPosition::START, 10, Duration::ZERO)
        .unwrap();
    assert_eq!(left.iter().map(|e| e.position).collect::<Vec<_>>(), [p3]);
    assert_eq!(store.read(p2, 10, Duration::ZERO).unwrap().len(), 1);
}

/// Every post made twice (a retry after a lost reply) is stored once.
pub fn every_post_is_idempotent<S: NegotiatedSharedStore>(make: &mut NegotiatedMakeStore<'_, S>) {
    let mut store = fresh(make);
    let req = request(at(0));
    let r = id(1, &req);
    let b = id(2, &bid(r, 2, later()));
    let b3 = id(3, &bid(r, 3, later()));
    let posts = [
        (1, req.clone()),
        (2, bid(r, 2, later())),
        (3, bid(r, 3, later())),
        (1, reject(r, b3)),
        (3, withdraw(r, b3)),
        (1, accept(r, b)),
        (1, cancel(r)),
    ];
    for (n, (author, fact)) in posts.iter().enumerate() {
        let now = at(n as u64);
        stored(&mut store, *author, fact, now);
        let again = post(&mut store, *author, fact, now);
        assert!(
            matches!(again, NegotiatedSharedVerdict::Duplicate(_)),
            "{again:?}"
        );
    }
    assert_eq!(events(&mut store).len(), posts.len());
}
