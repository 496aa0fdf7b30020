//! Unit tests of the machine against the relay's verdicts: refusals, withdrawals,
//! cancels that wait for a verdict, and lost connections.

use crate::negotiated::core::fact::{
    NegotiatedAccept, NegotiatedCancel, NegotiatedFact, NegotiatedFactId,
};
use crate::negotiated::core::protocol::{NegotiatedClientMessage, NegotiatedErrorKind};

use super::tests::{
    ME, bid_on, bidding, confirm, events, id_of, is_matched, machine, open_request, posts,
    request_by, searching, t,
};
use super::*;

/// A requester that accepted player 2's bid and waits for the verdict; returns
/// (request, bid, accept).
fn accepting(m: &mut NegotiatedMachine) -> (NegotiatedFactId, NegotiatedFactId, NegotiatedFact) {
    searching(m);
    let request = open_request(m);
    let out = m.receive(2, bid_on(request, 1), t(5));
    let [accept @ NegotiatedFact::Accept(a)] = &posts(&out)[..] else {
        panic!("{out:?}")
    };
    (request, a.bid, accept.clone())
}

#[test]
fn a_refused_accept_is_no_match_and_the_next_bid_is_taken() {
    let mut m = machine();
    let (request, _, accept) = accepting(&mut m);
    // another bid waits meanwhile
    m.receive(3, bid_on(request, 2), t(6));
    // the first bidder withdrew first: the relay refuses our accept
    let out = m.refused(id_of(ME, accept), NegotiatedErrorKind::BidWithdrawn, t(7));
    assert!(!is_matched(&out));
    let next = NegotiatedAccept {
        request,
        bid: id_of(3, bid_on(request, 2)),
    };
    assert_eq!(posts(&out), vec![NegotiatedFact::Accept(next.clone())]);
    let out = m.stored(id_of(ME, NegotiatedFact::Accept(next)), t(8));
    assert!(
        matches!(&events(&out)[..], [NegotiatedEvent::Matched(x)] if x.other == 3 && x.request == request)
    );
}

#[test]
fn a_refused_accept_of_a_request_the_relay_lost_looks_again() {
    let mut m = machine();
    let (_, _, accept) = accepting(&mut m);
    let out = m.refused(id_of(ME, accept), NegotiatedErrorKind::UnknownRequest, t(7));
    assert_eq!(
        events(&out)[0],
        NegotiatedEvent::Restarted(NegotiatedRestartReason::RequestClosed)
    );
    assert!(!is_matched(&out));
}

#[test]
fn an_accept_awaiting_its_verdict_is_posted_again_after_a_lost_connection() {
    let mut m = machine();
    let (_, _, accept) = accepting(&mut m);
    assert!(
        m.offline().is_empty(),
        "nothing ends while a verdict is due"
    );
    let out = m.online(t(100));
    assert_eq!(posts(&out), vec![accept.clone()]);
    // the relay had stored it: it says so again
    let out = m.stored(id_of(ME, accept), t(110));
    assert!(is_matched(&out));
}

#[test]
fn a_bid_awaiting_its_answer_is_withdrawn_after_a_lost_connection() {
    let mut m = machine();
    let (r, bid) = bidding(&mut m);
    assert!(m.offline().is_empty());
    let out = m.online(t(100));
    let withdrawal = NegotiatedFact::Cancel(NegotiatedCancel::withdraw(r, bid));
    assert_eq!(posts(&out), vec![withdrawal.clone()]);
    // the relay restarted and lost it all: free
    let out = m.refused(
        id_of(ME, withdrawal),
        NegotiatedErrorKind::UnknownRequest,
        t(110),
    );
    assert_eq!(
        events(&out)[0],
        NegotiatedEvent::Restarted(NegotiatedRestartReason::ConnectionLost)
    );
    // the accept the relay stored before we left reaches us after the refusal of the
    // withdrawal would (here: once back, before the verdict): matched
    let mut m = machine();
    let (r, bid) = bidding(&mut m);
    m.offline();
    m.online(t(100));
    let accept = NegotiatedFact::Accept(NegotiatedAccept { request: r, bid });
    assert!(is_matched(&m.receive(2, accept, t(101))));
}

#[test]
fn a_cancel_while_bidding_withdraws_the_bid_and_waits_for_the_verdict() {
    let mut m = machine();
    let (r, bid) = bidding(&mut m);
    let out = m.cancel(t(10));
    let withdrawal = NegotiatedFact::Cancel(NegotiatedCancel::withdraw(r, bid));
    assert_eq!(posts(&out), vec![withdrawal.clone()]);
    assert!(m.is_cancelling() && events(&out).is_empty());
    // a second cancel is refused; the verdict ends the search
    assert!(matches!(
        &events(&m.cancel(t(11)))[..],
        [NegotiatedEvent::Error { .. }]
    ));
    let out = m.stored(id_of(ME, withdrawal), t(20));
    assert!(
        matches!(
            &events(&out)[..],
            [NegotiatedEvent::Cancelled { request: None, .. }]
        ),
        "{out:?}"
    );
    assert_eq!(m.phase(), &NegotiatedPhase::Idle);
    assert!(posts(&out).is_empty());
    // the requester's accept came first: matched after all
    let mut m = machine();
    let (r, bid) = bidding(&mut m);
    m.cancel(t(10));
    let out = m.receive(
        2,
        NegotiatedFact::Accept(NegotiatedAccept { request: r, bid }),
        t(11),
    );
    assert!(is_matched(&out));
}

