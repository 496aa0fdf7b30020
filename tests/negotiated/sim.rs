//! A simulated network for property tests of the pure core: client machines and the
//! relay core exchanging encoded messages with random delays (order kept per link, like
//! the reliable ordered channel), clock errors, stalled links and closed connections.
//! Deterministic for a seed: time is simulated, never measured.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

use proptest::prelude::*;

use bevy_atomic_matchmaking::negotiated::core::fact::{NegotiatedFact, NegotiatedFactId};
use bevy_atomic_matchmaking::negotiated::core::frame::NegotiatedFrames;
use bevy_atomic_matchmaking::negotiated::core::machine::*;
use bevy_atomic_matchmaking::negotiated::core::protocol::{
    NegotiatedClientMessage, NegotiatedRelayMessage,
};
use bevy_atomic_matchmaking::negotiated::core::relay_core::NegotiatedRelayCore;
use bevy_atomic_matchmaking::shared::codec;
use bevy_atomic_matchmaking::shared::player::PlayerId;

pub const CATEGORY: &str = "duel";

/// A machine for player `me`.
pub fn machine(me: PlayerId, frame_ms: u64, bid_timeout_ms: u64, seed: u64) -> NegotiatedMachine {
    NegotiatedMachine::new(NegotiatedMachineConfig {
        me,
        frames: NegotiatedFrames::new(Duration::from_millis(frame_ms)),
        bid_timeout: Duration::from_millis(bid_timeout_ms),
        seed,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Hop {
    ToRelay(PlayerId),
    ToClient(PlayerId),
}

impl Hop {
    fn client(self) -> PlayerId {
        match self {
            Hop::ToRelay(c) | Hop::ToClient(c) => c,
        }
    }
}

/// Encoded bytes, as they would travel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Msg(Vec<u8>);

/// Microseconds of simulated relay time.
pub type Micros = u64;

/// Something a client does that can set off a trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cue {
    /// It placed a bid.
    Bid,
    /// It posted an accept.
    Accept,
}

/// What happens to a client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Its link delivers nothing either way for this long (messages wait).
    Stall(Micros),
    /// Its connection closes for this long (messages in flight are lost).
    Close(Micros),
}

/// The relay core, the machines and the messages between them.
pub struct Sim {
    pub relay: NegotiatedRelayCore,
    pub machines: BTreeMap<PlayerId, NegotiatedMachine>,
    clock_error_us: HashMap<PlayerId, i64>,
    queue: BinaryHeap<Reverse<(Micros, u64, Hop, Msg)>>,
    last_delivery: HashMap<Hop, Micros>,
    seq: u64,
    rng: fastrand::Rng,
    max_delay_us: Micros,
    /// Closed connections, back at this time.
    closed_until: HashMap<PlayerId, Micros>,
    pub matches: BTreeMap<PlayerId, Vec<NegotiatedMatch>>,
    /// Hits armed on a client's next cue: (cue, delay after it, hit).
    armed: BTreeMap<PlayerId, Vec<(Cue, Micros, Hit)>>,
    /// Hits due at a time.
    scheduled: BTreeMap<Micros, Vec<(PlayerId, Hit)>>,
}

impl Sim {
    /// A relay with `frame_ms` frames and up to `max_delay_us` per hop.
    pub fn new(frame_ms: u64, seed: u64, max_delay_us: Micros) -> Self {
        Self {
            relay: NegotiatedRelayCore::new(
                NegotiatedFrames::new(Duration::from_millis(frame_ms)),
                256,
            ),
            machines: BTreeMap::new(),
            clock_error_us: HashMap::new(),
            queue: BinaryHeap::new(),
            last_delivery: HashMap::new(),
            seq: 0,
            rng: fastrand::Rng::with_seed(seed ^ 0x5eed),
            max_delay_us,
            closed_until: HashMap::new(),
            matches: BTreeMap::new(),
            armed: BTreeMap::new(),
            scheduled: BTreeMap::new(),
        }
    }

    /// Hits a client at `at`.
    pub fn schedule(&mut self, at: Micros, id: PlayerId, hit: Hit) {
        self.scheduled.entry(at).or_default().push((id, hit));
    }

    /// Hits a client `after` its next `cue`.
    pub fn arm(&mut self, id: PlayerId, cue: Cue, after: Micros, hit: Hit) {
        self.armed.entry(id).or_default().push((cue, after, hit));
    }

    /// A client gave a cue at `now`: schedules what was armed on it.
    fn cue(&mut self, id: PlayerId, cue: Cue, now: Micros) {
        let Some(armed) = self.armed.get_mut(&id) else {
            return;
        };
        let Some(i) = armed.iter().position(|(c, _, _)| *c == cue) else {
            return;
        };
        let (_, after, hit) = armed.remove(i);
        self.schedule(now + after, id, hit);
    }

    fn hit_due(&mut self, now: Micros) {
        let due: Vec<(PlayerId, Hit)> = self
            .scheduled
            .range(..=now)
            .flat_map(|(_, hits)| hits.clone())
            .collect();
        self.scheduled.retain(|at, _| *at > now);
        for (id, hit) in due {
            match hit {
                Hit::Stall(us) => self.stall(id, now + us),
                Hit::Close(us) => self.close(id, now, now + us),
            }
        }
    }

    /// Adds a machine whose clock estimate is off by `clock_error_us`, online at `now`.
    pub fn add(&mut self, machine: NegotiatedMachine, clock_error_us: i64, now: Micros) {
        let id = machine.config().me;
        self.machines.insert(id, machine);
        self.clock_error_us.insert(id, clock_error_us);
        self.relay.connect(id);
        let t = self.client_now(id, now);
        let out = self.machines.get_mut(&id).unwrap().online(t);
        self.absorb(id, now, out);
    }

    fn send(&mut self, now: Micros, hop: Hop, msg: Msg) {
        // FIFO per link, like the reliable ordered channel
        let at = (now + self.rng.u64(0..=self.max_delay_us))
            .max(*self.last_delivery.get(&hop).unwrap_or(&0));
        self.last_delivery.insert(hop, at);
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, hop, msg)));
    }

    /// A client's idea of relay time.
    pub fn client_now(&self, id: PlayerId, now: Micros) -> Duration {
        Duration::from_micros((now as i64 + self.clock_error_us[&id]).max(0) as u64)
    }

    /// Takes what a machine said: messages go out (unless its connection is closed),
    /// matches are noted.
    pub fn absorb(&mut self, id: PlayerId, now: Micros, out: Vec<NegotiatedOutput>) {
        for o in out {
            match o {
                NegotiatedOutput::Send(m) if !self.closed_until.contains_key(&id) => {
                    if let NegotiatedClientMessage::Post {
                        fact: NegotiatedFact::Accept(_),
                    } = &m
                    {
                        self.cue(id, Cue::Accept, now);
                    }
                    self.send(now, Hop::ToRelay(id), Msg(codec::encode(&m)));
                }
                NegotiatedOutput::Event(NegotiatedEvent::Matched(m)) => {
                    self.matches.entry(id).or_default().push(m);
                }
                NegotiatedOutput::Event(NegotiatedEvent::BidPlaced { .. }) => {
                    self.cue(id, Cue::Bid, now);
                }
                _ => {}
            }
        }
    }

    /// Calls a machine at its idea of relay time and takes what it said.
    pub fn call(
        &mut self,
        id: PlayerId,
        now: Micros,
        f: impl FnOnce(&mut NegotiatedMachine, Duration) -> Vec<NegotiatedOutput>,
    ) {
        let t = self.client_now(id, now);
        let out = f(self.machines.get_mut(&id).unwrap(), t);
        self.absorb(id, now, out);
    }

    /// Stalls a client's link until `until`: what is in flight, and what is sent
    /// meanwhile, arrives after that, in order.
    pub fn stall(&mut self, id: PlayerId, until: Micros) {
        // a monotone shift of the due times keeps each link's order (ties go by sequence)
        let queued = std::mem::take(&mut self.queue);
        self.queue = queued
            .into_iter()
            .map(|Reverse((at, seq, hop, msg))| {
                let at = if hop.client() == id {
                    at.max(until)
                } else {
                    at
                };
                Reverse((at, seq, hop, msg))
            })
            .collect();
        for hop in [Hop::ToRelay(id), Hop::ToClient(id)] {
            let last = self.last_delivery.entry(hop).or_insert(0);
            *last = (*last).max(until);
        }
    }

    /// Closes a client's connection until `until`: what is in flight is lost, the relay
    /// notices, the machine goes offline.
    pub fn close(&mut self, id: PlayerId, now: Micros, until: Micros) {
        if self.closed_until.contains_key(&id) {
            return;
        }
        self.closed_until.insert(id, until);
        let queued = std::mem::take(&mut self.queue);
        self.queue = queued
            .into_iter()
            .filter(|Reverse((_, _, hop, _))| hop.client() != id)
            .collect();
        let out = self.relay.disconnect(id);
        self.route(now, out);
        self.call(id, now, |m, _| m.offline());
    }

    fn reopen_due(&mut self, now: Micros) {
        let due: Vec<PlayerId> = self
            .closed_until
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.closed_until.remove(&id);
            self.relay.connect(id);
            self.call(id, now, |m, t| m.online(t));
        }
    }

    fn route(&mut self, now: Micros, out: Vec<(PlayerId, NegotiatedRelayMessage)>) {
        for (to, m) in out {
            if !self.closed_until.contains_key(&to) {
                self.send(now, Hop::ToClient(to), Msg(codec::encode(&m)));
            }
        }
    }

    fn deliver_to_relay(&mut self, from: PlayerId, bytes: &[u8], now: Micros) {
        let m: NegotiatedClientMessage = codec::decode(bytes).unwrap();
        let relay_now = Duration::from_micros(now);
        let out = match m {
            NegotiatedClientMessage::Subscribe { category, frames } => self
                .relay
                .subscribe(from, category, frames)
                .unwrap_or_else(|r| vec![(from, r.to_message())]),
            NegotiatedClientMessage::Unsubscribe => {
                self.relay.unsubscribe(from);
                Vec::new()
            }
            NegotiatedClientMessage::Post { fact } => self.relay.post(from, fact, relay_now),
            _ => Vec::new(),
        };
        self.route(now, out);
    }

    fn deliver_to_client(&mut self, to: PlayerId, bytes: &[u8], now: Micros) {
        let m: NegotiatedRelayMessage = codec::decode(bytes).unwrap();
        let machine = self.machines.get_mut(&to).unwrap();
        let out = match m {
            NegotiatedRelayMessage::Fact { author, fact } => machine.ingest(author, fact),
            NegotiatedRelayMessage::Synced { category, frame } => {
                machine.ingest_synced(&category, frame);
                Vec::new()
            }
            NegotiatedRelayMessage::Departed { author } => machine.ingest_departed(author),
            NegotiatedRelayMessage::Stored { fact } => machine.ingest_stored(fact),
            NegotiatedRelayMessage::Refused { fact, kind, .. } => {
                machine.ingest_refused(fact, kind)
            }
            _ => Vec::new(),
        };
        self.absorb(to, now, out);
    }

    /// Delivers what is due by `now` (time passes for every machine first, as the client
    /// plugin does before a batch), expires relay frames and ticks every machine.
    pub fn step(&mut self, now: Micros) {
        self.reopen_due(now);
        self.hit_due(now);
        let ids: Vec<PlayerId> = self.machines.keys().copied().collect();
        for id in &ids {
            self.call(*id, now, |m, t| m.pass_time(t));
        }
        while let Some(Reverse((at, _, _, _))) = self.queue.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, _, hop, Msg(bytes))) = self.queue.pop().unwrap();
            match hop {
                Hop::ToRelay(from) => self.deliver_to_relay(from, &bytes, now),
                Hop::ToClient(to) => self.deliver_to_client(to, &bytes, now),
            }
        }
        self.relay.expire(Duration::from_micros(now));
        for id in ids {
            self.call(id, now, |m, t| m.tick(t));
        }
    }
}

/// Every match is mutual (the other side holds the same request, bid and accept, in the
/// other role) and nobody is matched twice. Returns the number of pairs.
pub fn check_mutual(
    matches: &BTreeMap<PlayerId, Vec<NegotiatedMatch>>,
) -> Result<usize, TestCaseError> {
    for (id, ms) in matches {
        prop_assert_eq!(ms.len(), 1, "client {} matched {} times", id, ms.len());
        let m = &ms[0];
        let other = matches.get(&m.other);
        prop_assert!(
            other.is_some(),
            "{} matched {} who never matched ({:?})",
            id,
            m.other,
            m
        );
        let o = &other.unwrap()[0];
        prop_assert_eq!(o.other, *id);
        prop_assert_eq!((o.request, o.bid, o.accept), (m.request, m.bid, m.accept));
        prop_assert_ne!(o.role, m.role);
    }
    Ok(matches.len() / 2)
}

/// The requests the pairs were made on.
pub fn requests(
    matches: &BTreeMap<PlayerId, Vec<NegotiatedMatch>>,
) -> std::collections::BTreeSet<NegotiatedFactId> {
    matches.values().map(|m| m[0].request).collect()
}
