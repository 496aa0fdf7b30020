//! The clients of the UDP scenarios, updated in rounds, at most `--client-hz` rounds a
//! second: [`Fleet`], bots with the client plugin (`examples/common/bot.rs`, each its own
//! app), in threads of their own, and [`RawFleet`], bare renet + netcode clients that only
//! say what they are given to say, in the main thread.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use serde_json::{Value, json};

use crate::Args;
use crate::bot::{Bot, percentile_ms, tick};
use crate::identity::Identity;
use crate::plug::{self, RawClient};
use crate::server_thread::ServerThread;

/// Keeps a loop at a rate: each round ends at the next multiple of the round's length
/// (a late round does not make the next ones catch up).
pub struct Pace {
    round: Duration,
    next: Instant,
}

impl Pace {
    pub fn new(hz: f64) -> Self {
        Self {
            round: Duration::from_secs_f64(1.0 / hz),
            next: Instant::now(),
        }
    }

    /// Sleeps until the end of this round.
    pub fn wait(&mut self) {
        self.next += self.round;
        let now = Instant::now();
        match self.next.checked_duration_since(now) {
            Some(rest) => std::thread::sleep(rest),
            None => self.next = now,
        }
    }
}

/// The bots of a scenario, in `--client-threads` threads of their own: each builds its
/// share of the apps and, while a scenario runs the fleet ([`Fleet::run_until`]), checks
/// each of its bots once a round ([`tick`]: an app is updated only when it has something to
/// do, or every `--client-idle-ms`), at most `--client-hz` rounds a second.
pub struct Fleet {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Vec<Bot>>>,
    /// The bots, once the threads handed them back ([`Fleet::stop`]).
    bots: Vec<Bot>,
}

/// What the fleet's threads and the scenario share.
#[derive(Default)]
struct Shared {
    /// The threads run rounds (else they wait for it).
    run: AtomicBool,
    /// A bot that found a match disconnects and is not updated again.
    leave: AtomicBool,
    /// The threads stop and hand their bots back.
    quit: AtomicBool,
    /// Threads done building their apps, and the first error of one that could not.
    built: AtomicUsize,
    error: Mutex<Option<io::Error>>,
    /// Bots that found a match, whose connection opened, that gave up (gone unmatched).
    matched: AtomicUsize,
    connected: AtomicUsize,
    gone: AtomicUsize,
    /// Rounds each thread ran.
    rounds: Vec<AtomicU64>,
}

/// What one thread noted of one of its bots, to count each change once.
#[derive(Clone, Copy, Default)]
struct Seen {
    matched: bool,
    connected: bool,
    gone: bool,
    /// Left or gone: not updated again.
    done: bool,
}

