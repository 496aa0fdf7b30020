//! Renet's local connections driven the way a transport drives real ones, through a
//! network that can misbehave: the piece the in-process test harnesses (atomic and
//! negotiated) share.
//!
//! A [`LocalLink`] carries one client's packets both ways. Without faults it hands every
//! packet over at once, like renet's own `process_local_client`. With [`LinkFaults`] each
//! direction can lose, delay (with jitter), duplicate and reorder packets, drawn from a
//! seeded random source (the same seed and the same traffic give the same network, never
//! wall-clock time), and the link can stall for a while: packets are taken from renet as
//! usual but held, then delivered in order when the stall ends. Renet's reliable channels
//! resend what is lost, as on a real network.

use std::collections::BTreeMap;
use std::ops::Add;
use std::time::Duration;

use bevy_renet::renet::{ClientId, RenetClient, RenetServer};

use crate::shared::inbox::{MatchmakingInbox, matchmaking_process_local_client};

/// How one direction of a link misbehaves. The default is a perfect wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectionFaults {
    /// Probability that a packet is lost (0 to 1).
    pub loss: f64,
    /// Time every packet takes.
    pub delay: Duration,
    /// Up to this much more, drawn for each packet (so packets overtake each other).
    pub jitter: Duration,
    /// Probability that a packet arrives twice (the copy draws its own delay).
    pub duplicate: f64,
    /// Probability that a packet is held back by up to [`reorder_window`](Self::reorder_window)
    /// more, so that later packets overtake it.
    pub reorder: f64,
    /// The longest extra hold of a reordered packet.
    pub reorder_window: Duration,
}

impl Default for DirectionFaults {
    fn default() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_window: Duration::from_millis(50),
        }
    }
}

impl DirectionFaults {
    /// Whether this direction delivers every packet at once, exactly once.
    pub fn is_perfect(&self) -> bool {
        self.loss <= 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.duplicate <= 0.0
            && self.reorder <= 0.0
    }

    /// The longest time a packet can take (before any stall).
    pub fn max_latency(&self) -> Duration {
        let reorder = if self.reorder > 0.0 {
            self.reorder_window
        } else {
            Duration::ZERO
        };
        self.delay + self.jitter + reorder
    }
}

/// How a link misbehaves, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkFaults {
    /// Client to server.
    pub up: DirectionFaults,
    /// Server to client.
    pub down: DirectionFaults,
}

impl LinkFaults {
    /// The same faults both ways.
    pub fn both(faults: DirectionFaults) -> Self {
        Self {
            up: faults,
            down: faults,
        }
    }

    /// Whether both directions are perfect.
    pub fn is_perfect(&self) -> bool {
        self.up.is_perfect() && self.down.is_perfect()
    }
}

/// What the faults of one direction make of one packet: lost, or delivered once or twice,
/// each copy after its own latency. The fault model itself, shared by [`LocalLink`] and
/// the `conditioner` example (which forwards UDP datagrams through it).
///
/// The draws come from the caller's random source, in a fixed order (loss, duplication,
/// then each copy's jitter and reordering), and only for the faults that are on: the same
/// seed and the same packets give the same fates.
///
/// ```
/// use std::time::Duration;
/// use bevy_atomic_matchmaking::testing::local_link::{DirectionFaults, PacketFate};
///
/// let faults = DirectionFaults {
///     delay: Duration::from_millis(50),
///     jitter: Duration::from_millis(20),
///     ..DirectionFaults::default()
/// };
/// let mut rng = fastrand::Rng::with_seed(1);
/// let fate = PacketFate::draw(&faults, &mut rng);
/// let sent = Duration::from_secs(1);
/// for at in fate.deliveries(sent) {
///     assert!(at >= sent + Duration::from_millis(50) && at <= sent + Duration::from_millis(70));
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketFate {
    latencies: [Duration; 2],
    copies: usize,
}

