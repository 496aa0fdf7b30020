//! The relay's logic without the engine: store facts by frame and route them along the seed's
//! pivots. No matchmaking happens here.
//!
//! - A request goes to everyone watching its category and frame.
//! - A bid goes to the requester.
//! - An accept goes to the bidder and to everyone watching the request.
//! - A reject goes to the bidder.
//! - A cancel goes to everyone watching the request.
//! - When a connection closes, everyone watching a frame where it posted a request is
//!   told it departed (its requests will not be answered); so is every later subscriber
//!   to such a frame, until it connects again. This is presence, not matchmaking: what to
//!   make of it is again the clients' business.
//!
//! The relay stamps the author from the connection and checks only structure (the
//! request exists, an answer names a bid on that request, a request is posted near the
//! current frame). Whether an author was entitled to a fact is for clients to judge.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::shared::player::{PlayerId, validate_category};

use super::fact::{NegotiatedFact, NegotiatedSignedFact};
use super::frame::NegotiatedFrames;
use super::protocol::{
    NEGOTIATED_MAX_WATCHED_FRAMES, NegotiatedErrorKind, NegotiatedRelayMessage, bounded_error_text,
};
use super::store::{
    NegotiatedFactStore, NegotiatedInsert, NegotiatedStoreError, NegotiatedStoredFact,
};

/// Messages to send: (recipient, message), in order.
pub type NegotiatedOutbox = Vec<(PlayerId, NegotiatedRelayMessage)>;

/// What a client watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedWatch {
    /// The category.
    pub category: String,
    /// The frames.
    pub frames: BTreeSet<u64>,
}

/// Why the relay refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedRefusal {
    /// What.
    pub kind: NegotiatedErrorKind,
    /// For humans.
    pub message: String,
}

impl NegotiatedRefusal {
    fn new(kind: NegotiatedErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The refusal as a message to the client.
    pub fn to_message(&self) -> NegotiatedRelayMessage {
        NegotiatedRelayMessage::Error {
            kind: self.kind,
            message: bounded_error_text(self.message.clone()),
        }
    }
}

/// Counters of the relay since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NegotiatedRelayStats {
    /// Facts stored.
    pub facts_stored: u64,
    /// Facts received again (ignored).
    pub facts_duplicate: u64,
    /// Facts refused (unknown request, out of range, too many...).
    pub facts_refused: u64,
    /// Fact messages sent to clients (forwards and subscription catch-up).
    pub facts_sent: u64,
    /// Facts dropped with their expired frame.
    pub facts_expired: u64,
}

/// The relay's store, subscriptions and routing.
#[derive(Debug, Clone)]
pub struct NegotiatedRelayCore {
    frames: NegotiatedFrames,
    store: NegotiatedFactStore,
    watches: HashMap<PlayerId, NegotiatedWatch>,
    departed: BTreeSet<PlayerId>,
    max_facts_per_frame: usize,
    stats: NegotiatedRelayStats,
}

impl NegotiatedRelayCore {
    /// A relay with this frame grid, accepting at most `max_facts_per_frame` facts per
    /// connection and frame.
    pub fn new(frames: NegotiatedFrames, max_facts_per_frame: usize) -> Self {
        Self {
            frames,
            store: NegotiatedFactStore::new(),
            watches: HashMap::new(),
            departed: BTreeSet::new(),
            max_facts_per_frame: max_facts_per_frame.max(1),
            stats: NegotiatedRelayStats::default(),
        }
    }

    /// The frame grid.
    pub fn frames(&self) -> NegotiatedFrames {
        self.frames
    }

    /// Changes the per-connection, per-frame fact limit.
    pub fn set_max_facts_per_frame(&mut self, max: usize) {
        self.max_facts_per_frame = max.max(1);
    }

    /// The stored facts.
    pub fn store(&self) -> &NegotiatedFactStore {
        &self.store
    }

    /// The counters.
    pub fn stats(&self) -> NegotiatedRelayStats {
        self.stats
    }

    /// What a client watches.
    pub fn watch(&self, client: PlayerId) -> Option<&NegotiatedWatch> {
        self.watches.get(&client)
    }

