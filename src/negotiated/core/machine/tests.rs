//! Unit tests of the machine, driven directly.

use std::time::Duration;

use crate::negotiated::core::clock::as_us;
use crate::negotiated::core::fact::{
    NegotiatedAccept, NegotiatedBid, NegotiatedCancel, NegotiatedFact, NegotiatedFactId,
    NegotiatedReject, NegotiatedRequest, NegotiatedSignedFact,
};
use crate::negotiated::core::frame::NegotiatedFrames;
use crate::negotiated::core::protocol::{NegotiatedClientMessage, NegotiatedErrorKind};
use crate::shared::player::PlayerId;

use super::*;

pub(super) const ME: PlayerId = 1;
pub(super) const FRAME: Duration = Duration::from_secs(10);

pub(super) fn t(ms: u64) -> Duration {
    Duration::from_secs(1000) + Duration::from_millis(ms)
}

pub(super) fn machine() -> NegotiatedMachine {
    NegotiatedMachine::new(NegotiatedMachineConfig {
        me: ME,
        frames: NegotiatedFrames::new(FRAME),
        bid_timeout: Duration::from_secs(2),
        seed: 3,
    })
}

pub(super) fn posts(out: &[NegotiatedOutput]) -> Vec<NegotiatedFact> {
    out.iter()
        .filter_map(|o| match o {
            NegotiatedOutput::Send(NegotiatedClientMessage::Post { fact }) => Some(fact.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn events(out: &[NegotiatedOutput]) -> Vec<NegotiatedEvent> {
    out.iter()
        .filter_map(|o| match o {
            NegotiatedOutput::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The relay's verdict "stored" on every post in `out`, at `now`; what the machine said.
pub(super) fn confirm(
    m: &mut NegotiatedMachine,
    out: &[NegotiatedOutput],
    now: Duration,
) -> Vec<NegotiatedOutput> {
    posts(out)
        .into_iter()
        .flat_map(|fact| m.stored(id_of(ME, fact), now))
        .collect()
}

/// A bid by someone on `request` that stays valid for an hour.
pub(super) fn bid_on(request: NegotiatedFactId, created_us: u64) -> NegotiatedFact {
    NegotiatedFact::Bid(NegotiatedBid {
        request,
        created_us,
        deadline_us: as_us(t(3_600_000)),
    })
}

pub(super) fn is_matched(out: &[NegotiatedOutput]) -> bool {
    events(out)
        .iter()
        .any(|e| matches!(e, NegotiatedEvent::Matched(_)))
}

/// A machine online and searching at `t(0)`, with both readable frames synced and its
/// request stored by the relay.
pub(super) fn searching(m: &mut NegotiatedMachine) -> Vec<NegotiatedOutput> {
    let mut out = m.online(t(0));
    out.extend(m.search("duel", t(0)));
    let frames: Vec<u64> = m.config().frames.readable(t(0));
    assert!(out.contains(&NegotiatedOutput::Send(
        NegotiatedClientMessage::Subscribe {
            category: "duel".into(),
            frames: frames.clone(),
        }
    )));
    for f in frames {
        out.extend(m.synced("duel", f, t(0)));
    }
    let confirmed = confirm(m, &out, t(0));
    out.extend(confirmed);
    out
}

/// Our open request; panics when not requesting.
pub(super) fn open_request(m: &NegotiatedMachine) -> NegotiatedFactId {
    let NegotiatedPhase::Requesting { request, .. } = m.phase() else {
        panic!("not requesting: {:?}", m.phase())
    };
    *request
}

/// A machine that posted its request, the request, and when the request expires.
fn requesting_until_expiry() -> (NegotiatedMachine, NegotiatedFactId, Duration) {
    let mut m = machine();
    searching(&mut m);
    let request = open_request(&m);
    let NegotiatedPhase::Requesting { frame, .. } = *m.phase() else {
        unreachable!()
    };
    let expiry = NegotiatedFrames::new(FRAME).start_of(frame + 2);
    (m, request, expiry)
}

/// The id the relay's stamp gives `fact` posted by `author`.
pub(super) fn id_of(author: PlayerId, fact: NegotiatedFact) -> NegotiatedFactId {
    NegotiatedSignedFact::new(author, fact).id()
}

pub(super) fn request_by(author: PlayerId, created_ms: u64) -> (NegotiatedFactId, NegotiatedFact) {
    let fact = NegotiatedFact::Request(NegotiatedRequest {
        category: "duel".into(),
        frame: NegotiatedFrames::new(FRAME).frame_of(t(created_ms)),
        created_us: as_us(t(created_ms)),
    });
    (id_of(author, fact.clone()), fact)
}

/// A machine bidding on player 2's request (the bid stored); returns (request, bid).
pub(super) fn bidding(m: &mut NegotiatedMachine) -> (NegotiatedFactId, NegotiatedFactId) {
    m.online(t(0));
    m.search("duel", t(0));
    let (r, fact) = request_by(2, 0);
    m.receive(2, fact, t(0));
    let frames: Vec<u64> = m.config().frames.readable(t(0));
    let mut out = Vec::new();
    for f in frames {
        out.extend(m.synced("duel", f, t(0)));
    }
    let NegotiatedPhase::Bidding { bid, request, .. } = m.phase().clone() else {
        panic!("not bidding: {:?}", m.phase())
    };
    assert_eq!(request, r);
    assert_eq!(posts(&out).len(), 1);
    assert!(confirm(m, &out, t(0)).is_empty());
    (r, bid)
}

#[test]
fn waits_for_the_frames_then_requests() {
    let mut m = machine();
    assert!(m.search("duel", t(0)).is_empty() || !m.is_online());
    let out = m.online(t(0));
    assert!(
        posts(&out).is_empty(),
        "nothing posted before the frames are synced"
    );
    assert_eq!(m.phase(), &NegotiatedPhase::Looking);
    let frames = m.config().frames.readable(t(0));
    let out = m.synced("duel", frames[0], t(0));
    assert!(posts(&out).is_empty());
    let out = m.synced("duel", frames[1], t(0));
    let posted = posts(&out);
    assert!(matches!(&posted[..], [NegotiatedFact::Request(r)] if r.frame == frames[1]));
    assert!(matches!(m.phase(), NegotiatedPhase::Requesting { .. }));
    // a synced marker for another category is ignored
    let mut other = machine();
    other.online(t(0));
    other.search("duel", t(0));
    for f in &frames {
        assert!(posts(&other.synced("race", *f, t(0))).is_empty());
    }
}

#[test]
fn a_requester_accepts_the_first_bid_and_rejects_the_rest() {
    let mut m = machine();
    searching(&mut m);
    let request = open_request(&m);
    let bid = |us| bid_on(request, us);
    let out = m.receive(2, bid(1), t(5));
    let accept = NegotiatedAccept {
        request,
        bid: id_of(2, bid(1)),
    };
    assert_eq!(posts(&out), vec![NegotiatedFact::Accept(accept.clone())]);
    assert!(
        !is_matched(&out),
        "matched only once the relay stored the accept"
    );
    // a second bid meanwhile waits for the verdict
    let out = m.receive(3, bid(2), t(6));
    assert!(posts(&out).is_empty());
    let out = m.stored(id_of(ME, NegotiatedFact::Accept(accept)), t(7));
    assert!(
        matches!(&events(&out)[..], [NegotiatedEvent::Matched(m)] if m.other == 2 && m.role == NegotiatedRole::Requester)
    );
    // ... and is rejected then
    let reject = NegotiatedReject {
        request,
        bid: id_of(3, bid(2)),
    };
    assert_eq!(posts(&out), vec![NegotiatedFact::Reject(reject)]);
    // a duplicate changes nothing; a later bid is rejected; a self-bid is ignored
    assert!(posts(&m.receive(2, bid(1), t(8))).is_empty());
    let out = m.receive(4, bid(3), t(9));
    assert!(matches!(&posts(&out)[..], [NegotiatedFact::Reject(_)]));
    let out = m.receive(ME, bid(4), t(10));
    assert!(posts(&out).is_empty());
    assert!(matches!(
        &events(&out)[..],
        [NegotiatedEvent::Error {
            kind: NegotiatedErrorKind::NotEntitled,
            ..
        }]
    ));
}

#[test]
fn a_reject_restarts_and_the_request_is_not_bid_on_again() {
    let mut m = machine();
    let (r, bid) = bidding(&mut m);
    // a forged reject is ignored
    let out = m.receive(
        3,
        NegotiatedFact::Reject(NegotiatedReject { request: r, bid }),
        t(10),
    );
    assert!(matches!(m.phase(), NegotiatedPhase::Bidding { .. }));
    assert!(matches!(
        &events(&out)[..],
        [NegotiatedEvent::Error {
            kind: NegotiatedErrorKind::NotEntitled,
            ..
        }]
    ));
    let out = m.receive(
        2,
        NegotiatedFact::Reject(NegotiatedReject { request: r, bid }),
        t(20),
    );
    let ev = events(&out);
    assert_eq!(
        ev[0],
        NegotiatedEvent::Restarted(NegotiatedRestartReason::BidRejected)
    );
    // the same request is still "open" (not accepted) but we do not bid on it again
    assert!(matches!(&posts(&out)[..], [NegotiatedFact::Request(_)]));
}

#[test]
fn an_unanswered_bid_is_withdrawn_at_its_deadline() {
    let mut m = machine();
    let (r, bid) = bidding(&mut m);
    assert!(m.tick(t(1999)).is_empty());
    let out = m.tick(t(2000));
    let withdrawal = NegotiatedFact::Cancel(NegotiatedCancel::withdraw(r, bid));
    assert_eq!(posts(&out), vec![withdrawal.clone()]);
    assert!(
        events(&out).is_empty(),
        "not free before the relay's verdict"
    );
    assert!(matches!(m.phase(), NegotiatedPhase::Withdrawing { .. }));
    // time alone does not free it
    let out = m.tick(t(5_000));
    assert!(posts(&out).is_empty() && events(&out).is_empty());
    let out = m.stored(id_of(ME, withdrawal), t(5_001));
    assert_eq!(
        events(&out)[0],
        NegotiatedEvent::Restarted(NegotiatedRestartReason::BidTimedOut)
    );
    assert!(matches!(m.phase(), NegotiatedPhase::Requesting { .. }));
}

#[test]
fn an_accept_stored_before_our_withdrawal_makes_the_match() {
    let mut m = machine();
    let (r, bid) = bidding(&mut m);
    let out = m.tick(t(2000));
    let withdrawal = posts(&out)[0].clone();
    // the requester's accept was stored first: it arrives before the verdict
    let accept = NegotiatedFact::Accept(NegotiatedAccept { request: r, bid });
    let out = m.receive(2, accept.clone(), t(2010));
    assert!(
        matches!(&events(&out)[..], [NegotiatedEvent::Matched(x)] if x.other == 2 && x.bid == bid && x.accept == id_of(2, accept.clone()))
    );
    let out = m.refused(
        id_of(ME, withdrawal),
        NegotiatedErrorKind::BidAnswered,
        t(2011),
    );
    assert!(out.is_empty());
    assert!(matches!(m.phase(), NegotiatedPhase::Matched(_)));
    // once free, an accept of that old bid is no match (the relay refuses one anyway)
    let mut m = machine();
    let (r, bid) = bidding(&mut m);
    let out = m.tick(t(2000));
    confirm(&mut m, &out, t(2001));
    assert!(matches!(m.phase(), NegotiatedPhase::Requesting { .. }));
    let out = m.receive(
        2,
        NegotiatedFact::Accept(NegotiatedAccept { request: r, bid }),
        t(2100),
    );
    assert!(!is_matched(&out));
    assert!(matches!(m.phase(), NegotiatedPhase::Requesting { .. }));
}

#[test]
fn the_tie_break_pairs_off_sorted_requests() {
    // our request is created at 0 ms; others at -5 (older) and +5 ms (newer)
    let mut m = machine();
    searching(&mut m);
    let mine = open_request(&m);
    // only a newer request: we are position 0 and keep ours
    let (_, newer) = request_by(3, 5);
    m.ingest(3, newer);
    m.tick(t(6));
    assert!(matches!(m.phase(), NegotiatedPhase::Requesting { request, .. } if *request == mine));
    // an older one too: we are position 1 of [older, ours, newer] and bid on the older
    let older_fact = NegotiatedFact::Request(NegotiatedRequest {
        category: "duel".into(),
        frame: NegotiatedFrames::new(FRAME).frame_of(t(0)),
        created_us: as_us(t(0)) - 5000,
    });
    let older = id_of(2, older_fact.clone());
    m.ingest(2, older_fact);
    let out = m.tick(t(7));
    let p = posts(&out);
    assert_eq!(
        p[0],
        NegotiatedFact::Cancel(NegotiatedCancel::request(mine))
    );
    assert!(matches!(&p[1], NegotiatedFact::Bid(b) if b.request == older));
    assert_eq!(
        events(&out)[0],
        NegotiatedEvent::Restarted(NegotiatedRestartReason::TieBreak)
    );
}

#[test]
fn losing_the_connection_restarts_and_old_requests_are_cancelled() {
    let mut m = machine();
    searching(&mut m);
    let old = open_request(&m);
    let old_fact = m.store().get(old).unwrap().fact.clone();
    let out = m.offline();
    assert_eq!(
        events(&out),
        vec![NegotiatedEvent::Restarted(
            NegotiatedRestartReason::ConnectionLost
        )]
    );
    assert!(m.store().is_empty());
    // back on the same relay: resubscribe; the relay still holds our old request
    let out = m.online(t(100));
    assert!(out.iter().any(|o| matches!(
        o,
        NegotiatedOutput::Send(NegotiatedClientMessage::Subscribe { .. })
    )));
    let out = m.ingest(ME, old_fact);
    assert_eq!(
        posts(&out),
        vec![NegotiatedFact::Cancel(NegotiatedCancel::request(old))]
    );
}

#[test]
fn a_departed_requester_is_not_waited_for_nor_bid_on() {
    let mut m = machine();
    let (r, bid) = bidding(&mut m);
    // its bid is withdrawn at once, not at the deadline
    let out = m.departed(2, t(100));
    let withdrawal = NegotiatedFact::Cancel(NegotiatedCancel::withdraw(r, bid));
    assert_eq!(posts(&out), vec![withdrawal.clone()]);
    let out = m.stored(id_of(ME, withdrawal), t(100));
    assert_eq!(
        events(&out)[0],
        NegotiatedEvent::Restarted(NegotiatedRestartReason::RequestClosed)
    );
    // its request is still "open" but we post our own instead of bidding again
    assert!(!m.store().is_closed(r));
    assert!(matches!(&posts(&out)[..], [NegotiatedFact::Request(_)]));
    assert!(m.departed_players().contains(&2));
    // 3's request arrives while 3 is gone: not a candidate for the tie-break
    let (_, fact) = request_by(3, 50);
    m.ingest(3, fact);
    m.ingest_departed(3);
    m.tick(t(101));
    assert!(matches!(m.phase(), NegotiatedPhase::Requesting { .. }));
    // a new fact from 2 means it is back
    let (_, fact) = request_by(2, 60);
    m.ingest(2, fact);
    assert!(!m.departed_players().contains(&2));
}

#[test]
fn cancel_posts_a_cancel_of_the_open_request() {
    let mut m = machine();
    searching(&mut m);
    let request = open_request(&m);
    let out = m.cancel(t(10));
    assert_eq!(
        posts(&out),
        vec![NegotiatedFact::Cancel(NegotiatedCancel::request(request))]
    );
    assert!(out.contains(&NegotiatedOutput::Send(
        NegotiatedClientMessage::Unsubscribe
    )));
    assert_eq!(m.phase(), &NegotiatedPhase::Idle);
    // a bid arriving afterwards is rejected
    let out = m.receive(2, bid_on(request, 9), t(20));
    assert!(matches!(&posts(&out)[..], [NegotiatedFact::Reject(_)]));
}

#[test]
fn a_bid_that_arrives_after_the_request_expired_is_not_accepted() {
    let (mut m, request, expiry) = requesting_until_expiry();
    // the bid comes in with the time at which the request expired: expiry first
    let out = m.receive(2, bid_on(request, as_us(expiry)), expiry);
    assert!(
        !events(&out)
            .iter()
            .any(|e| matches!(e, NegotiatedEvent::Matched(_))),
        "matched on an expired request: {out:?}"
    );
    assert_eq!(
        events(&out)[0],
        NegotiatedEvent::Restarted(NegotiatedRestartReason::RequestExpired)
    );
    assert!(
        posts(&out)
            .iter()
            .any(|f| matches!(f, NegotiatedFact::Reject(r) if r.request == request))
    );
}

#[test]
fn one_open_request_per_author_is_a_candidate() {
    let mut m = machine();
    m.online(t(0));
    m.search("duel", t(0));
    // a junk client posts 256 requests in the frame and answers nothing
    for n in 0..256 {
        let (_, fact) = request_by(9, n);
        m.ingest(9, fact);
    }
    let mut out = Vec::new();
    for f in m.config().frames.readable(t(0)) {
        out.extend(m.synced("duel", f, t(300)));
    }
    let NegotiatedPhase::Bidding { bid, request, .. } = *m.phase() else {
        panic!("not bidding: {:?}", m.phase())
    };
    // it rejects our bid: we do not try its 255 other requests one after the other
    let out = m.receive(
        9,
        NegotiatedFact::Reject(NegotiatedReject { request, bid }),
        t(400),
    );
    assert!(
        matches!(&posts(&out)[..], [NegotiatedFact::Request(_)]),
        "{:?}",
        posts(&out)
    );
}

#[test]
fn a_requester_is_not_matched_before_the_relay_stored_its_accept() {
    let mut m = machine();
    searching(&mut m);
    let request = open_request(&m);
    let out = m.receive(2, bid_on(request, 1), t(5));
    assert!(matches!(&posts(&out)[..], [NegotiatedFact::Accept(_)]));
    assert!(
        !matches!(m.phase(), NegotiatedPhase::Matched(_)),
        "matched on an accept the relay may refuse"
    );
}

#[test]
fn facts_after_a_pass_of_time_are_judged_after_what_expired() {
    // the client plugin's order: time passes, then the batch of facts, then a tick
    let (mut m, request, expiry) = requesting_until_expiry();
    let mut out = m.pass_time(expiry);
    out.extend(m.ingest(2, bid_on(request, 5)));
    out.extend(m.tick(expiry));
    assert!(
        !posts(&out)
            .iter()
            .any(|f| matches!(f, NegotiatedFact::Accept(_)))
    );
    assert_eq!(
        events(&out)[0],
        NegotiatedEvent::Restarted(NegotiatedRestartReason::RequestExpired)
    );
}
