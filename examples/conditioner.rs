//! A UDP link conditioner: a proxy that applies loss, delay, jitter and duplication to each
//! direction between clients and a server, because this machine's kernel has no netem.
//!
//! ```text
//! cargo run --release --example conditioner -- --listen 127.0.0.1:6000 --upstream 127.0.0.1:5000 \
//!     [--loss FRACTION] [--delay-ms MS] [--jitter-ms MS] [--duplicate FRACTION] \
//!     [--seed N] [--run-for SECONDS] [--stats-every SECONDS]
//! ```
//!
//! Clients send to `--listen`; the conditioner keeps one upstream socket per client address,
//! so the server still sees distinct clients (and netcode's per-address checks hold). Every
//! datagram, in either direction, is dropped with probability `--loss`, otherwise delayed by
//! `--delay-ms` ± a uniform `--jitter-ms` (never below zero; so packets reorder when the
//! jitter exceeds their spacing), and sent twice with probability `--duplicate`, each copy
//! with its own delay. The delay applies one way: a round trip gets it twice. A client
//! silent for 60 s loses its upstream socket.
//!
//! The faults are the in-process link's own fault model
//! ([`PacketFate`] drawn from [`DirectionFaults`], seeded by `--seed`), the one the test
//! harnesses use, applied here to real datagrams.
//!
//! Prints a stats line every `--stats-every` seconds (default 5) and at exit: datagrams
//! each way, dropped, duplicated, clients. Runs until killed, or for `--run-for` seconds.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use bevy_atomic_matchmaking::testing::local_link::{DirectionFaults, PacketFate};
use clap::Parser;

const FLOW_IDLE: Duration = Duration::from_secs(60);
const MAX_DATAGRAM: usize = 1500;

/// A UDP proxy that loses, delays (with jitter) and duplicates datagrams both ways.
#[derive(Debug, Clone, Parser)]
#[command(name = "conditioner")]
struct Args {
    /// Address the clients send to.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6000")]
    listen: SocketAddr,
    /// Address of the server the datagrams are forwarded to.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    upstream: SocketAddr,
    /// Probability that a datagram is dropped (0 to 1).
    #[arg(long, value_name = "FRACTION", default_value = "0", value_parser = fraction)]
    loss: f64,
    /// One-way delay of every datagram, in milliseconds (0 to 60000).
    #[arg(long = "delay-ms", value_name = "MS", default_value = "0", value_parser = millis)]
    delay: Duration,
    /// Uniform jitter around the delay, ± this many milliseconds (0 to 60000).
    #[arg(long = "jitter-ms", value_name = "MS", default_value = "0", value_parser = millis)]
    jitter: Duration,
    /// Probability that a datagram is sent twice (0 to 1).
    #[arg(long, value_name = "FRACTION", default_value = "0", value_parser = fraction)]
    duplicate: f64,
    /// Seed of the random draws.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long = "run-for", value_name = "SECONDS", value_parser = seconds)]
    run_for: Option<Duration>,
    /// Print a stats line every this many seconds (at least 0.1).
    #[arg(long = "stats-every", value_name = "SECONDS", default_value = "5", value_parser = stats_every)]
    stats_every: Duration,
}

impl Args {
    /// The fault model of each direction: the base delay ± a uniform jitter, never below
    /// zero, is the model's delay plus a jitter drawn from zero up.
    fn faults(&self) -> DirectionFaults {
        let delay = self.delay.saturating_sub(self.jitter);
        DirectionFaults {
            loss: self.loss,
            delay,
            jitter: self.delay + self.jitter - delay,
            duplicate: self.duplicate,
            ..DirectionFaults::default()
        }
    }
}

fn fraction(value: &str) -> Result<f64, String> {
    let f: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if !(0.0..=1.0).contains(&f) {
        return Err("must be between 0 and 1".into());
    }
    Ok(f)
}