#[test]
fn a_cancel_while_accepting_ends_with_the_verdict() {
    // refused: the request is cancelled and the search ends
    let mut m = machine();
    let (request, _, accept) = accepting(&mut m);
    assert!(m.cancel(t(6)).is_empty());
    let out = m.refused(id_of(ME, accept), NegotiatedErrorKind::BidExpired, t(7));
    assert_eq!(
        posts(&out),
        vec![NegotiatedFact::Cancel(NegotiatedCancel::request(request))]
    );
    assert!(
        matches!(&events(&out)[..], [NegotiatedEvent::Cancelled { request: Some(r), .. }] if *r == request)
    );
    // stored: the match stands (the cancel came too late)
    let mut m = machine();
    let (_, _, accept) = accepting(&mut m);
    m.cancel(t(6));
    assert!(is_matched(&m.stored(id_of(ME, accept), t(7))));
    // searching again before the verdict carries on
    let mut m = machine();
    let (_, _, _) = accepting(&mut m);
    m.cancel(t(6));
    assert!(m.search("duel", t(6)).is_empty());
    assert!(!m.is_cancelling() && m.is_searching());
}

#[test]
fn a_refused_request_restarts_at_once_and_waits_before_requesting_again() {
    let mut m = machine();
    searching(&mut m);
    let request = open_request(&m);
    let out = m.refused(request, NegotiatedErrorKind::FrameOutOfRange, t(10));
    assert_eq!(
        events(&out),
        vec![NegotiatedEvent::Restarted(NegotiatedRestartReason::Refused)]
    );
    assert!(posts(&out).is_empty());
    assert_eq!(m.phase(), &NegotiatedPhase::Looking);
    // an open request to bid on is taken at once; none: a request after the bid timeout
    assert!(posts(&m.tick(t(1999))).is_empty());
    assert!(matches!(
        &posts(&m.tick(t(2010)))[..],
        [NegotiatedFact::Request(_)]
    ));
    // a refusal that is not about our request changes nothing
    assert!(
        m.refused(
            NegotiatedFactId(7),
            NegotiatedErrorKind::TooManyFacts,
            t(2020)
        )
        .is_empty()
    );
}

#[test]
fn a_refused_bid_gives_the_request_up_at_once() {
    let mut m = machine();
    let (_, bid) = bidding(&mut m);
    let out = m.refused(bid, NegotiatedErrorKind::RequestClosed, t(10));
    assert_eq!(
        events(&out)[0],
        NegotiatedEvent::Restarted(NegotiatedRestartReason::Refused)
    );
    assert!(matches!(&posts(&out)[..], [NegotiatedFact::Request(_)]));
}

#[test]
fn bids_of_departed_players_and_past_their_deadline_are_not_accepted() {
    // a bid past its deadline is rejected, not accepted
    let mut m = machine();
    searching(&mut m);
    let request = open_request(&m);
    let late = NegotiatedFact::Bid(crate::negotiated::core::fact::NegotiatedBid {
        request,
        created_us: 1,
        deadline_us: crate::negotiated::core::clock::as_us(t(2)),
    });
    let out = m.receive(4, late, t(5));
    assert!(
        matches!(&posts(&out)[..], [NegotiatedFact::Reject(_)]),
        "{out:?}"
    );
    assert!(matches!(m.phase(), NegotiatedPhase::Requesting { .. }));
    // a waiting bid whose bidder left since is not taken after a refused accept
    let mut m = machine();
    let (request, _, accept) = accepting(&mut m);
    m.receive(3, bid_on(request, 2), t(6));
    m.departed(3, t(7));
    let out = m.refused(id_of(ME, accept), NegotiatedErrorKind::BidExpired, t(8));
    assert!(posts(&out).is_empty(), "{out:?}");
    assert!(matches!(m.phase(), NegotiatedPhase::Requesting { .. }));
}

#[test]
fn the_store_holds_our_facts_only_once_stored() {
    let mut m = machine();
    m.online(t(0));
    let mut out = m.search("duel", t(0));
    for f in m.config().frames.readable(t(0)) {
        out.extend(m.synced("duel", f, t(0)));
    }
    let request = open_request(&m);
    assert!(!m.store().contains(request));
    assert_eq!(m.pending().count(), 1);
    confirm(&mut m, &out, t(1));
    assert!(m.store().contains(request) && m.pending().count() == 0);
    // the relay's subscription catch-up replays another request of ours: cancelled
    let (old, fact) = request_by(ME, 7);
    assert_ne!(old, request);
    let out = m.ingest(ME, fact);
    assert!(
        out.contains(&NegotiatedOutput::Send(NegotiatedClientMessage::Post {
            fact: NegotiatedFact::Cancel(NegotiatedCancel::request(old))
        }))
    );
}

#[test]
fn a_reject_of_a_withdrawn_bid_shows_the_requester_is_back() {
    let mut m = machine();
    let (r, bid) = bidding(&mut m);
    // the requester was silent: withdrawn at the deadline, given up, our own request
    let out = m.tick(t(2000));
    let out = confirm(&mut m, &out, t(2001));
    assert!(matches!(&posts(&out)[..], [NegotiatedFact::Request(_)]));
    confirm(&mut m, &out, t(2002));
    let mine = open_request(&m);
    // it comes back and turns the old bid down: its (older) request wins the tie-break
    let reject =
        NegotiatedFact::Reject(crate::negotiated::core::fact::NegotiatedReject { request: r, bid });
    let out = m.receive(2, reject, t(2100));
    let p = posts(&out);
    assert_eq!(
        p[0],
        NegotiatedFact::Cancel(NegotiatedCancel::request(mine))
    );
    assert!(matches!(&p[1], NegotiatedFact::Bid(b) if b.request == r));
}
