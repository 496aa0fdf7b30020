//! Scenario tests of the whole core: client machines and the relay core over a
//! deterministic in-memory network with manual time, where any link can stall (messages
//! wait, both ways) or close. Each scenario is one adversarial timing; every one ends with
//! the promise checked: every match is mutual and nobody is matched twice.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::shared::player::PlayerId;

use super::fact::{NegotiatedFact, NegotiatedFactId};
use super::frame::NegotiatedFrames;
use super::machine::{
    NegotiatedEvent, NegotiatedMachine, NegotiatedMachineConfig, NegotiatedMatch, NegotiatedOutput,
    NegotiatedPhase,
};
use super::protocol::{NegotiatedClientMessage, NegotiatedRelayMessage};
use super::relay_core::{NegotiatedOutbox, NegotiatedRelayCore};

const STEP: Duration = Duration::from_millis(10);

/// One client: its machine, its link and what it reported.
struct Client {
    machine: NegotiatedMachine,
    up: bool,
    /// Added to relay time to give the client's idea of relay time.
    clock_ahead: Duration,
    to_relay: VecDeque<NegotiatedClientMessage>,
    inbox: VecDeque<NegotiatedRelayMessage>,
    events: Vec<NegotiatedEvent>,
}

/// A relay core and machines, with manual time.
struct Net {
    relay: NegotiatedRelayCore,
    clients: BTreeMap<PlayerId, Client>,
    frames: NegotiatedFrames,
    bid_timeout: Duration,
    now: Duration,
}

impl Net {
    /// 10 s frames, 2 s bid timeout, 16 facts per connection and frame; relay time 1000 s.
    fn new() -> Self {
        Self::with(NegotiatedRelayCore::new(
            NegotiatedFrames::new(Duration::from_secs(10)),
            16,
        ))
    }

    fn with(relay: NegotiatedRelayCore) -> Self {
        Self {
            frames: relay.frames(),
            relay,
            clients: BTreeMap::new(),
            bid_timeout: Duration::from_secs(2),
            now: Duration::from_secs(1000),
        }
    }

    fn add(&mut self, id: PlayerId) {
        self.add_with_clock(id, Duration::ZERO);
    }

    fn add_with_clock(&mut self, id: PlayerId, clock_ahead: Duration) {
        let machine = NegotiatedMachine::new(NegotiatedMachineConfig {
            me: id,
            frames: self.frames,
            bid_timeout: self.bid_timeout,
            seed: id,
        });
        let client = Client {
            machine,
            up: true,
            clock_ahead,
            to_relay: VecDeque::new(),
            inbox: VecDeque::new(),
            events: Vec::new(),
        };
        self.clients.insert(id, client);
        self.relay.connect(id);
        let now = self.client_now(id);
        let out = self.machine(id).online(now);
        self.absorb(id, out);
    }

    fn client_now(&self, id: PlayerId) -> Duration {
        self.now + self.clients[&id].clock_ahead
    }

    fn machine(&mut self, id: PlayerId) -> &mut NegotiatedMachine {
        &mut self.clients.get_mut(&id).unwrap().machine
    }

    fn phase(&self, id: PlayerId) -> &NegotiatedPhase {
        self.clients[&id].machine.phase()
    }

    fn absorb(&mut self, id: PlayerId, out: Vec<NegotiatedOutput>) {
        let client = self.clients.get_mut(&id).unwrap();
        for o in out {
            match o {
                NegotiatedOutput::Send(m) => client.to_relay.push_back(m),
                NegotiatedOutput::Event(e) => client.events.push(e),
            }
        }
    }

    fn search(&mut self, id: PlayerId) {
        let now = self.client_now(id);
        let out = self.machine(id).search("duel", now);
        self.absorb(id, out);
    }

    fn cancel(&mut self, id: PlayerId) {
        let now = self.client_now(id);
        let out = self.machine(id).cancel(now);
        self.absorb(id, out);
    }