fn millis(value: &str) -> Result<Duration, String> {
    let ms: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if !(0.0..=60_000.0).contains(&ms) {
        return Err("must be between 0 and 60000".into());
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

fn seconds(value: &str) -> Result<Duration, String> {
    let secs: f64 = value.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{e}"))
}

fn stats_every(value: &str) -> Result<Duration, String> {
    let secs: f64 = value.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(secs.max(0.1)).map_err(|e| format!("{e}"))
}

/// A datagram that arrived, and from which side.
enum Arrival {
    FromClient(SocketAddr, Vec<u8>),
    FromServer(SocketAddr, Vec<u8>),
}

/// A datagram waiting for its delivery time.
struct Scheduled {
    due: Instant,
    seq: u64,
    to_server: bool,
    client: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// One client's upstream socket and the thread that reads it.
struct Flow {
    socket: UdpSocket,
    last_seen: Instant,
    closed: Arc<AtomicBool>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    to_server: u64,
    to_client: u64,
    dropped: u64,
    duplicated: u64,
    clients: u64,
}

struct Conditioner {
    args: Args,
    faults: DirectionFaults,
    listen: UdpSocket,
    flows: HashMap<SocketAddr, Flow>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    arrivals: Sender<Arrival>,
    rng: fastrand::Rng,
    seq: u64,
    counters: Counters,
}

impl Conditioner {
    /// Puts a datagram through the fault model: dropped, or queued once or twice, each
    /// copy at its own delivery time.
    fn schedule(&mut self, to_server: bool, client: SocketAddr, data: Vec<u8>, now: Instant) {
        let fate = PacketFate::draw(&self.faults, &mut self.rng);
        if fate.is_lost() {
            self.counters.dropped += 1;
            return;
        }
        if fate.is_duplicated() {
            self.counters.duplicated += 1;
        }
        for due in fate.deliveries(now) {
            self.seq += 1;
            let seq = self.seq;
            self.queue.push(Reverse(Scheduled {
                due,
                seq,
                to_server,
                client,
                data: data.clone(),
            }));
        }
    }

    /// The upstream socket of a client, opened (with its reader thread) on first sight.
    fn open_flow(&mut self, client: SocketAddr) -> std::io::Result<()> {
        if self.flows.contains_key(&client) {
            return Ok(());
        }
        let bind: SocketAddr = if self.args.upstream.is_ipv6() {
            "[::1]:0".parse().expect("valid")
        } else {
            "127.0.0.1:0".parse().expect("valid")
        };
        let socket = UdpSocket::bind(bind)?;
        socket.connect(self.args.upstream)?;
        let reader = socket.try_clone()?;
        reader.set_read_timeout(Some(Duration::from_millis(500)))?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        let arrivals = self.arrivals.clone();
        std::thread::spawn(move || read_upstream(reader, client, arrivals, flag));
        self.flows.insert(
            client,
            Flow {
                socket,
                last_seen: Instant::now(),
                closed,
            },
        );
        self.counters.clients += 1;
        Ok(())
    }

    fn arrive(&mut self, arrival: Arrival, now: Instant) {
        match arrival {
            Arrival::FromClient(client, data) => {
                if let Err(e) = self.open_flow(client) {
                    eprintln!("conditioner: cannot open an upstream socket for {client}: {e}");
                    return;
                }
                if let Some(flow) = self.flows.get_mut(&client) {
                    flow.last_seen = now;
                }
                self.schedule(true, client, data, now);
            }
            Arrival::FromServer(client, data) => self.schedule(false, client, data, now),
        }
    }

    /// Sends every datagram whose time has come; returns when the next one is due.
    fn deliver_due(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.due > now {
                return Some(next.due);
            }
            let Reverse(packet) = self.queue.pop().expect("peeked");
            if packet.to_server {
                if let Some(flow) = self.flows.get(&packet.client) {
                    let _ = flow.socket.send(&packet.data);
                    self.counters.to_server += 1;
                }
            } else {
                let _ = self.listen.send_to(&packet.data, packet.client);
                self.counters.to_client += 1;
            }
        }
        None
    }

    fn close_idle_flows(&mut self, now: Instant) {
        self.flows.retain(|_, flow| {
            let keep = now.duration_since(flow.last_seen) < FLOW_IDLE;
            if !keep {
                flow.closed.store(true, Ordering::Relaxed);
            }
            keep
        });
    }

    fn print_stats(&self) {
        let c = self.counters;
        println!(
            "conditioner: to_server={} to_client={} dropped={} duplicated={} clients={} open={}",
            c.to_server,
            c.to_client,
            c.dropped,
            c.duplicated,
            c.clients,
            self.flows.len()
        );
    }
}

fn read_listen(socket: UdpSocket, arrivals: Sender<Arrival>) {
    let mut buf = [0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if arrivals
                    .send(Arrival::FromClient(from, buf[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => {
                eprintln!("conditioner: listen socket: {e}");
                return;
            }
        }
    }
}

fn read_upstream(
    socket: UdpSocket,
    client: SocketAddr,
    arrivals: Sender<Arrival>,
    closed: Arc<AtomicBool>,
) {
    let mut buf = [0u8; MAX_DATAGRAM];
    while !closed.load(Ordering::Relaxed) {
        match socket.recv(&mut buf) {
            Ok(n) => {
                if arrivals
                    .send(Arrival::FromServer(client, buf[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(_) => return,
        }
    }
}

fn run(args: Args) -> std::io::Result<()> {
    let listen = UdpSocket::bind(args.listen)?;
    let (tx, rx): (Sender<Arrival>, Receiver<Arrival>) = mpsc::channel();
    let reader = listen.try_clone()?;
    let reader_tx = tx.clone();
    std::thread::spawn(move || read_listen(reader, reader_tx));
    println!(
        "conditioner: {} -> {} loss={} delay={:?} jitter={:?} duplicate={}",
        listen.local_addr()?,
        args.upstream,
        args.loss,
        args.delay,
        args.jitter,
        args.duplicate
    );
    let started = Instant::now();
    let mut next_stats = started + args.stats_every;
    let mut c = Conditioner {
        rng: fastrand::Rng::with_seed(args.seed),
        faults: args.faults(),
        args,
        listen,
        flows: HashMap::new(),
        queue: BinaryHeap::new(),
        arrivals: tx,
        seq: 0,
        counters: Counters::default(),
    };
    loop {
        let now = Instant::now();
        if c.args
            .run_for
            .is_some_and(|d| now.duration_since(started) >= d)
        {
            break;
        }
        if now >= next_stats {
            c.print_stats();
            c.close_idle_flows(now);
            next_stats = now + c.args.stats_every;
        }
        let next_due = c.deliver_due(now).unwrap_or(next_stats).min(next_stats);
        let wait = next_due.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(arrival) => {
                c.arrive(arrival, Instant::now());
                // take whatever else already arrived before sleeping again
                while let Ok(more) = rx.try_recv() {
                    c.arrive(more, Instant::now());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    c.print_stats();
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("conditioner: {e}");
        std::process::exit(1);
    }
}
