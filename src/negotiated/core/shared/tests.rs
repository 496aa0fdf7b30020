//! The shared store in memory, through the pump: verdicts after the log, departures of the
//! latest connection only, lost replies retried, a trimmed log read again.

use std::time::Duration;

use super::*;
use crate::negotiated::core::fact::{
    NegotiatedAccept, NegotiatedBid, NegotiatedCancel, NegotiatedRequest,
};
use crate::negotiated::core::frame::NegotiatedFrames;
use crate::negotiated::core::protocol::NegotiatedErrorKind;
use crate::negotiated::core::relay_core::NegotiatedRelayLimits;

const FRAME: Duration = Duration::from_secs(2);

fn store() -> NegotiatedMemorySharedStore {
    NegotiatedMemorySharedStore::new(
        NegotiatedFrames::new(FRAME),
        NegotiatedRelayLimits::default(),
    )
}

fn at(ms: u64) -> Duration {
    Duration::from_millis(100_000 + ms)
}

fn request(now: Duration) -> NegotiatedFact {
    let frames = NegotiatedFrames::new(FRAME);
    NegotiatedFact::Request(NegotiatedRequest {
        category: "duel".into(),
        frame: frames.frame_of(now),
        created_us: now.as_micros() as u64,
    })
}

fn post(author: PlayerId, fact: NegotiatedFact, now: Duration) -> NegotiatedSharedOp {
    NegotiatedSharedOp::Post { author, fact, now }
}

fn connection(relay: &str, number: u64) -> NegotiatedConnection {
    NegotiatedConnection {
        relay: relay.into(),
        number,
    }
}

/// The verdicts in `replies`, by fact id, with the log entries seen before each.
fn verdicts(
    replies: &[NegotiatedSharedReply],
) -> Vec<(NegotiatedFactId, usize, NegotiatedSharedVerdict)> {
    let mut seen = 0;
    let mut out = Vec::new();
    for reply in replies {
        match reply {
            NegotiatedSharedReply::Log(_) => seen += 1,
            NegotiatedSharedReply::Verdict { fact, verdict, .. } => {
                out.push((*fact, seen, verdict.clone()))
            }
            _ => {}
        }
    }
    out
}

