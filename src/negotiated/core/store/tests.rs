//! Unit and property tests of the fact store.

use super::*;
use crate::negotiated::core::fact::*;
use proptest::prelude::*;

fn request(author: PlayerId, frame: u64, created_us: u64) -> NegotiatedSignedFact {
    NegotiatedSignedFact::new(
        author,
        NegotiatedFact::Request(NegotiatedRequest {
            category: "duel".into(),
            frame,
            created_us,
        }),
    )
}

fn bid(author: PlayerId, request: NegotiatedFactId, created_us: u64) -> NegotiatedSignedFact {
    NegotiatedSignedFact::new(
        author,
        NegotiatedFact::Bid(NegotiatedBid {
            request,
            created_us,
            deadline_us: u64::MAX,
        }),
    )
}

fn accept(
    author: PlayerId,
    request: NegotiatedFactId,
    bid: NegotiatedFactId,
) -> NegotiatedSignedFact {
    NegotiatedSignedFact::new(
        author,
        NegotiatedFact::Accept(NegotiatedAccept { request, bid }),
    )
}

#[test]
fn conversation_and_entitlement() {
    let mut s = NegotiatedFactStore::new();
    let r = s.insert(request(1, 5, 100)).unwrap().id();
    assert_eq!(s.open_requests("duel", &[4, 5]).len(), 1);
    assert!(s.open_requests("race", &[4, 5]).is_empty());
    let b = s.insert(bid(2, r, 200)).unwrap().id();
    let self_bid = s.insert(bid(1, r, 201)).unwrap().id();
    assert_eq!(s.bids_on(r).len(), 1, "a self-bid is not entitled");
    assert_ne!(b, self_bid);
    // a forged accept by a third player closes nothing
    let forged = s.insert(accept(3, r, b)).unwrap();
    assert!(forged.is_added());
    assert!(!s.is_closed(r));
    assert_eq!(s.answer_to(b), None);
    let a = s.insert(accept(1, r, b)).unwrap().id();
    assert!(s.is_closed(r));
    assert_eq!(s.accepted_bid(r), Some(b));
    assert_eq!(s.answer_to(b), Some(NegotiatedAnswer::Accepted(a)));
    assert!(s.open_requests("duel", &[5]).is_empty());
    // duplicates change nothing
    assert_eq!(
        s.insert(accept(1, r, b)).unwrap(),
        NegotiatedInsert::Duplicate(a)
    );
    assert_eq!(s.len(), 5);
    assert_eq!(s.count_by(1, 5), 3);
    // unknown request, bid of another request
    assert_eq!(
        s.insert(bid(2, NegotiatedFactId(42), 1)),
        Err(NegotiatedStoreError::UnknownRequest(NegotiatedFactId(42)))
    );
    let r2 = s.insert(request(4, 5, 300)).unwrap().id();
    assert_eq!(
        s.insert(accept(4, r2, b)),
        Err(NegotiatedStoreError::BidOfAnotherRequest(b))
    );
    assert_eq!(
        s.insert_strict(accept(4, r2, NegotiatedFactId(7))),
        Err(NegotiatedStoreError::UnknownBid(NegotiatedFactId(7)))
    );
    assert!(s.insert(accept(4, r2, NegotiatedFactId(7))).is_ok());
    assert_eq!(
        s.insert(bid(2, b, 1)),
        Err(NegotiatedStoreError::NotARequest(b))
    );
    assert_eq!(s.drop_before(6), 7);
    assert!(s.is_empty());
    assert_eq!(s.count_by(1, 5), 0);
}

#[test]
fn only_the_bidder_withdraws_and_answers_do_not_use_up_a_share() {
    let mut s = NegotiatedFactStore::new();
    let r = s.insert(request(1, 5, 100)).unwrap().id();
    let b = s.insert(bid(2, r, 200)).unwrap().id();
    let withdraw = |author, bid| {
        NegotiatedSignedFact::new(
            author,
            NegotiatedFact::Cancel(NegotiatedCancel::withdraw(r, bid)),
        )
    };
    // a withdrawal by the requester or a third player counts for nothing
    for forger in [1, 3] {
        s.insert(withdraw(forger, b)).unwrap();
        assert_eq!(s.answer_to(b), None);
    }
    assert!(!s.is_closed(r), "a withdrawal closes no request");
    let w = s.insert(withdraw(2, b)).unwrap().id();
    assert_eq!(s.answer_to(b), Some(NegotiatedAnswer::Withdrawn(w)));
    assert!(!s.is_closed(r));
    assert_eq!(s.accept_of_bid(b), None);
    // the bidder's withdrawal does not count toward its share; its bid does
    assert_eq!(s.count_by(2, 5), 1);
    // nor do the requester's rejects; a forged withdrawal did (player 3)
    let b2 = s.insert(bid(4, r, 300)).unwrap().id();
    let reject = NegotiatedSignedFact::new(
        1,
        NegotiatedFact::Reject(NegotiatedReject {
            request: r,
            bid: b2,
        }),
    );
    s.insert(reject).unwrap();
    assert_eq!((s.count_by(1, 5), s.count_by(3, 5)), (2, 1));
    let a = s.insert(accept(1, r, b2)).unwrap().id();
    assert_eq!(s.accept_of_bid(b2).map(|f| f.id), Some(a));
    assert_eq!(
        s.answer_to(b2)
            .map(|x| matches!(x, NegotiatedAnswer::Rejected(_))),
        Some(true)
    );
    assert_eq!(s.by_author(2).count(), 2);
    assert_eq!(s.authors(), 4);
    s.drop_before(6);
    assert_eq!((s.authors(), s.by_author(2).count()), (0, 0));
}

