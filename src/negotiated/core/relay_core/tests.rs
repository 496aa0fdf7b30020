//! Unit tests of the relay core.

use super::*;
use crate::negotiated::core::fact::*;
use crate::negotiated::core::journal::NegotiatedFactJournal;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Relay time 105 s: frame 10 of 10 s frames.
const NOW: Duration = Duration::from_secs(105);

fn relay(max_facts_per_frame: usize) -> NegotiatedRelayCore {
    NegotiatedRelayCore::new(NegotiatedFrames::new(secs(10)), max_facts_per_frame)
}

fn request(frame: u64, created_us: u64) -> NegotiatedFact {
    NegotiatedFact::Request(NegotiatedRequest {
        category: "duel".into(),
        frame,
        created_us,
    })
}

fn bid(request: NegotiatedFactId, created_us: u64, deadline: Duration) -> NegotiatedFact {
    NegotiatedFact::Bid(NegotiatedBid {
        request,
        created_us,
        deadline_us: deadline.as_micros() as u64,
    })
}

fn accept(request: NegotiatedFactId, bid: NegotiatedFactId) -> NegotiatedFact {
    NegotiatedFact::Accept(NegotiatedAccept { request, bid })
}

fn reject(request: NegotiatedFactId, bid: NegotiatedFactId) -> NegotiatedFact {
    NegotiatedFact::Reject(NegotiatedReject { request, bid })
}

fn withdraw(request: NegotiatedFactId, bid: NegotiatedFactId) -> NegotiatedFact {
    NegotiatedFact::Cancel(NegotiatedCancel::withdraw(request, bid))
}

fn id(author: PlayerId, fact: &NegotiatedFact) -> NegotiatedFactId {
    NegotiatedSignedFact::new(author, fact.clone()).id()
}