    /// Clients watching a category and frame, sorted.
    pub fn watchers(&self, category: &str, frame: u64) -> BTreeSet<PlayerId> {
        self.watches
            .iter()
            .filter(|(_, w)| w.category == category && w.frames.contains(&frame))
            .map(|(c, _)| *c)
            .collect()
    }

    /// Whether `client` sees a stored fact through routing: requests, accepts and cancels
    /// by watching; bids as the requester; rejects (and accepts) as the bidder; its own facts.
    fn visible_to(&self, client: PlayerId, fact: &NegotiatedStoredFact) -> bool {
        if fact.author == client {
            return true;
        }
        match &fact.fact {
            NegotiatedFact::Request(_) | NegotiatedFact::Accept(_) | NegotiatedFact::Cancel(_) => {
                true
            }
            NegotiatedFact::Bid(b) => self.store.requester(b.request) == Some(client),
            NegotiatedFact::Reject(r) => self.store.get(r.bid).map(|b| b.author) == Some(client),
        }
    }

    /// Replaces a client's subscription: sends the stored facts it may see in every newly
    /// watched frame, then [`NegotiatedRelayMessage::Synced`] for that frame.
    pub fn subscribe(
        &mut self,
        client: PlayerId,
        category: String,
        frames: Vec<u64>,
    ) -> Result<NegotiatedOutbox, NegotiatedRefusal> {
        validate_category(&category)
            .map_err(|why| NegotiatedRefusal::new(NegotiatedErrorKind::InvalidCategory, why))?;
        let frames: BTreeSet<u64> = frames.into_iter().collect();
        if frames.len() > NEGOTIATED_MAX_WATCHED_FRAMES {
            return Err(NegotiatedRefusal::new(
                NegotiatedErrorKind::InvalidSubscription,
                format!(
                    "a subscription names at most {NEGOTIATED_MAX_WATCHED_FRAMES} frames, got {}",
                    frames.len()
                ),
            ));
        }
        let already: BTreeSet<u64> = match self.watches.get(&client) {
            Some(w) if w.category == category => w.frames.clone(),
            _ => BTreeSet::new(),
        };
        let mut out = NegotiatedOutbox::new();
        for frame in frames.difference(&already) {
            let mut gone = BTreeSet::new();
            for fact in self.store.facts_in(*frame) {
                if fact.category == category && self.visible_to(client, fact) {
                    out.push((
                        client,
                        NegotiatedRelayMessage::Fact {
                            author: fact.author,
                            fact: fact.fact.clone(),
                        },
                    ));
                    if fact.as_request().is_some() && self.departed.contains(&fact.author) {
                        gone.insert(fact.author);
                    }
                }
            }
            for author in gone {
                out.push((client, NegotiatedRelayMessage::Departed { author }));
            }
            out.push((
                client,
                NegotiatedRelayMessage::Synced {
                    category: category.clone(),
                    frame: *frame,
                },
            ));
        }
        self.stats.facts_sent += out
            .iter()
            .filter(|(_, m)| matches!(m, NegotiatedRelayMessage::Fact { .. }))
            .count() as u64;
        self.watches
            .insert(client, NegotiatedWatch { category, frames });
        Ok(out)
    }

    /// Stops a client's subscription.
    pub fn unsubscribe(&mut self, client: PlayerId) {
        self.watches.remove(&client);
    }

    /// A client (re)connected: it is no longer reported as departed.
    pub fn connect(&mut self, client: PlayerId) {
        self.departed.remove(&client);
    }

    /// A client's connection closed: forgets its subscription (its facts stay) and tells
    /// everyone watching a frame where it posted a request, with
    /// [`NegotiatedRelayMessage::Departed`]. Later subscribers to those frames are told
    /// too, until the client connects again.
    pub fn disconnect(&mut self, client: PlayerId) -> NegotiatedOutbox {
        self.unsubscribe(client);
        self.departed.insert(client);
        let mut to = BTreeSet::new();
        let places: BTreeSet<(String, u64)> = self
            .store
            .frames()
            .flat_map(|(frame, _)| self.store.facts_in(frame))
            .filter(|f| f.author == client && f.as_request().is_some())
            .map(|f| (f.category.clone(), f.frame))
            .collect();
        for (category, frame) in places {
            to.extend(self.watchers(&category, frame));
        }
        to.into_iter()
            .map(|c| (c, NegotiatedRelayMessage::Departed { author: client }))
            .collect()
    }

