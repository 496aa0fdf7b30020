//! The clients of the UDP scenarios, updated in rounds from the main thread, at most
//! `--client-hz` rounds a second: [`Fleet`], bots with the client plugin
//! (`examples/common/bot.rs`, each its own app), and [`RawFleet`], bare renet + netcode
//! clients that only say what they are given to say.

use std::io;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use serde_json::{Value, json};

use crate::bot::{Bot, percentile_ms};
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

/// The bots of a scenario, updated in rounds from the main thread.
pub struct Fleet {
    pub apps: Vec<App>,
    /// Bots still updated (not left, not given up).
    active: Vec<bool>,
    pace: Pace,
    pub rounds: u64,
}

impl Fleet {
    /// `n` bots of `server`, bot `i` queueing in `category(i)`.
    pub fn new(
        server: &ServerThread,
        identity: &Identity,
        n: usize,
        category: impl Fn(usize) -> String,
        rematch: bool,
        client_hz: f64,
    ) -> io::Result<Self> {
        let mut apps = Vec::with_capacity(n);
        for i in 0..n {
            let bot = Bot::new(i, 1000 + i as u64, category(i), None, rematch, 7 + i as u64);
            apps.push(plug::bot(server.addr, bot, identity)?);
        }
        Ok(Self {
            active: vec![true; n],
            apps,
            pace: Pace::new(client_hz),
            rounds: 0,
        })
    }

    /// One round: every active bot updates once; with `leave_when_matched`, a bot that
    /// found a match disconnects and is not updated again. Then sleeps out the round.
    pub fn round(&mut self, leave_when_matched: bool) {
        for (app, active) in self.apps.iter_mut().zip(&mut self.active) {
            if !*active {
                continue;
            }
            app.update();
            let mut bot = app.world_mut().resource_mut::<Bot>();
            bot.lines.clear();
            if bot.gone {
                *active = false;
            } else if leave_when_matched && bot.matched > 0 {
                *active = false;
                plug::disconnect(app);
            }
        }
        self.rounds += 1;
        self.pace.wait();
    }

    /// Rounds until `done` holds or `limit` passed; returns whether `done` held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        leave_when_matched: bool,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if done(self) {
                return true;
            }
            self.round(leave_when_matched);
        }
        done(self)
    }

    fn bot(&self, i: usize) -> &Bot {
        self.apps[i].world().resource::<Bot>()
    }

    /// Bots that found at least one match.
    pub fn matched(&self) -> usize {
        (0..self.apps.len())
            .filter(|i| self.bot(*i).matched > 0)
            .count()
    }

    /// Bots whose connection opened.
    pub fn connected(&self) -> usize {
        (0..self.apps.len())
            .filter(|i| self.bot(*i).connected_once)
            .count()
    }

    /// Bots that gave up (their connection never opened, or closed).
    pub fn gone(&self) -> usize {
        (0..self.apps.len()).filter(|i| self.bot(*i).gone).count()
    }

    /// The bots' own waits (join to match found), p50 and p99 in ms.
    pub fn waits(&self) -> Value {
        let mut waits: Vec<Duration> = (0..self.apps.len())
            .flat_map(|i| self.bot(i).waits.clone())
            .collect();
        json!({
            "count": waits.len(),
            "p50": percentile_ms(&mut waits, 0.5),
            "p99": percentile_ms(&mut waits, 0.99),
        })
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