    /// Stops (or resumes) a link both ways without closing it.
    fn set_link(&mut self, id: PlayerId, up: bool) {
        self.clients.get_mut(&id).unwrap().up = up;
    }

    /// Closes a client's connection: what was in flight is lost, the relay is told, the
    /// machine goes offline.
    fn close(&mut self, id: PlayerId) {
        let client = self.clients.get_mut(&id).unwrap();
        client.up = false;
        client.to_relay.clear();
        client.inbox.clear();
        let out = self.relay.disconnect(id);
        self.route(out);
        let out = self.machine(id).offline();
        self.absorb(id, out);
        self.clients.get_mut(&id).unwrap().to_relay.clear();
    }

    /// Connects a closed client again.
    fn reconnect(&mut self, id: PlayerId) {
        self.clients.get_mut(&id).unwrap().up = true;
        self.relay.connect(id);
        let now = self.client_now(id);
        let out = self.machine(id).online(now);
        self.absorb(id, out);
    }

    fn route(&mut self, out: NegotiatedOutbox) {
        for (to, m) in out {
            if let Some(c) = self.clients.get_mut(&to) {
                c.inbox.push_back(m);
            }
        }
    }

    /// The relay handles what reached it.
    fn relay_receive(&mut self, from: PlayerId, m: NegotiatedClientMessage) {
        let out = match m {
            NegotiatedClientMessage::Subscribe { category, frames } => self
                .relay
                .subscribe(from, category, frames)
                .unwrap_or_else(|r| vec![(from, r.to_message())]),
            NegotiatedClientMessage::Unsubscribe => {
                self.relay.unsubscribe(from);
                Vec::new()
            }
            NegotiatedClientMessage::Post { fact } => {
                relay_post(&mut self.relay, from, fact, self.now)
            }
            _ => Vec::new(),
        };
        self.route(out);
    }

    /// A machine handles one relay message.
    fn client_receive(&mut self, id: PlayerId, m: NegotiatedRelayMessage) {
        let now = self.client_now(id);
        let machine = self.machine(id);
        let out = match m {
            NegotiatedRelayMessage::Fact { author, fact } => machine.receive(author, fact, now),
            NegotiatedRelayMessage::Synced { category, frame } => {
                machine.synced(&category, frame, now)
            }
            NegotiatedRelayMessage::Departed { author } => machine.departed(author, now),
            other => deliver_other(machine, other, now),
        };
        self.absorb(id, out);
    }

    /// One step: up links deliver to the relay, the relay expires, up links deliver to
    /// the clients, every machine ticks.
    fn step(&mut self) {
        self.now += STEP;
        let ids: Vec<PlayerId> = self.clients.keys().copied().collect();
        for id in &ids {
            while self.clients[id].up
                && let Some(m) = self.clients.get_mut(id).unwrap().to_relay.pop_front()
            {
                self.relay_receive(*id, m);
            }
        }
        self.relay.expire(self.now);
        for id in &ids {
            while self.clients[id].up
                && let Some(m) = self.clients.get_mut(id).unwrap().inbox.pop_front()
            {
                self.client_receive(*id, m);
            }
            let now = self.client_now(*id);
            let out = self.machine(*id).tick(now);
            self.absorb(*id, out);
        }
    }

    fn run(&mut self, duration: Duration) {
        let steps = duration.as_nanos().div_ceil(STEP.as_nanos());
        for _ in 0..steps {
            self.step();
        }
    }