impl Fleet {
    /// `n` bots of `server`, bot `i` queueing in `category(i)`, in `--client-threads`
    /// threads (at most one per bot) at most `--client-hz` rounds a second; an idle bot's
    /// app is updated every `--client-idle-ms`.
    pub fn new(
        server: &ServerThread,
        identity: &Identity,
        n: usize,
        category: impl Fn(usize) -> String,
        rematch: bool,
        args: &Args,
    ) -> io::Result<Self> {
        let threads = args.client_threads().clamp(1, n.max(1));
        let (client_hz, every) = (args.client_hz, args.client_idle());
        let shared = Arc::new(Shared {
            rounds: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            ..Shared::default()
        });
        let mut plans: Vec<Bot> = (0..n)
            .map(|i| Bot::new(i, 1000 + i as u64, category(i), None, rematch, 7 + i as u64))
            .collect();
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let rest = plans.split_off(plans.len().div_ceil(threads - t));
            let share = std::mem::replace(&mut plans, rest);
            let (shared, identity, addr) = (Arc::clone(&shared), identity.clone(), server.addr);
            let job = move || match build(share, addr, &identity) {
                Ok(apps) => {
                    shared.built.fetch_add(1, Ordering::SeqCst);
                    drive(apps, &shared, t, client_hz, every)
                }
                Err(e) => {
                    shared.error.lock().expect("error").get_or_insert(e);
                    shared.built.fetch_add(1, Ordering::SeqCst);
                    Vec::new()
                }
            };
            handles.push(std::thread::Builder::new().spawn(job)?);
        }
        let fleet = Self {
            shared,
            threads: handles,
            bots: Vec::new(),
        };
        while fleet.shared.built.load(Ordering::SeqCst) < threads {
            std::thread::sleep(Duration::from_millis(1));
        }
        let error = fleet.shared.error.lock().expect("error").take();
        error.map_or(Ok(fleet), Err)
    }

    /// Runs the threads' rounds until `done` holds or `limit` passed (checked every
    /// millisecond); returns whether `done` held. With `leave_when_matched`, a bot that
    /// found a match disconnects and is not updated again.
    pub fn run_until(
        &mut self,
        limit: Duration,
        leave_when_matched: bool,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        let started = Instant::now();
        self.shared
            .leave
            .store(leave_when_matched, Ordering::SeqCst);
        self.shared.run.store(true, Ordering::SeqCst);
        let held = loop {
            if done(self) {
                break true;
            }
            if started.elapsed() >= limit {
                break done(self);
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.shared.run.store(false, Ordering::SeqCst);
        held
    }

    /// Rounds run so far by the thread that ran the fewest.
    pub fn rounds(&self) -> u64 {
        let rounds = self.shared.rounds.iter();
        rounds.map(|r| r.load(Ordering::SeqCst)).min().unwrap_or(0)
    }

    /// Bots that found at least one match.
    pub fn matched(&self) -> usize {
        self.shared.matched.load(Ordering::SeqCst)
    }

    /// Bots whose connection opened.
    pub fn connected(&self) -> usize {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Bots that gave up before they found a match (their connection never opened, or
    /// closed).
    pub fn gone(&self) -> usize {
        self.shared.gone.load(Ordering::SeqCst)
    }

    /// Stops the threads (their apps are dropped) and keeps their bots.
    pub fn stop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        for handle in self.threads.drain(..) {
            self.bots
                .extend(handle.join().expect("a fleet thread panicked"));
        }
    }

    /// The bots' own waits (join to match found), p50 and p99 in ms; stops the threads.
    pub fn waits(&mut self) -> Value {
        self.stop();
        let mut waits: Vec<Duration> = self.bots.iter().flat_map(|b| b.waits.clone()).collect();
        json!({
            "count": waits.len(),
            "p50": percentile_ms(&mut waits, 0.5),
            "p99": percentile_ms(&mut waits, 0.99),
        })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The apps of a thread's share of the bots.
fn build(bots: Vec<Bot>, server: SocketAddr, identity: &Identity) -> io::Result<Vec<App>> {
    bots.into_iter()
        .map(|bot| plug::bot(server, bot, identity))
        .collect()
}

/// A fleet thread: rounds while the scenario runs the fleet, until it quits; then hands
/// its bots back.
fn drive(
    mut apps: Vec<App>,
    shared: &Shared,
    thread: usize,
    client_hz: f64,
    every: Duration,
) -> Vec<Bot> {
    let mut seen = vec![Seen::default(); apps.len()];
    let mut pace = Pace::new(client_hz);
    while !shared.quit.load(Ordering::SeqCst) {
        if !shared.run.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let leave = shared.leave.load(Ordering::SeqCst);
        for (app, seen) in apps.iter_mut().zip(&mut seen) {
            if !seen.done {
                tick(app, every);
                note(app, seen, shared, leave);
            }
        }
        shared.rounds[thread].fetch_add(1, Ordering::SeqCst);
        pace.wait();
    }
    let mut apps = apps.into_iter();
    let bots = apps
        .by_ref()
        .map(|mut app| app.world_mut().remove_resource::<Bot>());
    bots.map(|bot| bot.expect("a bot")).collect()
}

/// Counts what changed for a bot after its check; a bot that is gone, or that found a
/// match when `leave`, is done (the latter disconnects now).
fn note(app: &mut App, seen: &mut Seen, shared: &Shared, leave: bool) {
    let mut bot = app.world_mut().resource_mut::<Bot>();
    bot.lines.clear();
    let count = |was: &mut bool, now: bool, counter: &AtomicUsize| {
        if now && !*was {
            *was = true;
            counter.fetch_add(1, Ordering::SeqCst);
        }
    };
    count(&mut seen.matched, bot.matched > 0, &shared.matched);
    count(&mut seen.connected, bot.connected_once, &shared.connected);
    // a bot that left after its match is matched, not gone
    count(&mut seen.gone, bot.gone && bot.matched == 0, &shared.gone);
    if bot.gone {
        seen.done = true;
    } else if leave && bot.matched > 0 {
        seen.done = true;
        plug::disconnect(app);
    }
}

/// What a bare client says once connected (given its index), and how it answers a
/// message (`None`: it does not).
pub struct Script {
    pub channel: u8,
    pub greet: Box<dyn Fn(usize) -> Vec<Vec<u8>>>,
    pub answer: Box<dyn Fn(&[u8]) -> Option<Vec<u8>>>,
}

/// Bare clients that start connecting per round: a steady state is measured, not a
/// connection storm (that is `burst`'s).
const STARTS_PER_ROUND: usize = 20;

/// Bare clients: each greets once connected, answers what it is sent, and otherwise
/// only keeps its connection (renet acknowledgements, netcode keep-alives). They start
/// connecting [`STARTS_PER_ROUND`] a round.
pub struct RawFleet {
    clients: Vec<RawClient>,
    started: usize,
    greeted: Vec<bool>,
    script: Script,
    pace: Pace,
    pub rounds: u64,
}

impl RawFleet {
    /// `clients`, following `script`, at most `client_hz` rounds a second.
    pub fn new(clients: Vec<RawClient>, script: Script, client_hz: f64) -> Self {
        Self {
            greeted: vec![false; clients.len()],
            clients,
            started: 0,
            script,
            pace: Pace::new(client_hz),
            rounds: 0,
        }
    }

    /// One round: every client takes in its packets, greets or answers, sends; then
    /// sleeps out the round.
    pub fn round(&mut self) {
        let channel = self.script.channel;
        self.started = (self.started + STARTS_PER_ROUND).min(self.clients.len());
        for (i, client) in self.clients[..self.started].iter_mut().enumerate() {
            client.receive_packets();
            if client.is_connected() && !self.greeted[i] {
                self.greeted[i] = true;
                for bytes in (self.script.greet)(i) {
                    client.send(channel, bytes);
                }
            }
            while let Some(bytes) = client.receive(channel) {
                if let Some(reply) = (self.script.answer)(&bytes) {
                    client.send(channel, reply);
                }
            }
            client.send_packets();
        }
        self.rounds += 1;
        self.pace.wait();
    }

    /// Rounds until `done` holds or `limit` passed; returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if done(self) {
                return true;
            }
            self.round();
        }
        done(self)
    }

    /// Clients whose connection is open.
    pub fn connected(&self) -> usize {
        self.clients.iter().filter(|c| c.is_connected()).count()
    }

    /// Clients netcode gave up on, by reason.
    pub fn gave_up(&self) -> std::collections::BTreeMap<String, usize> {
        let mut reasons = std::collections::BTreeMap::new();
        for reason in self.clients.iter().filter_map(RawClient::gave_up) {
            *reasons.entry(reason).or_default() += 1;
        }
        reasons
    }
}

/// `n` bare clients of `server` (players 1000 and up) on connections with `config`.
pub fn raw_clients(
    server: &ServerThread,
    identity: &Identity,
    n: usize,
    config: bevy_renet::renet::ConnectionConfig,
) -> io::Result<Vec<RawClient>> {
    (0..n)
        .map(|i| plug::raw_client(server.addr, 1000 + i as u64, identity, config.clone()))
        .collect()
}
