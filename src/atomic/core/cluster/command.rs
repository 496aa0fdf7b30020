//! What a node's owner feeds it: [`AtomicClusterCommand`], one per player event, applied in
//! order by [`AtomicClusterNode::apply`]; and what a node has done, [`AtomicClusterCounters`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::atomic::core::store::{AtomicStore, AtomicStoreError};
use crate::shared::player::PlayerId;

use super::AtomicClusterInbox;
use super::node::AtomicClusterNode;

/// A player event for a node (its connection opened or closed, or a client message the
/// connection gate let through).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AtomicClusterCommand {
    /// A connection opened (one under an id already here replaces it).
    Connect(PlayerId),
    /// A connection closed.
    Disconnect(PlayerId),
    /// The player asks for a ticket in this category (already validated).
    Join(PlayerId, String),
    /// The player leaves the queue.
    Leave(PlayerId),
    /// The player answered a health ping.
    Pong(PlayerId, u64),
    /// The player acknowledged a proposal of this match.
    Acknowledge(PlayerId, u64),
    /// The player leaves its lobby.
    LeaveLobby(PlayerId),
}

/// What a node has done since it started: its share of the cluster's work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtomicClusterCounters {
    /// Matches it claimed (and coordinated).
    pub claimed: u64,
    /// Matches it committed.
    pub committed: u64,
    /// Matches it rolled back, by status name (`player1_disconnected`, ...).
    pub rolled_back: BTreeMap<String, u64>,
    /// Leases it lost.
    pub leases_lost: u64,
    /// Dead nodes it reaped.
    pub reaped: u64,
    /// Store calls that failed as unreachable.
    pub store_unavailable: u64,
    /// Round trips to the store so far (filled in by whoever runs the node: 0 in memory).
    pub store_round_trips: u64,
    /// Round trips to the inboxes so far (likewise).
    pub inbox_round_trips: u64,
}

impl AtomicClusterNode {
    /// Applies one player event at `now`.
    pub fn apply(
        &mut self,
        command: AtomicClusterCommand,
        now: Duration,
        store: &mut dyn AtomicStore,
        inbox: &mut dyn AtomicClusterInbox,
    ) {
        match command {
            AtomicClusterCommand::Connect(player) => self.connect(player, store, inbox, now),
            AtomicClusterCommand::Disconnect(player) => {
                self.disconnect(player, store, inbox, now);
            }
            AtomicClusterCommand::Join(player, category) => {
                self.join(player, &category, store, now);
            }
            AtomicClusterCommand::Leave(player) => self.leave(player, store, inbox, now),
            AtomicClusterCommand::Pong(player, nonce) => self.pong(player, nonce, now, inbox),
            AtomicClusterCommand::Acknowledge(player, match_id) => {
                self.acknowledge(player, match_id, inbox);
            }
            AtomicClusterCommand::LeaveLobby(player) => self.leave_lobby(player, store, now),
        }
    }

    /// What the node has done since it started.
    pub fn counters(&self) -> &AtomicClusterCounters {
        &self.counters
    }

    /// The whole cluster's numbers, as last read from the store (about once a second).
    pub fn cluster(&self) -> Option<&crate::atomic::core::store::AtomicStoreStats> {
        self.cluster.as_ref()
    }

    /// Matches this node coordinates now (claimed, not decided yet).
    pub fn forming(&self) -> usize {
        self.coordinated.len()
    }

    /// Whether the last store call reached the store.
    pub fn store_reachable(&self) -> bool {
        self.unavailable_since.is_none()
    }

    /// Players connected to this node.
    pub fn connected(&self) -> usize {
        self.players.len()
    }

    /// Gives the lease up (the node is shutting down): the store reaps its records at once,
    /// so its queued players' tickets go and the matches it coordinated roll back.
    pub fn release(&mut self, store: &mut dyn AtomicStore) -> Result<(), AtomicStoreError> {
        match self.lease.take() {
            Some(lease) => store.release_lease(&lease),
            None => Ok(()),
        }
    }
}