/// A random conversation: requests, then facts about them by random authors.
fn arb_facts() -> impl Strategy<Value = Vec<NegotiatedSignedFact>> {
    (
        proptest::collection::vec((1u64..5, 0u64..4, 0u64..1000), 1..6),
        proptest::collection::vec((1u64..5, 0usize..6, 0u8..6, 0usize..8, 0u64..50), 0..30),
    )
        .prop_map(|(requests, others)| {
            let requests: Vec<NegotiatedSignedFact> = requests
                .into_iter()
                .map(|(a, f, t)| request(a, f, t))
                .collect();
            let mut facts = requests.clone();
            let mut bids: Vec<NegotiatedSignedFact> = Vec::new();
            for (author, r, kind, b, t) in others {
                let r = requests[r % requests.len()].id();
                let bid_id = bids
                    .iter()
                    .filter(|x| x.fact.request() == Some(r))
                    .nth(b % 4)
                    .map(|x| x.id())
                    .unwrap_or(NegotiatedFactId(b as u64));
                let fact = match kind {
                    0 | 1 => NegotiatedFact::Bid(NegotiatedBid {
                        request: r,
                        created_us: t,
                        deadline_us: t,
                    }),
                    2 => NegotiatedFact::Accept(NegotiatedAccept {
                        request: r,
                        bid: bid_id,
                    }),
                    3 => NegotiatedFact::Reject(NegotiatedReject {
                        request: r,
                        bid: bid_id,
                    }),
                    4 => NegotiatedFact::Cancel(NegotiatedCancel::request(r)),
                    _ => NegotiatedFact::Cancel(NegotiatedCancel::withdraw(r, bid_id)),
                };
                let signed = NegotiatedSignedFact::new(author, fact);
                if kind <= 1 {
                    bids.push(signed.clone());
                }
                facts.push(signed);
            }
            facts
        })
}

fn summary(
    s: &NegotiatedFactStore,
) -> Vec<(NegotiatedFactId, bool, bool, Option<NegotiatedFactId>)> {
    s.ids()
        .into_iter()
        .filter(|id| s.request(*id).is_some())
        .map(|id| (id, s.is_closed(id), s.is_cancelled(id), s.accepted_bid(id)))
        .collect()
}

proptest! {
    /// Receiving facts twice, in any order that keeps each request before the
    /// facts about it, gives the same store (entitlement-wise; "the first accept"
    /// is only compared when there is one).
    #[test]
    fn idempotent_and_order_independent(facts in arb_facts(), seed in any::<u64>()) {
        let mut once = NegotiatedFactStore::new();
        for f in &facts {
            let _ = once.insert(f.clone());
        }
        let mut twice = NegotiatedFactStore::new();
        // requests first, then everything else twice in a shuffled order
        let mut rng = fastrand::Rng::with_seed(seed);
        let (requests, rest): (Vec<_>, Vec<_>) =
            facts.iter().cloned().partition(|f| f.fact.request().is_none());
        let mut rest: Vec<_> = rest.iter().cloned().chain(rest.iter().cloned()).collect();
        rng.shuffle(&mut rest);
        for f in requests.iter().chain(rest.iter()) {
            let _ = twice.insert(f.clone());
        }
        for f in &facts {
            let r = twice.insert(f.clone());
            prop_assert!(matches!(r, Ok(NegotiatedInsert::Duplicate(_))) || r.is_err());
        }
        prop_assert_eq!(once.ids(), twice.ids());
        let (a, b) = (summary(&once), summary(&twice));
        prop_assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            prop_assert_eq!(x.0, y.0);
            prop_assert_eq!(x.1, y.1);
            prop_assert_eq!(x.2, y.2);
            prop_assert_eq!(x.3.is_some(), y.3.is_some());
        }
    }

    /// Only the requester closes a request, and only facts about known requests are stored.
    #[test]
    fn only_the_requester_closes(facts in arb_facts()) {
        let mut s = NegotiatedFactStore::new();
        for f in &facts {
            let _ = s.insert(f.clone());
        }
        for id in s.ids() {
            let Some((stored, _)) = s.request(id) else { continue };
            let closed_by_requester = s.about(id).any(|f| {
                f.author == stored.author
                    && matches!(f.fact.kind(), NegotiatedFactKind::Accept | NegotiatedFactKind::Cancel)
            });
            prop_assert_eq!(s.is_closed(id), closed_by_requester);
            for f in s.about(id) {
                prop_assert_eq!(f.frame, stored.frame);
            }
            for b in s.bids_on(id) {
                prop_assert_ne!(b.author, stored.author);
            }
        }
    }

    /// Dropping frames removes exactly the facts of those frames.
    #[test]
    fn drop_removes_whole_frames(facts in arb_facts(), cut in 0u64..5) {
        let mut s = NegotiatedFactStore::new();
        for f in &facts {
            let _ = s.insert(f.clone());
        }
        let before = s.len();
        let expected: usize = s.frames().filter(|(f, _)| *f < cut).map(|(_, n)| n).sum();
        prop_assert_eq!(s.drop_before(cut), expected);
        prop_assert_eq!(s.len(), before - expected);
        prop_assert!(s.frames().all(|(f, _)| f >= cut));
        for id in s.ids() {
            let f = s.get(id).unwrap();
            if let Some(r) = f.fact.request() {
                prop_assert!(s.contains(r));
            }
        }
    }
}