/// The verdict on `author`'s post in `out`: `Ok` when stored, the refusal's kind otherwise.
fn verdict(out: &NegotiatedOutbox, author: PlayerId) -> Result<(), NegotiatedErrorKind> {
    let verdicts: Vec<_> = out
        .iter()
        .filter(|(c, _)| *c == author)
        .filter_map(|(_, m)| match m {
            NegotiatedRelayMessage::Stored { .. } => Some(Ok(())),
            NegotiatedRelayMessage::Refused { kind, .. } => Some(Err(*kind)),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 1, "one verdict to {author}: {out:?}");
    verdicts[0]
}

/// Posts a fact the relay must store; returns the id and what else it sent.
fn stored(
    relay: &mut NegotiatedRelayCore,
    author: PlayerId,
    fact: NegotiatedFact,
    now: Duration,
) -> (NegotiatedFactId, NegotiatedOutbox) {
    let fact_id = id(author, &fact);
    let out = relay.post(author, fact, now);
    assert_eq!(verdict(&out, author), Ok(()), "{out:?}");
    assert_eq!(
        out[0],
        (author, NegotiatedRelayMessage::Stored { fact: fact_id })
    );
    (fact_id, out[1..].to_vec())
}

/// Posts a fact the relay must refuse; returns the refusal's kind.
fn refused(
    relay: &mut NegotiatedRelayCore,
    author: PlayerId,
    fact: NegotiatedFact,
    now: Duration,
) -> NegotiatedErrorKind {
    let fact_id = id(author, &fact);
    let out = relay.post(author, fact, now);
    assert!(
        matches!(out.last(), Some((a, NegotiatedRelayMessage::Refused { fact, .. })) if *a == author && *fact == fact_id)
    );
    verdict(&out, author).unwrap_err()
}

fn facts_to(out: &NegotiatedOutbox, client: PlayerId) -> Vec<NegotiatedFactKind> {
    out.iter()
        .filter(|(c, _)| *c == client)
        .filter_map(|(_, m)| match m {
            NegotiatedRelayMessage::Fact { fact, .. } => Some(fact.kind()),
            _ => None,
        })
        .collect()
}

#[test]
fn routes_along_the_pivots() {
    let mut relay = relay(16);
    // 2 and 3 watch frames 9..10; 4 watches another category
    for c in [2, 3] {
        let out = relay.subscribe(c, "duel".into(), vec![9, 10]).unwrap();
        assert_eq!(out.len(), 2, "two Synced markers");
    }
    relay.subscribe(4, "race".into(), vec![9, 10]).unwrap();
    let (r, out) = stored(&mut relay, 1, request(10, 1), NOW);
    assert_eq!(facts_to(&out, 2), vec![NegotiatedFactKind::Request]);
    assert_eq!(facts_to(&out, 3), vec![NegotiatedFactKind::Request]);
    assert!(facts_to(&out, 4).is_empty() && facts_to(&out, 1).is_empty());
    // a duplicate goes nowhere, and is confirmed as stored
    let (_, out) = stored(&mut relay, 1, request(10, 1), NOW);
    assert!(out.is_empty());
    assert_eq!(relay.stats().facts_duplicate, 1);

    let (b, out) = stored(&mut relay, 2, bid(r, 2, secs(200)), NOW);
    assert_eq!(out.len(), 1);
    assert_eq!(facts_to(&out, 1), vec![NegotiatedFactKind::Bid]);
    let (_, out) = stored(&mut relay, 1, accept(r, b), NOW);
    assert_eq!(facts_to(&out, 2), vec![NegotiatedFactKind::Accept]);
    assert_eq!(facts_to(&out, 3), vec![NegotiatedFactKind::Accept]);
    assert_eq!(out.len(), 2);

    // 3's bid comes after the accept: refused, the request is closed
    assert_eq!(
        refused(&mut relay, 3, bid(r, 3, secs(200)), NOW),
        NegotiatedErrorKind::RequestClosed
    );
    // a bid on an open request; its reject goes to the bidder, its withdrawal to the requester
    let (r2, _) = stored(&mut relay, 1, request(10, 4), NOW);
    let (b3, _) = stored(&mut relay, 3, bid(r2, 5, secs(200)), NOW);
    let (_, out) = stored(&mut relay, 1, reject(r2, b3), NOW);
    assert_eq!(out.len(), 1);
    assert_eq!(facts_to(&out, 3), vec![NegotiatedFactKind::Reject]);
    let (_, out) = stored(&mut relay, 3, withdraw(r2, b3), NOW);
    assert_eq!(facts_to(&out, 1), vec![NegotiatedFactKind::Withdraw]);
    assert_eq!(out.len(), 1);

    // a late watcher gets the requests and the accept, not the bids nor their answers
    let out = relay.subscribe(5, "duel".into(), vec![10]).unwrap();
    assert_eq!(
        facts_to(&out, 5),
        vec![
            NegotiatedFactKind::Request,
            NegotiatedFactKind::Accept,
            NegotiatedFactKind::Request
        ]
    );
    assert!(matches!(
        out.last(),
        Some((5, NegotiatedRelayMessage::Synced { frame: 10, .. }))
    ));
    // the bidder re-subscribing sees its own bid, its reject and its withdrawal
    relay.unsubscribe(3);
    let out = relay.subscribe(3, "duel".into(), vec![10]).unwrap();
    assert_eq!(
        facts_to(&out, 3),
        vec![
            NegotiatedFactKind::Request,
            NegotiatedFactKind::Accept,
            NegotiatedFactKind::Request,
            NegotiatedFactKind::Bid,
            NegotiatedFactKind::Reject,
            NegotiatedFactKind::Withdraw
        ]
    );
}

#[test]
fn first_writer_wins_between_an_accept_and_a_withdrawal() {
    let mut relay = relay(16);
    let (r, _) = stored(&mut relay, 1, request(10, 1), NOW);
    // withdrawn first: the accept is refused
    let (b, _) = stored(&mut relay, 2, bid(r, 2, secs(200)), NOW);
    // a withdrawal by anyone but the bidder counts for nothing
    stored(&mut relay, 3, withdraw(r, b), NOW);
    stored(&mut relay, 2, withdraw(r, b), NOW);
    assert_eq!(
        refused(&mut relay, 1, accept(r, b), NOW),
        NegotiatedErrorKind::BidWithdrawn
    );
    assert!(!relay.store().is_closed(r));
    // rejected first: the accept is refused too
    let (b2, _) = stored(&mut relay, 3, bid(r, 3, secs(200)), NOW);
    stored(&mut relay, 1, reject(r, b2), NOW);
    assert_eq!(
        refused(&mut relay, 1, accept(r, b2), NOW),
        NegotiatedErrorKind::BidAnswered
    );
    // accepted first: the withdrawal is refused, and the accept goes with the refusal
    let (b3, _) = stored(&mut relay, 4, bid(r, 4, secs(200)), NOW);
    let (a, _) = stored(&mut relay, 1, accept(r, b3), NOW);
    let out = relay.post(4, withdraw(r, b3), NOW);
    assert_eq!(verdict(&out, 4), Err(NegotiatedErrorKind::BidAnswered));
    assert_eq!(
        out[0],
        (
            4,
            NegotiatedRelayMessage::Fact {
                author: 1,
                fact: accept(r, b3)
            }
        )
    );
    assert_eq!(relay.store().accepted_bid(r), Some(b3));
    assert_eq!(relay.store().accept_of(r).map(|f| f.id), Some(a));
    // the request is closed: no other accept
    let (r2, _) = stored(&mut relay, 1, request(10, 5), NOW);
    let (b4, _) = stored(&mut relay, 5, bid(r2, 5, secs(200)), NOW);
    stored(
        &mut relay,
        1,
        NegotiatedFact::Cancel(NegotiatedCancel::request(r2)),
        NOW,
    );
    assert_eq!(
        refused(&mut relay, 1, accept(r2, b4), NOW),
        NegotiatedErrorKind::RequestClosed
    );
}

#[test]
fn an_accept_at_or_past_the_bid_deadline_is_refused() {
    let mut relay = relay(16);
    let (r, _) = stored(&mut relay, 1, request(10, 1), NOW);
    let deadline = NOW + secs(2);
    let (b, _) = stored(&mut relay, 2, bid(r, 2, deadline), NOW);
    assert_eq!(
        refused(&mut relay, 1, accept(r, b), deadline),
        NegotiatedErrorKind::BidExpired
    );
    stored(
        &mut relay,
        1,
        accept(r, b),
        deadline - Duration::from_micros(1),
    );
    // a deadline of u64::MAX is just a bid that never expires by itself
    let (r2, _) = stored(&mut relay, 1, request(10, 3), NOW);
    let forever = NegotiatedFact::Bid(NegotiatedBid {
        request: r2,
        created_us: u64::MAX,
        deadline_us: u64::MAX,
    });
    let (b2, _) = stored(&mut relay, 3, forever, NOW);
    stored(&mut relay, 1, accept(r2, b2), secs(119));
}

#[test]
fn an_accept_of_a_departed_bidder_is_refused() {
    let mut relay = relay(16);
    let (r, _) = stored(&mut relay, 1, request(10, 1), NOW);
    let (b, _) = stored(&mut relay, 2, bid(r, 2, secs(200)), NOW);
    let (b3, _) = stored(&mut relay, 3, bid(r, 3, secs(200)), NOW);
    relay.disconnect(2);
    assert_eq!(relay.departed_bids(), 1);
    assert_eq!(
        refused(&mut relay, 1, accept(r, b), NOW),
        NegotiatedErrorKind::BidderDeparted
    );
    // back again: that bid stays unacceptable; withdrawing it is stored
    relay.connect(2);
    assert_eq!(
        refused(&mut relay, 1, accept(r, b), NOW),
        NegotiatedErrorKind::BidderDeparted
    );
    stored(&mut relay, 2, withdraw(r, b), NOW);
    assert!(!relay.store().is_closed(r));
    stored(&mut relay, 1, accept(r, b3), NOW);
    // the departed bid goes with its frame
    relay.expire(secs(130));
    assert_eq!(relay.departed_bids(), 0);
}

#[test]
fn departures_are_announced_to_watchers_and_later_subscribers() {
    let mut relay = relay(16);
    relay.subscribe(2, "duel".into(), vec![9, 10]).unwrap();
    relay.subscribe(3, "race".into(), vec![9, 10]).unwrap();
    stored(&mut relay, 1, request(10, 1), NOW);
    // 4 posted nothing: its leaving concerns nobody, and it is not remembered
    assert!(relay.disconnect(4).is_empty());
    assert!(relay.departed().is_empty());
    let out = relay.disconnect(1);
    assert_eq!(
        out,
        vec![(2, NegotiatedRelayMessage::Departed { author: 1 })]
    );
    assert!(relay.departed().contains(&1));
    // a later subscriber gets the request, then the notice, then Synced
    let out = relay.subscribe(5, "duel".into(), vec![10]).unwrap();
    let kinds: Vec<&str> = out
        .iter()
        .map(|(_, m)| match m {
            NegotiatedRelayMessage::Fact { .. } => "fact",
            NegotiatedRelayMessage::Departed { author: 1 } => "departed",
            NegotiatedRelayMessage::Synced { .. } => "synced",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["fact", "departed", "synced"]);
    // back again: no more notices
    relay.connect(1);
    let out = relay.subscribe(6, "duel".into(), vec![10]).unwrap();
    assert_eq!(out.len(), 2);
    // gone again, then its request expires: forgotten
    relay.disconnect(1);
    assert!(relay.departed().contains(&1));
    relay.expire(secs(130));
    assert!(relay.departed().is_empty());
}

#[test]
fn refuses_bad_facts_and_expires_frames() {
    let mut relay = relay(2);
    assert_eq!(
        refused(&mut relay, 1, request(12, 0), NOW),
        NegotiatedErrorKind::FrameOutOfRange
    );
    let bad_category = NegotiatedFact::Request(NegotiatedRequest {
        category: "no spaces".into(),
        frame: 10,
        created_us: 0,
    });
    assert_eq!(
        refused(&mut relay, 1, bad_category, NOW),
        NegotiatedErrorKind::InvalidCategory
    );
    let unknown = NegotiatedFact::Cancel(NegotiatedCancel::request(NegotiatedFactId(5)));
    assert_eq!(
        refused(&mut relay, 1, unknown, NOW),
        NegotiatedErrorKind::UnknownRequest
    );
    stored(&mut relay, 1, request(9, 1), NOW);
    let (r, _) = stored(&mut relay, 1, request(10, 2), NOW);
    stored(&mut relay, 1, request(10, 3), NOW);
    assert_eq!(
        refused(&mut relay, 1, request(10, 4), NOW),
        NegotiatedErrorKind::TooManyFacts
    );
    assert_eq!(
        refused(&mut relay, 2, accept(r, NegotiatedFactId(3)), NOW),
        NegotiatedErrorKind::UnknownBid
    );
    assert_eq!(relay.stats().facts_refused, 5);
    let err = relay
        .subscribe(2, "duel".into(), vec![1, 2, 3, 4, 5])
        .unwrap_err();
    assert_eq!(err.kind, NegotiatedErrorKind::InvalidSubscription);
    // frame 9 ends at 100 s: kept until 120 s, frame 10 until 130 s
    assert_eq!(relay.expire(secs(119)), 0);
    assert_eq!(relay.expire(secs(120)), 1);
    assert_eq!(relay.expire(secs(130)), 2);
    assert!(relay.store().is_empty());
    assert_eq!(relay.stats().facts_expired, 3);
}

#[test]
fn time_passes_before_a_fact_is_stored() {
    let mut relay = relay(16);
    let (r, _) = stored(&mut relay, 1, request(10, 1), NOW);
    // frame 10 is dropped at 130 s: a bid posted then finds no request
    assert_eq!(
        refused(&mut relay, 2, bid(r, 2, secs(200)), secs(130)),
        NegotiatedErrorKind::UnknownRequest
    );
    assert!(relay.store().is_empty());
}

#[test]
fn a_flood_of_bids_does_not_use_up_the_requesters_share() {
    // a share of two facts: the request and the accept
    let mut relay = relay(2);
    let (r, _) = stored(&mut relay, 1, request(10, 1), NOW);
    let mut bids = Vec::new();
    for bidder in 10..30 {
        bids.push(stored(&mut relay, bidder, bid(r, bidder, secs(200)), NOW).0);
    }
    for b in &bids[1..] {
        stored(&mut relay, 1, reject(r, *b), NOW);
    }
    stored(&mut relay, 1, accept(r, bids[0]), NOW);
    assert_eq!(relay.store().count_by(1, 10), 2);
}

#[test]
fn a_request_naming_the_last_frame_is_refused_without_overflow() {
    let mut relay = relay(16);
    for frame in [u64::MAX, u64::MAX - 1, 0] {
        let fact = NegotiatedFact::Request(NegotiatedRequest {
            category: "duel".into(),
            frame,
            created_us: u64::MAX,
        });
        assert_eq!(
            refused(&mut relay, 1, fact, NOW),
            NegotiatedErrorKind::FrameOutOfRange
        );
    }
    // and a relay whose clock is in the last frame takes it
    let mut relay = NegotiatedRelayCore::new(NegotiatedFrames::new(Duration::ZERO), 16);
    let fact = NegotiatedFact::Request(NegotiatedRequest {
        category: "duel".into(),
        frame: u64::MAX,
        created_us: 0,
    });
    stored(&mut relay, 1, fact, Duration::MAX);
    relay.expire(Duration::MAX);
}

#[test]
fn memory_stays_under_the_caps() {
    let limits = NegotiatedRelayLimits {
        max_facts_per_frame: 2,
        max_facts: 50,
        max_departed: 5,
    };
    let mut relay = NegotiatedRelayCore::with_limits(NegotiatedFrames::new(secs(10)), limits);
    // fresh ids: requests until the store is full, then refusals
    let mut requests = Vec::new();
    for author in 1..=80 {
        let fact = request(10, author);
        let out = relay.post(author, fact.clone(), NOW);
        match verdict(&out, author) {
            Ok(()) => requests.push((author, id(author, &fact))),
            Err(kind) => assert_eq!(kind, NegotiatedErrorKind::RelayFull),
        }
        relay.subscribe(author, "duel".into(), vec![9, 10]).unwrap();
    }
    assert_eq!(relay.store().len(), 50);
    assert_eq!(relay.watching(), 80);
    // every one of them leaves: departures past the cap are not remembered
    for author in 1..=80 {
        relay.disconnect(author);
    }
    assert_eq!(relay.departed().len(), 5);
    assert_eq!(relay.stats().departures_forgotten, 45);
    assert_eq!(relay.watching(), 0);
    // a full store still takes a bidder's withdrawal of a stored bid
    let mut relay = NegotiatedRelayCore::with_limits(NegotiatedFrames::new(secs(10)), limits);
    let (r, _) = stored(&mut relay, 1, request(10, 1), NOW);
    let mut bids = Vec::new();
    for bidder in 2..=50 {
        bids.push((
            bidder,
            stored(&mut relay, bidder, bid(r, 0, secs(200)), NOW).0,
        ));
    }
    assert_eq!(
        refused(&mut relay, 99, bid(r, 0, secs(200)), NOW),
        NegotiatedErrorKind::RelayFull
    );
    assert_eq!(
        refused(&mut relay, 99, withdraw(r, bids[0].1), NOW),
        NegotiatedErrorKind::RelayFull,
        "a forged withdrawal is no exception"
    );
    for (bidder, b) in &bids {
        stored(&mut relay, *bidder, withdraw(r, *b), NOW);
    }
    assert_eq!(relay.store().len(), 99);
    // everything goes with its frame
    relay.expire(secs(130));
    assert!(relay.store().is_empty() && relay.store().authors() == 0);
}

#[test]
fn departed_ids_stay_under_the_default_cap() {
    let mut relay = relay(256);
    for id in 200_000..220_000 {
        relay.connect(id);
        relay.disconnect(id);
    }
    assert!(relay.departed().len() <= NEGOTIATED_DEFAULT_MAX_DEPARTED);
}

#[test]
fn stored_facts_stay_under_the_default_cap_with_fresh_ids() {
    let mut relay = relay(256);
    for author in 1..=(NEGOTIATED_DEFAULT_MAX_FACTS as u64 + 100) {
        relay.post(author, request(10, author), NOW);
    }
    assert_eq!(relay.store().len(), NEGOTIATED_DEFAULT_MAX_FACTS);
    assert_eq!(relay.stats().facts_refused, 100);
}

/// A journal that refuses every write.
struct BrokenJournal;

impl NegotiatedFactJournal for BrokenJournal {
    fn append(&mut self, _: u64, _: &NegotiatedSignedFact) -> io::Result<()> {
        Err(io::Error::other("disk full"))
    }
    fn drop_before(&mut self, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn load(&mut self) -> io::Result<Vec<NegotiatedSignedFact>> {
        Ok(Vec::new())
    }
}

#[test]
fn a_restored_relay_gives_the_verdicts_the_previous_one_gave() {
    let journal = NegotiatedRelayJournal::memory();
    let mut first = relay(16);
    assert_eq!(first.restore(journal.clone(), NOW).unwrap(), 0);
    let (r1, _) = stored(&mut first, 1, request(10, 1), NOW);
    let (b1, _) = stored(&mut first, 2, bid(r1, 2, secs(200)), NOW);
    stored(&mut first, 1, accept(r1, b1), NOW);
    let (r2, _) = stored(&mut first, 3, request(10, 3), NOW);
    let (b2, _) = stored(&mut first, 4, bid(r2, 4, secs(200)), NOW);

    // the relay restarts: a new core reads the journal back
    let mut second = relay(16);
    assert_eq!(second.restore(journal, NOW).unwrap(), 5);
    assert_eq!(second.store().ids(), first.store().ids());
    assert_eq!(second.stats().facts_restored, 5);
    // the accept stored before still wins over the bidder's withdrawal
    let out = second.post(2, withdraw(r1, b1), NOW);
    assert!(verdict(&out, 2).is_err());
    assert!(facts_to(&out, 2).contains(&NegotiatedFactKind::Accept));
    // every connection closed with the old relay: unanswered bids cannot be accepted,
    // requesters count as departed until they connect again
    assert_eq!(second.departed_bids(), 1);
    refused(&mut second, 3, accept(r2, b2), NOW);
    assert!(second.departed().contains(&3));
    second.connect(3);
    assert!(!second.departed().contains(&3));
    // the bidder's withdrawal of that bid is stored
    stored(&mut second, 4, withdraw(r2, b2), NOW);
}

#[test]
fn a_fact_the_journal_cannot_record_is_refused_and_not_stored() {
    let mut relay = relay(16);
    relay
        .restore(NegotiatedRelayJournal::new(BrokenJournal), NOW)
        .unwrap();
    assert_eq!(
        refused(&mut relay, 1, request(10, 1), NOW),
        NegotiatedErrorKind::RelayFull
    );
    assert!(relay.store().is_empty());
    assert_eq!(relay.stats().journal_errors, 1);
}

#[test]
fn expired_frames_leave_the_journal_too() {
    let journal = NegotiatedRelayJournal::memory();
    let mut relay = relay(16);
    relay.restore(journal.clone(), NOW).unwrap();
    stored(&mut relay, 1, request(10, 1), NOW);
    assert_eq!(journal.lock().load().unwrap().len(), 1);
    relay.expire(secs(1_000));
    assert!(relay.store().is_empty());
    assert!(journal.lock().load().unwrap().is_empty());
}