    /// Steps until `done` holds; panics after `limit` of time.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(self.now < end, "not reached within {limit:?}");
            self.step();
        }
    }

    fn matches(&self, id: PlayerId) -> Vec<&NegotiatedMatch> {
        self.clients[&id]
            .events
            .iter()
            .filter_map(|e| match e {
                NegotiatedEvent::Matched(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn is_matched(&self, id: PlayerId) -> bool {
        !self.matches(id).is_empty()
    }

    /// The bids a client placed.
    fn bids(&self, id: PlayerId) -> Vec<(NegotiatedFactId, NegotiatedFactId)> {
        self.clients[&id]
            .events
            .iter()
            .filter_map(|e| match e {
                NegotiatedEvent::BidPlaced { bid, request, .. } => Some((*bid, *request)),
                _ => None,
            })
            .collect()
    }

    /// The promise: every match is mutual (same request, bid and accept on both sides)
    /// and nobody is matched twice.
    fn assert_mutual(&self) {
        for (id, client) in &self.clients {
            let mine = self.matches(*id);
            assert!(mine.len() <= 1, "{id} matched {} times", mine.len());
            let Some(m) = mine.first() else { continue };
            let theirs = self.clients.get(&m.other).map(|_| self.matches(m.other));
            let theirs = theirs.unwrap_or_default();
            assert!(
                theirs.iter().any(|o| o.other == *id
                    && (o.request, o.bid, o.accept) == (m.request, m.bid, m.accept)),
                "{id} is matched with {} ({:?}), who is matched with {:?}; {id}'s phase {:?}",
                m.other,
                m.role,
                theirs.iter().map(|o| o.other).collect::<Vec<_>>(),
                client.machine.phase()
            );
        }
    }
}

fn relay_post(
    relay: &mut NegotiatedRelayCore,
    from: PlayerId,
    fact: NegotiatedFact,
    now: Duration,
) -> NegotiatedOutbox {
    relay.post(from, fact, now)
}

/// The relay's verdicts on a machine's posts.
fn deliver_other(
    machine: &mut NegotiatedMachine,
    message: NegotiatedRelayMessage,
    now: Duration,
) -> Vec<NegotiatedOutput> {
    match message {
        NegotiatedRelayMessage::Stored { fact } => machine.stored(fact, now),
        NegotiatedRelayMessage::Refused { fact, kind, .. } => machine.refused(fact, kind, now),
        _ => Vec::new(),
    }
}

/// A requesting, B bidding on A's request, A's link stalled so it does not answer.
fn a_requests_and_b_bids_while_a_stalls(net: &mut Net) -> NegotiatedFactId {
    net.add(1);
    net.add(2);
    net.search(1);
    net.run_until(Duration::from_secs(1), |n| {
        matches!(n.phase(1), NegotiatedPhase::Requesting { .. })
    });
    let NegotiatedPhase::Requesting { request, .. } = *net.phase(1) else {
        unreachable!()
    };
    net.run(STEP * 2);
    net.set_link(1, false);
    net.search(2);
    net.run_until(Duration::from_secs(1), |n| !n.bids(2).is_empty());
    assert_eq!(net.bids(2)[0].1, request);
    request
}

#[test]
fn a_late_accept_never_makes_a_one_sided_match() {
    let mut net = Net::new();
    let request = a_requests_and_b_bids_while_a_stalls(&mut net);
    // B's bid times out; B posts its own request and pairs with C
    net.add(3);
    net.run(Duration::from_secs(3));
    net.search(3);
    net.run_until(Duration::from_secs(10), |n| {
        n.is_matched(2) && n.is_matched(3)
    });
    assert_eq!(net.matches(2)[0].other, 3);
    // A comes back and accepts B's old bid (and any other it got meanwhile)
    net.set_link(1, true);
    net.run(Duration::from_secs(1));
    net.assert_mutual();
    assert!(!net.is_matched(1), "A's late accept was refused");
    assert!(!net.relay.store().is_closed(request) || net.is_matched(1));
}

/// A requests, B bids while A's link stalls; B does `act`, then A comes back for a second:
/// every match so far must be mutual.
fn b_acts_then_a_returns(act: impl FnOnce(&mut Net)) -> Net {
    let mut net = Net::new();
    a_requests_and_b_bids_while_a_stalls(&mut net);
    net.run(STEP * 2);
    act(&mut net);
    net.set_link(1, true);
    net.run(Duration::from_secs(1));
    net.assert_mutual();
    net
}

/// Player 1 alone on a relay with 10 s frames and this share of facts per frame: it
/// searches, cancels and searches again.
fn searched_twice(max_facts_per_frame: usize) -> Net {
    let mut net = Net::with(NegotiatedRelayCore::new(
        NegotiatedFrames::new(Duration::from_secs(10)),
        max_facts_per_frame,
    ));
    net.add(1);
    net.search(1);
    net.run(STEP * 3);
    net.cancel(1);
    net.search(1);
    net
}

#[test]
fn a_cancel_while_bidding_withdraws_the_bid() {
    // A comes back and accepts the bid of a player who stopped searching
    let net = b_acts_then_a_returns(|net| {
        net.cancel(2);
        net.run(STEP * 3);
    });
    assert!(
        !net.is_matched(2),
        "B cancelled before any accept was stored"
    );
    assert_eq!(net.phase(2), &NegotiatedPhase::Idle);
    assert!(!net.is_matched(1));
}

#[test]
fn an_accept_of_a_departed_bidder_is_refused() {
    // B's connection closes for good; A, back, accepts B's bid
    let mut net = b_acts_then_a_returns(|net| {
        net.close(2);
        net.run(STEP * 2);
    });
    assert!(
        !net.is_matched(1),
        "B left before A's accept reached the relay"
    );
    // B comes back: its bid is settled (withdrawn), and the two can still pair
    net.reconnect(2);
    net.search(2);
    net.run_until(Duration::from_secs(10), |n| {
        n.is_matched(1) && n.is_matched(2)
    });
    net.assert_mutual();
}

/// The requester's quota is used up by a third party's bids on its older request: its
/// accept of an honest bid must not count unless the relay stored it.
#[test]
fn the_requester_counts_a_match_only_once_the_relay_stored_its_accept() {
    let mut net = Net::with(NegotiatedRelayCore::new(
        NegotiatedFrames::new(Duration::from_secs(10)),
        8,
    ));
    net.add(1);
    net.search(1);
    net.run(STEP * 3);
    let NegotiatedPhase::Requesting { request: old, .. } = *net.phase(1) else {
        panic!("{:?}", net.phase(1))
    };
    net.cancel(1);
    net.run(STEP * 3);
    net.search(1);
    net.run(STEP * 3);
    assert!(matches!(net.phase(1), NegotiatedPhase::Requesting { request, .. } if *request != old));
    // a flood of bids on the old request: 1 rejects each
    for n in 0..12u64 {
        let fact = flood_bid(old, n);
        let out = relay_post(&mut net.relay, 99, fact, net.now);
        net.route(out);
    }
    net.run(STEP * 3);
    // an honest bidder
    net.add(2);
    net.search(2);
    net.run(Duration::from_secs(5));
    net.assert_mutual();
    assert!(net.is_matched(1) && net.is_matched(2));

    // the requester used up its own share of the frame: its accept is refused
    let mut net = searched_twice(3);
    net.run(STEP * 3);
    net.add(2);
    net.search(2);
    net.run(Duration::from_secs(5));
    net.assert_mutual();
    assert!(!net.is_matched(1));
}

fn flood_bid(request: NegotiatedFactId, n: u64) -> NegotiatedFact {
    NegotiatedFact::Bid(super::fact::NegotiatedBid {
        request,
        created_us: n,
        deadline_us: u64::MAX,
    })
}

/// A refused request reaches the machine, which does not wait on it.
#[test]
fn a_refused_request_is_not_waited_on() {
    let mut net = Net::new();
    // a clock 25 s ahead of the relay: the request names a frame the relay refuses
    net.add_with_clock(1, Duration::from_secs(25));
    net.search(1);
    net.run(STEP * 5);
    let waiting_for_nothing = |n: &Net| match n.phase(1) {
        NegotiatedPhase::Requesting { request, .. } => !n.relay.store().contains(*request),
        _ => false,
    };
    assert!(!waiting_for_nothing(&net), "{:?}", net.phase(1));
    // and the quota: the request over it is refused
    let mut net = searched_twice(1);
    net.run(STEP * 5);
    assert!(!waiting_for_nothing(&net), "{:?}", net.phase(1));
}