    /// Clients whose connection closed and who did not connect again.
    pub fn departed(&self) -> &BTreeSet<PlayerId> {
        &self.departed
    }

    /// Stores a fact posted by `author` at relay time `now` and returns the forwards.
    /// A duplicate is accepted and forwarded to no one.
    pub fn post(
        &mut self,
        author: PlayerId,
        fact: NegotiatedFact,
        now: Duration,
    ) -> Result<NegotiatedOutbox, NegotiatedRefusal> {
        let result = self.try_post(author, fact, now);
        if result.is_err() {
            self.stats.facts_refused += 1;
        }
        result
    }

    fn try_post(
        &mut self,
        author: PlayerId,
        fact: NegotiatedFact,
        now: Duration,
    ) -> Result<NegotiatedOutbox, NegotiatedRefusal> {
        if let NegotiatedFact::Request(r) = &fact {
            validate_category(&r.category)
                .map_err(|why| NegotiatedRefusal::new(NegotiatedErrorKind::InvalidCategory, why))?;
            let current = self.frames.frame_of(now);
            if r.frame + 1 < current || r.frame > current + 1 {
                return Err(NegotiatedRefusal::new(
                    NegotiatedErrorKind::FrameOutOfRange,
                    format!(
                        "request posted to frame {} but the relay is in frame {current}; sync your clock",
                        r.frame
                    ),
                ));
            }
        }
        let signed = NegotiatedSignedFact::new(author, fact);
        if self.store.contains(signed.id()) {
            self.stats.facts_duplicate += 1;
            return Ok(NegotiatedOutbox::new());
        }
        let (frame, category) = self.store.locate(&signed.fact, true).map_err(|e| match e {
            NegotiatedStoreError::UnknownRequest(_) | NegotiatedStoreError::NotARequest(_) => {
                NegotiatedRefusal::new(NegotiatedErrorKind::UnknownRequest, e.to_string())
            }
            NegotiatedStoreError::UnknownBid(_) | NegotiatedStoreError::BidOfAnotherRequest(_) => {
                NegotiatedRefusal::new(NegotiatedErrorKind::UnknownBid, e.to_string())
            }
        })?;
        if self.store.count_by(author, frame) >= self.max_facts_per_frame {
            return Err(NegotiatedRefusal::new(
                NegotiatedErrorKind::TooManyFacts,
                format!(
                    "at most {} facts per connection in one frame",
                    self.max_facts_per_frame
                ),
            ));
        }
        let recipients: BTreeSet<PlayerId> = match &signed.fact {
            NegotiatedFact::Request(_) => self.watchers(&category, frame),
            NegotiatedFact::Bid(b) => self.store.requester(b.request).into_iter().collect(),
            NegotiatedFact::Accept(a) => {
                let mut to = self.watchers(&category, frame);
                to.extend(self.store.get(a.bid).map(|b| b.author));
                to
            }
            NegotiatedFact::Reject(r) => self
                .store
                .get(r.bid)
                .map(|b| b.author)
                .into_iter()
                .collect(),
            NegotiatedFact::Cancel(_) => self.watchers(&category, frame),
        };
        let inserted = self
            .store
            .insert_strict(signed.clone())
            .expect("located just before");
        debug_assert!(matches!(inserted, NegotiatedInsert::Added(_)));
        self.stats.facts_stored += 1;
        let out: NegotiatedOutbox = recipients
            .into_iter()
            .filter(|c| *c != author)
            .map(|c| {
                (
                    c,
                    NegotiatedRelayMessage::Fact {
                        author,
                        fact: signed.fact.clone(),
                    },
                )
            })
            .collect();
        self.stats.facts_sent += out.len() as u64;
        Ok(out)
    }