impl PacketFate {
    /// Draws the fate of one packet through `faults` from `rng`.
    pub fn draw(faults: &DirectionFaults, rng: &mut fastrand::Rng) -> Self {
        if faults.loss > 0.0 && rng.f64() < faults.loss {
            return Self {
                latencies: [Duration::ZERO; 2],
                copies: 0,
            };
        }
        let copies = if faults.duplicate > 0.0 && rng.f64() < faults.duplicate {
            2
        } else {
            1
        };
        let mut latencies = [Duration::ZERO; 2];
        for latency in &mut latencies[..copies] {
            *latency = faults.delay + random_up_to(rng, faults.jitter);
            if faults.reorder > 0.0 && rng.f64() < faults.reorder {
                *latency += random_up_to(rng, faults.reorder_window);
            }
        }
        Self { latencies, copies }
    }

    /// Whether the packet is lost (no copy arrives).
    pub fn is_lost(&self) -> bool {
        self.copies == 0
    }

    /// Whether the packet arrives twice.
    pub fn is_duplicated(&self) -> bool {
        self.copies == 2
    }

    /// How long each copy takes, in sending order (empty if lost).
    pub fn latencies(&self) -> &[Duration] {
        &self.latencies[..self.copies]
    }

    /// When each copy of a packet sent at `sent` arrives, in sending order: `sent` is link
    /// time (a [`Duration`]) for [`LocalLink`], an [`Instant`](std::time::Instant) for a
    /// real socket.
    pub fn deliveries<T>(&self, sent: T) -> impl Iterator<Item = T> + use<T>
    where
        T: Copy + Add<Duration, Output = T>,
    {
        self.latencies
            .into_iter()
            .take(self.copies)
            .map(move |latency| sent + latency)
    }
}

/// Packets on their way in one direction, by delivery time then sending order.
#[derive(Debug, Clone, Default)]
struct InFlight {
    packets: BTreeMap<(Duration, u64), Vec<u8>>,
}

impl InFlight {
    /// Takes the packets due at `now`, in delivery order.
    fn due(&mut self, now: Duration) -> Vec<Vec<u8>> {
        let later = self.packets.split_off(&(now, u64::MAX));
        std::mem::replace(&mut self.packets, later)
            .into_values()
            .collect()
    }

    /// Takes every packet, in delivery order.
    fn all(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.packets).into_values().collect()
    }
}

/// The state of one local connection as a test harness sees it: whether packets flow
/// (a test can stop the link, or stall it for a while), whether the connection closed
/// for good, its faults and the packets in flight.
#[derive(Debug, Clone)]
pub struct LocalLink {
    up: bool,
    closed: bool,
    faults: LinkFaults,
    rng: fastrand::Rng,
    stalled_until: Duration,
    sent: u64,
    to_server: InFlight,
    to_client: InFlight,
}

impl Default for LocalLink {
    fn default() -> Self {
        Self::seeded(0)
    }
}