#[test]
fn a_verdict_comes_after_the_log_entries_it_was_decided_behind() {
    let shared = store();
    let (mut a, mut b) = (NegotiatedSharedPump::new(), NegotiatedSharedPump::new());
    let req = request(at(0));
    let req_id = post_id(1, &req);
    a.push(post(1, req.clone(), at(0)));
    let replies = a.run(&mut shared.clone(), Duration::ZERO);
    assert_eq!(
        verdicts(&replies)[0].1,
        1,
        "the request's own entry comes first"
    );
    let bid = NegotiatedFact::Bid(NegotiatedBid {
        request: req_id,
        created_us: 1,
        deadline_us: u64::MAX,
    });
    let bid_id = post_id(2, &bid);
    b.push(post(2, bid, at(1)));
    let replies = b.run(&mut shared.clone(), Duration::ZERO);
    // relay b read the request (posted through a) before its bid's verdict
    let found = verdicts(&replies);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, bid_id);
    assert_eq!(found[0].1, 2);
    assert!(matches!(found[0].2, NegotiatedSharedVerdict::Stored(_)));
    // an accept through a, then the bidder's withdrawal through b: refused, the accept wins
    let accept = NegotiatedFact::Accept(NegotiatedAccept {
        request: req_id,
        bid: bid_id,
    });
    a.push(post(1, accept, at(2)));
    a.run(&mut shared.clone(), Duration::ZERO);
    b.push(post(
        2,
        NegotiatedFact::Cancel(NegotiatedCancel::withdraw(req_id, bid_id)),
        at(3),
    ));
    let replies = b.run(&mut shared.clone(), Duration::ZERO);
    let found = verdicts(&replies);
    assert_eq!(
        found[0].1, 1,
        "the accept reaches relay b before the refusal"
    );
    match &found[0].2 {
        NegotiatedSharedVerdict::Refused(refusal, _) => {
            assert_eq!(refusal.kind, NegotiatedErrorKind::BidAnswered);
            assert!(refusal.winner.is_some());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn only_the_latest_connection_departs() {
    let mut shared = store();
    let (a, b) = (connection("a", 1), connection("b", 1));
    shared.connect(7, &a, at(0)).unwrap();
    shared.connect(7, &b, at(1)).unwrap();
    let end = shared.disconnect(7, &a, at(2)).unwrap();
    let log = shared
        .read(NegotiatedLogPosition::START, 100, Duration::ZERO)
        .unwrap();
    assert_eq!(
        log.len(),
        2,
        "the close of the older connection is no departure"
    );
    assert_eq!(end, log[1].position);
    shared.disconnect(7, &b, at(3)).unwrap();
    shared.disconnect(7, &b, at(4)).unwrap();
    let log = shared
        .read(NegotiatedLogPosition::START, 100, Duration::ZERO)
        .unwrap();
    assert_eq!(log.last().unwrap().event, NegotiatedLogEvent::Departed(7));
    assert_eq!(
        log.len(),
        3,
        "a second close of the same connection changes nothing"
    );
}

#[test]
fn a_lost_reply_is_retried_and_finds_what_the_first_call_did() {
    let shared = store();
    let mut pump = NegotiatedSharedPump::new();
    shared.lose_replies(1);
    let req = request(at(0));
    pump.push(post(1, req.clone(), at(0)));
    let replies = pump.run(&mut shared.clone(), Duration::ZERO);
    assert!(matches!(
        replies[..],
        [NegotiatedSharedReply::Unavailable(_)]
    ));
    assert_eq!(pump.queued(), 1);
    let replies = pump.run(&mut shared.clone(), Duration::ZERO);
    let found = verdicts(&replies);
    assert!(matches!(found[0].2, NegotiatedSharedVerdict::Duplicate(_)));
    assert_eq!(
        found[0].1, 1,
        "the stored request is read before its verdict"
    );
    assert!(replies.contains(&NegotiatedSharedReply::Available));
}

#[test]
fn calls_wait_in_order_while_the_store_is_unreachable() {
    let shared = store();
    let mut pump = NegotiatedSharedPump::new();
    shared.set_reachable(false);
    let req = request(at(0));
    pump.push(post(1, req.clone(), at(0)));
    pump.push(post(
        1,
        NegotiatedFact::Cancel(NegotiatedCancel::request(post_id(1, &req))),
        at(1),
    ));
    assert_eq!(pump.run(&mut shared.clone(), Duration::ZERO).len(), 1);
    assert!(
        pump.run(&mut shared.clone(), Duration::ZERO).is_empty(),
        "one notice per outage"
    );
    shared.set_reachable(true);
    let found = verdicts(&pump.run(&mut shared.clone(), Duration::ZERO));
    assert_eq!(found.len(), 2);
    assert!(
        found
            .iter()
            .all(|(_, _, v)| matches!(v, NegotiatedSharedVerdict::Stored(_)))
    );
}

#[test]
fn a_relay_behind_a_trimmed_log_reads_it_again() {
    let shared = store();
    let mut slow = NegotiatedSharedPump::new();
    let mut fast = NegotiatedSharedPump::new();
    fast.push(post(1, request(at(0)), at(0)));
    fast.run(&mut shared.clone(), Duration::ZERO);
    slow.run(&mut shared.clone(), Duration::ZERO);
    fast.push(post(3, request(at(1)), at(1)));
    fast.run(&mut shared.clone(), Duration::ZERO);
    let later = at(0) + FRAME * (memory::NEGOTIATED_LOG_KEPT_FRAMES + 1);
    fast.push(post(2, request(later), later));
    fast.run(&mut shared.clone(), Duration::ZERO);
    let replies = slow.run(&mut shared.clone(), Duration::ZERO);
    assert_eq!(replies[0], NegotiatedSharedReply::Reset);
    assert_eq!(
        replies
            .iter()
            .filter(|r| matches!(r, NegotiatedSharedReply::Log(_)))
            .count(),
        1
    );
}