    /// Drops frames that ended more than two frame durations before `now`; returns how
    /// many facts went.
    pub fn expire(&mut self, now: Duration) -> usize {
        let dropped = self.store.drop_before(self.frames.oldest_kept(now));
        self.stats.facts_expired += dropped as u64;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negotiated::core::fact::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
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
        let mut relay = NegotiatedRelayCore::new(NegotiatedFrames::new(secs(10)), 16);
        let now = secs(105); // frame 10
        // 2 and 3 watch frames 9..10; 4 watches another category
        for c in [2, 3] {
            let out = relay.subscribe(c, "duel".into(), vec![9, 10]).unwrap();
            assert_eq!(out.len(), 2, "two Synced markers");
        }
        relay.subscribe(4, "race".into(), vec![9, 10]).unwrap();
        let request = NegotiatedFact::Request(NegotiatedRequest {
            category: "duel".into(),
            frame: 10,
            created_us: 1,
        });
        let r = NegotiatedSignedFact::new(1, request.clone()).id();
        let out = relay.post(1, request.clone(), now).unwrap();
        assert_eq!(facts_to(&out, 2), vec![NegotiatedFactKind::Request]);
        assert_eq!(facts_to(&out, 3), vec![NegotiatedFactKind::Request]);
        assert!(facts_to(&out, 4).is_empty() && facts_to(&out, 1).is_empty());
        // a duplicate goes nowhere
        assert!(relay.post(1, request, now).unwrap().is_empty());
        assert_eq!(relay.stats().facts_duplicate, 1);

        let bid = NegotiatedFact::Bid(NegotiatedBid {
            request: r,
            created_us: 2,
        });
        let b = NegotiatedSignedFact::new(2, bid.clone()).id();
        let out = relay.post(2, bid, now).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(facts_to(&out, 1), vec![NegotiatedFactKind::Bid]);

        let accept = NegotiatedFact::Accept(NegotiatedAccept { request: r, bid: b });
        let out = relay.post(1, accept, now).unwrap();
        assert_eq!(facts_to(&out, 2), vec![NegotiatedFactKind::Accept]);
        assert_eq!(facts_to(&out, 3), vec![NegotiatedFactKind::Accept]);
        assert_eq!(out.len(), 2);

        let bid3 = NegotiatedFact::Bid(NegotiatedBid {
            request: r,
            created_us: 3,
        });
        let b3 = NegotiatedSignedFact::new(3, bid3.clone()).id();
        relay.post(3, bid3, now).unwrap();
        let out = relay
            .post(
                1,
                NegotiatedFact::Reject(NegotiatedReject {
                    request: r,
                    bid: b3,
                }),
                now,
            )
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(facts_to(&out, 3), vec![NegotiatedFactKind::Reject]);

        // a late watcher gets the request and the accept, not the bids
        let out = relay.subscribe(5, "duel".into(), vec![10]).unwrap();
        assert_eq!(
            facts_to(&out, 5),
            vec![NegotiatedFactKind::Request, NegotiatedFactKind::Accept]
        );
        assert!(matches!(
            out.last(),
            Some((5, NegotiatedRelayMessage::Synced { frame: 10, .. }))
        ));
        // the bidder re-subscribing (new frame set) sees its own bid and its reject
        relay.unsubscribe(3);
        let out = relay.subscribe(3, "duel".into(), vec![10]).unwrap();
        assert_eq!(
            facts_to(&out, 3),
            vec![
                NegotiatedFactKind::Request,
                NegotiatedFactKind::Accept,
                NegotiatedFactKind::Bid,
                NegotiatedFactKind::Reject
            ]
        );
    }

    #[test]
    fn departures_are_announced_to_watchers_and_later_subscribers() {
        let mut relay = NegotiatedRelayCore::new(NegotiatedFrames::new(secs(10)), 16);
        let now = secs(105);
        relay.subscribe(2, "duel".into(), vec![9, 10]).unwrap();
        relay.subscribe(3, "race".into(), vec![9, 10]).unwrap();
        let request = NegotiatedFact::Request(NegotiatedRequest {
            category: "duel".into(),
            frame: 10,
            created_us: 1,
        });
        relay.post(1, request, now).unwrap();
        // 4 posted nothing: its leaving concerns nobody
        assert!(relay.disconnect(4).is_empty());
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
    }