impl LocalLink {
    /// A perfect link whose faults, once set, draw from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            up: true,
            closed: false,
            faults: LinkFaults::default(),
            rng: fastrand::Rng::with_seed(seed),
            stalled_until: Duration::ZERO,
            sent: 0,
            to_server: InFlight::default(),
            to_client: InFlight::default(),
        }
    }

    /// Restarts the random source of the faults from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = fastrand::Rng::with_seed(seed);
    }

    /// Whether packets are exchanged (up and not closed).
    pub fn is_up(&self) -> bool {
        self.up && !self.closed
    }

    /// Whether the connection closed for good.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Stops (`false`) or resumes (`true`) the link: while stopped, renet's packets are
    /// not even taken (they wait in renet); a closed link stays down.
    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }

    /// The faults.
    pub fn faults(&self) -> LinkFaults {
        self.faults
    }

    /// Changes the faults (packets already in flight keep their delivery time).
    pub fn set_faults(&mut self, faults: LinkFaults) {
        self.faults = faults;
    }

    /// Holds every packet until link time `until`, then delivers them in order.
    pub fn stall_until(&mut self, until: Duration) {
        self.stalled_until = self.stalled_until.max(until);
    }

    /// Whether the link holds packets at `now`.
    pub fn is_stalled(&self, now: Duration) -> bool {
        now < self.stalled_until
    }

    /// Packets in flight (both ways).
    pub fn in_flight(&self) -> usize {
        self.to_server.packets.len() + self.to_client.packets.len()
    }

    /// Closes the connection from the client's side, as a player quitting would; packets
    /// in flight are lost.
    pub fn close(&mut self, server: &mut RenetServer, id: ClientId, client: &mut RenetClient) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.to_server = InFlight::default();
        self.to_client = InFlight::default();
        server.disconnect_local_client(id, client);
    }

    /// Puts a packet on the wire at `now`, through the faults of its direction.
    fn send(&mut self, to_server: bool, packet: Vec<u8>, now: Duration) {
        let faults = if to_server {
            self.faults.up
        } else {
            self.faults.down
        };
        let fate = PacketFate::draw(&faults, &mut self.rng);
        let queue = if to_server {
            &mut self.to_server
        } else {
            &mut self.to_client
        };
        for at in fate.deliveries(now) {
            self.sent += 1;
            queue.packets.insert((at, self.sent), packet.clone());
        }
    }

    /// Moves packets both ways at link time `now`, if the link is up: takes what renet
    /// has to send, puts it on the wire, and delivers what is due (nothing while stalled).
    ///
    /// When the server closed the connection itself (a refusal), this does what a
    /// transport does: delivers what is still on its way to the client (the error
    /// explaining why), removes the connection so the server sees the disconnect event,
    /// and disconnects the client.
    pub fn exchange(
        &mut self,
        server: &mut RenetServer,
        mut inbox: Option<&mut MatchmakingInbox>,
        id: ClientId,
        client: &mut RenetClient,
        now: Duration,
    ) {
        if !self.is_up() {
            return;
        }
        if client.is_disconnected() {
            self.closed = true;
            return;
        }
        if !server.is_connected(id) {
            let _ = matchmaking_process_local_client(server, inbox, id, client);
            for packet in self.to_client.all() {
                client.process_packet(&packet);
            }
            server.remove_connection(id);
            client.disconnect();
            self.closed = true;
            return;
        }
        let Ok(down) = server.get_packets_to_send(id) else {
            client.disconnect();
            self.closed = true;
            return;
        };
        for packet in down {
            self.send(false, packet, now);
        }
        if !self.is_stalled(now) {
            for packet in self.to_client.due(now) {
                client.process_packet(&packet);
            }
        }
        for packet in client.get_packets_to_send() {
            self.send(true, packet, now);
        }
        if self.is_stalled(now) {
            return;
        }
        for packet in self.to_server.due(now) {
            if server.process_packet_from(&packet, id).is_err() {
                client.disconnect();
                self.closed = true;
                return;
            }
            if let Some(inbox) = inbox.as_deref_mut() {
                inbox.packet_arrived(id, &packet);
            }
        }
    }
}

