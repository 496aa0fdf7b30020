//! Atomic matchmaking across the nodes of a cluster: [`AtomicClusterNode`], the part of a
//! node that talks to the shared [`AtomicStore`](super::store::AtomicStore) and to the
//! other nodes' inboxes. Plain Rust: the node runs off the frame, next to the store.
//!
//! # Who owns what
//!
//! - **The store** owns the truth: tickets, matches in flight, lobbies, leases.
//! - **The node a player is connected to** (its home) owns the connection: it joins the
//!   player's ticket, pings it when asked, measures the round trip, forwards proposals
//!   and outcomes, and reports acknowledgements and disconnects.
//! - **The node that claims a match** (its coordinator) runs the match's two-phase commit
//!   ([`AtomicCommitMachine`](super::commit::AtomicCommitMachine)) and decides it at the
//!   store's commit point.
//!
//! A coordinator and a home talk through one inbox per node ([`AtomicClusterInbox`]);
//! a node is its own home for its players, and those messages never leave it. An inbox
//! message can be delivered twice (handlers are idempotent) and the messages of a dead node
//! go unread: the commit machine's timeouts roll a match back, a survivor that reaps a dead
//! coordinator tells the homes of the players it put back in front, and every home checks
//! its players' seats in the store every [`AtomicClusterSettings::reconcile_every`].

mod command;
mod coordinate;
mod home;
mod node;
mod upkeep;

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::atomic::core::protocol::AtomicServerMessage;
use crate::shared::player::PlayerId;

pub use command::{AtomicClusterCommand, AtomicClusterCounters};
pub use node::{
    AtomicClusterNode, AtomicClusterOutcome, AtomicClusterOutput, AtomicClusterSettings,
    AtomicLocalSeat,
};

/// What a player's seat becomes when its home forwards a coordinator's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AtomicClusterSeat {
    /// In the match, still forming (a health ping or a proposal).
    Matching,
    /// In the committed match's lobby.
    InLobby {
        /// The lobby.
        lobby_id: u64,
    },
    /// Back in the queue, in front.
    Requeued {
        /// Its category.
        category: String,
    },
    /// Out of the match and not queued.
    Dropped,
}

/// A message between two nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AtomicClusterMessage {
    /// Coordinator to home: send `message` to your player, whose seat becomes `seat`. A
    /// ping is timed by the home, which reports the round trip ([`Self::Health`]).
    ToPlayer {
        /// The match.
        match_id: u64,
        /// The coordinating node.
        coordinator: String,
        /// The player.
        player: PlayerId,
        /// What to send it.
        message: AtomicServerMessage,
        /// Its seat from now on.
        seat: AtomicClusterSeat,
    },
    /// Home to coordinator: the player answered the ping `nonce` after `rtt_us`.
    Health {
        /// The match.
        match_id: u64,
        /// The player.
        player: PlayerId,
        /// The ping's nonce.
        nonce: u64,
        /// Round trip measured by the home node, µs.
        rtt_us: u64,
    },
    /// Home to coordinator: the player acknowledged the proposal.
    Acked {
        /// The match.
        match_id: u64,
        /// The player.
        player: PlayerId,
    },
    /// Home to coordinator: the player disconnected (or left) while the match formed.
    Gone {
        /// The match.
        match_id: u64,
        /// The player.
        player: PlayerId,
    },
    /// A survivor to a home: reaping a dead coordinator put this player back in front;
    /// check its seat in the store now.
    Reaped {
        /// The player.
        player: PlayerId,
    },
}

/// One inbox per node: messages posted to a node are taken by it, in order. A Redis
/// stream with a consumer group in a cluster; [`AtomicMemoryInbox`] in one process.
pub trait AtomicClusterInbox {
    /// Posts a message to `node`'s inbox.
    fn post(&mut self, node: &str, message: &AtomicClusterMessage) -> Result<(), String>;
    /// Takes up to `max` messages from `node`'s inbox, oldest first.
    fn take(&mut self, node: &str, max: usize) -> Result<Vec<AtomicClusterMessage>, String>;

    /// Round trips to the inbox's store so far (0 in memory).
    fn round_trips(&self) -> u64 {
        0
    }

    /// `node` has gone for good (it gave its lease up): its inbox and what is unread in
    /// it are dropped. Nothing by default.
    fn close(&mut self, node: &str) -> Result<(), String> {
        let _ = node;
        Ok(())
    }
}

/// Inboxes in memory, for nodes in one process (tests and the simulation). Like a Redis
/// stream read by a consumer group it loses nothing, but it can deliver a message twice
/// (a redelivery after a consumer failed to acknowledge it), as a fault:
/// [`AtomicMemoryInbox::duplicate`].
#[derive(Debug, Default)]
pub struct AtomicMemoryInbox {
    boxes: HashMap<String, VecDeque<AtomicClusterMessage>>,
    duplicate: f64,
    rng: Option<fastrand::Rng>,
    duplicated: u64,
    posted: u64,
}

impl AtomicMemoryInbox {
    /// Empty inboxes that deliver each message once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers each posted message twice with probability `fraction`, drawn from `seed`.
    pub fn duplicate(&mut self, fraction: f64, seed: u64) {
        self.duplicate = fraction;
        self.rng = Some(fastrand::Rng::with_seed(seed));
    }

    /// Messages delivered twice so far.
    pub fn duplicated(&self) -> u64 {
        self.duplicated
    }

    /// Messages posted so far.
    pub fn posted(&self) -> u64 {
        self.posted
    }

    /// Messages waiting in every inbox.
    pub fn waiting(&self) -> usize {
        self.boxes.values().map(VecDeque::len).sum()
    }

    /// Empties a node's inbox (it died with them unread).
    pub fn clear(&mut self, node: &str) {
        self.boxes.remove(node);
    }

    /// Empties every inbox (the store behind them restarted empty).
    pub fn flush(&mut self) {
        self.boxes.clear();
    }
}

impl AtomicClusterInbox for AtomicMemoryInbox {
    fn post(&mut self, node: &str, message: &AtomicClusterMessage) -> Result<(), String> {
        self.posted += 1;
        let twice = match &mut self.rng {
            Some(rng) => rng.f64() < self.duplicate,
            None => false,
        };
        let inbox = self.boxes.entry(node.to_owned()).or_default();
        inbox.push_back(message.clone());
        if twice {
            self.duplicated += 1;
            inbox.push_back(message.clone());
        }
        Ok(())
    }

    fn take(&mut self, node: &str, max: usize) -> Result<Vec<AtomicClusterMessage>, String> {
        let Some(inbox) = self.boxes.get_mut(node) else {
            return Ok(Vec::new());
        };
        let n = max.min(inbox.len());
        Ok(inbox.drain(..n).collect())
    }

    fn close(&mut self, node: &str) -> Result<(), String> {
        self.clear(node);
        Ok(())
    }
}