    #[test]
    fn refuses_bad_facts_and_expires_frames() {
        let mut relay = NegotiatedRelayCore::new(NegotiatedFrames::new(secs(10)), 2);
        let now = secs(105);
        let request = |frame, t| {
            NegotiatedFact::Request(NegotiatedRequest {
                category: "duel".into(),
                frame,
                created_us: t,
            })
        };
        let err = relay.post(1, request(12, 0), now).unwrap_err();
        assert_eq!(err.kind, NegotiatedErrorKind::FrameOutOfRange);
        let err = relay
            .post(
                1,
                NegotiatedFact::Request(NegotiatedRequest {
                    category: "no spaces".into(),
                    frame: 10,
                    created_us: 0,
                }),
                now,
            )
            .unwrap_err();
        assert_eq!(err.kind, NegotiatedErrorKind::InvalidCategory);
        let err = relay
            .post(
                1,
                NegotiatedFact::Cancel(NegotiatedCancel {
                    request: NegotiatedFactId(5),
                }),
                now,
            )
            .unwrap_err();
        assert_eq!(err.kind, NegotiatedErrorKind::UnknownRequest);
        relay.post(1, request(9, 1), now).unwrap();
        relay.post(1, request(10, 2), now).unwrap();
        relay.post(1, request(10, 3), now).unwrap();
        let err = relay.post(1, request(10, 4), now).unwrap_err();
        assert_eq!(err.kind, NegotiatedErrorKind::TooManyFacts);
        let r = NegotiatedSignedFact::new(1, request(10, 2)).id();
        let err = relay
            .post(
                1,
                NegotiatedFact::Accept(NegotiatedAccept {
                    request: r,
                    bid: NegotiatedFactId(3),
                }),
                now,
            )
            .unwrap_err();
        assert_eq!(err.kind, NegotiatedErrorKind::UnknownBid);
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

    fn bid_fact(request: NegotiatedFactId, created_us: u64) -> NegotiatedFact {
        NegotiatedFact::Bid(NegotiatedBid {
            request,
            created_us,
        })
    }

    #[test]
    fn an_accept_of_a_departed_bidder_is_refused() {
        let mut relay = NegotiatedRelayCore::new(NegotiatedFrames::new(secs(10)), 16);
        let now = secs(105);
        let request = NegotiatedFact::Request(NegotiatedRequest {
            category: "duel".into(),
            frame: 10,
            created_us: 1,
        });
        let r = NegotiatedSignedFact::new(1, request.clone()).id();
        relay.post(1, request, now).unwrap();
        let bid = bid_fact(r, 2);
        let b = NegotiatedSignedFact::new(2, bid.clone()).id();
        relay.post(2, bid, now).unwrap();
        relay.disconnect(2);
        let accept = NegotiatedFact::Accept(NegotiatedAccept { request: r, bid: b });
        assert!(
            relay.post(1, accept, now).is_err(),
            "accepted a departed bidder"
        );
        assert!(!relay.store().is_closed(r));
    }

    #[test]
    fn a_request_naming_the_last_frame_is_refused_without_overflow() {
        let mut relay = NegotiatedRelayCore::new(NegotiatedFrames::new(secs(10)), 16);
        for frame in [u64::MAX, u64::MAX - 1, 0] {
            let request = NegotiatedFact::Request(NegotiatedRequest {
                category: "duel".into(),
                frame,
                created_us: u64::MAX,
            });
            let err = relay.post(1, request, secs(105)).unwrap_err();
            assert_eq!(err.kind, NegotiatedErrorKind::FrameOutOfRange);
        }
    }

    #[test]
    fn departed_ids_stay_under_the_default_cap() {
        let mut relay = NegotiatedRelayCore::new(NegotiatedFrames::new(secs(10)), 256);
        let now = secs(105);
        for id in 200_000..220_000 {
            relay.connect(id);
            relay.disconnect(id);
        }
        assert!(
            relay.departed().len() <= 10_000,
            "{} departed",
            relay.departed().len()
        );
    }

    #[test]
    fn stored_facts_stay_under_the_default_cap_with_fresh_ids() {
        let mut relay = NegotiatedRelayCore::new(NegotiatedFrames::new(secs(10)), 256);
        let now = secs(105);
        for author in 1..=100_100 {
            let request = NegotiatedFact::Request(NegotiatedRequest {
                category: "duel".into(),
                frame: 10,
                created_us: author,
            });
            let _ = relay.post(author, request, now);
        }
        assert!(
            relay.store().len() <= 100_000,
            "{} facts",
            relay.store().len()
        );
    }
}