/// A random duration in `0..=max` (whole microseconds).
fn random_up_to(rng: &mut fastrand::Rng, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let max_us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rng.u64(0..=max_us))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bevy_renet::renet::{ConnectionConfig, DefaultChannel};

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn pair() -> (RenetServer, RenetClient) {
        let mut server = RenetServer::new(ConnectionConfig::default());
        let client = server.new_local_client(1);
        (server, client)
    }

    /// Sends `n` numbered messages from the client, runs the link for `ms` milliseconds
    /// (1 ms steps, renet updated as bevy_renet would) and returns what the server got.
    fn run(link: &mut LocalLink, n: u8, ms: u64) -> Vec<u8> {
        let (mut server, mut client) = pair();
        for i in 0..n {
            client.send_message(DefaultChannel::ReliableOrdered, vec![i]);
        }
        let mut got = Vec::new();
        for t in 0..ms {
            client.update(MS(1));
            server.update(MS(1));
            link.exchange(&mut server, None, 1, &mut client, MS(t));
            while let Some(m) = server.receive_message(1, DefaultChannel::ReliableOrdered) {
                got.push(m[0]);
            }
        }
        got
    }

    #[test]
    fn a_perfect_link_delivers_at_once() {
        let (mut server, mut client) = pair();
        client.send_message(DefaultChannel::ReliableOrdered, vec![7]);
        LocalLink::default().exchange(&mut server, None, 1, &mut client, Duration::ZERO);
        let got = server.receive_message(1, DefaultChannel::ReliableOrdered);
        assert_eq!(got.as_deref(), Some(&[7u8][..]));
    }

    #[test]
    fn reliable_messages_survive_every_fault_in_order() {
        let faults = DirectionFaults {
            loss: 0.3,
            delay: MS(20),
            jitter: MS(30),
            duplicate: 0.3,
            reorder: 0.3,
            ..DirectionFaults::default()
        };
        let mut link = LocalLink::seeded(11);
        link.set_faults(LinkFaults::both(faults));
        assert_eq!(run(&mut link, 50, 3_000), (0..50).collect::<Vec<u8>>());
    }

    #[test]
    fn faults_are_deterministic_per_seed() {
        let faults = LinkFaults::both(DirectionFaults {
            loss: 0.5,
            jitter: MS(40),
            ..DirectionFaults::default()
        });
        let trace = |seed| {
            let (mut server, mut client) = pair();
            let mut link = LocalLink::seeded(seed);
            link.set_faults(faults);
            let mut arrivals = Vec::new();
            for t in 0..400 {
                if t % 10 == 0 {
                    client.send_message(DefaultChannel::ReliableOrdered, vec![t as u8]);
                }
                client.update(MS(1));
                server.update(MS(1));
                link.exchange(&mut server, None, 1, &mut client, MS(t));
                while server
                    .receive_message(1, DefaultChannel::ReliableOrdered)
                    .is_some()
                {
                    arrivals.push(t);
                }
            }
            arrivals
        };
        assert_eq!(trace(3), trace(3));
        assert_ne!(trace(3), trace(4));
    }

    #[test]
    fn a_stalled_link_holds_packets_then_delivers_them() {
        let mut link = LocalLink::default();
        link.stall_until(MS(100));
        let (mut server, mut client) = pair();
        client.send_message(DefaultChannel::ReliableOrdered, vec![1]);
        for t in 0..100 {
            link.exchange(&mut server, None, 1, &mut client, MS(t));
        }
        assert!(link.in_flight() > 0);
        assert!(
            server
                .receive_message(1, DefaultChannel::ReliableOrdered)
                .is_none()
        );
        link.exchange(&mut server, None, 1, &mut client, MS(100));
        assert!(
            server
                .receive_message(1, DefaultChannel::ReliableOrdered)
                .is_some()
        );
    }

    #[test]
    fn packet_fates_follow_their_faults() {
        let mut rng = fastrand::Rng::with_seed(5);
        let sent = MS(1_000);
        let perfect = PacketFate::draw(&DirectionFaults::default(), &mut rng);
        assert_eq!(perfect.deliveries(sent).collect::<Vec<_>>(), [sent]);
        let lost = DirectionFaults {
            loss: 1.0,
            ..DirectionFaults::default()
        };
        assert!(PacketFate::draw(&lost, &mut rng).is_lost());
        assert_eq!(
            PacketFate::draw(&lost, &mut rng).deliveries(sent).count(),
            0
        );
        let faults = DirectionFaults {
            delay: MS(50),
            jitter: MS(20),
            duplicate: 1.0,
            ..DirectionFaults::default()
        };
        for _ in 0..100 {
            let fate = PacketFate::draw(&faults, &mut rng);
            assert!(fate.is_duplicated() && !fate.is_lost());
            for at in fate.deliveries(sent) {
                assert!(at >= sent + MS(50) && at <= sent + MS(70));
            }
        }
    }

    #[test]
    fn packet_fates_are_deterministic_per_seed() {
        let faults = DirectionFaults {
            loss: 0.2,
            jitter: MS(30),
            duplicate: 0.2,
            reorder: 0.3,
            ..DirectionFaults::default()
        };
        let fates = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..200)
                .map(|_| PacketFate::draw(&faults, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(fates(9), fates(9));
        assert_ne!(fates(9), fates(10));
    }
}
