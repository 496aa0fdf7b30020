//! A simulated player of the cluster simulation: what its client does with each message
//! its home node sends, and the checks made as the messages arrive.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::atomic::core::protocol::AtomicServerMessage;
use crate::shared::player::PlayerId;

/// What the simulated client believes, from the messages it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Belief {
    /// Not queued (a join may be due).
    Idle,
    /// Asked to join, no answer yet.
    Joining,
    /// Holds a ticket.
    Queued,
    /// In a match still forming.
    Matching(u64),
    /// In a committed match's lobby.
    InLobby {
        /// The lobby.
        lobby_id: u64,
    },
}

/// Something the client will do once its time comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    Connect,
    Join,
    Pong(u64),
    Ack(u64),
    LeaveLobby,
}

/// One simulated player.
#[derive(Debug)]
pub(super) struct SimPlayer {
    pub(super) id: PlayerId,
    /// The node index it is connected to.
    pub(super) home: Option<usize>,
    /// Its round trip to its home; over 500 ms it is unhealthy.
    pub(super) rtt: Duration,
    pub(super) belief: Belief,
    pub(super) due: Vec<(Duration, Action)>,
    /// Set by a fault that makes it look unhealthy or gone (a disconnect, a dead, stalled
    /// or fenced home) since it last joined; cleared when its next ticket is queued.
    pub(super) interrupted: bool,
    /// Steps at which it was interrupted.
    pub(super) interruptions: Vec<usize>,
    /// Steps at which a ticket of it was queued.
    pub(super) joins: Vec<usize>,
}

impl SimPlayer {
    pub(super) fn new(id: PlayerId, home: usize, rtt: Duration) -> Self {
        Self {
            id,
            home: Some(home),
            rtt,
            belief: Belief::Idle,
            due: Vec::new(),
            interrupted: false,
            interruptions: Vec::new(),
            joins: Vec::new(),
        }
    }

    pub(super) fn healthy(&self) -> bool {
        self.rtt <= Duration::from_millis(400)
    }

    pub(super) fn interrupt(&mut self, step: usize) {
        self.interrupted = true;
        self.interruptions.push(step);
    }

    /// Whether an interruption happened at or after `step`.
    pub(super) fn interrupted_since(&self, step: usize) -> bool {
        self.interruptions.iter().any(|s| *s >= step)
    }

    /// The step of its last join at or before `step`.
    pub(super) fn joined_before(&self, step: usize) -> usize {
        self.joins
            .iter()
            .copied()
            .filter(|s| *s <= step)
            .max()
            .unwrap_or(0)
    }

    pub(super) fn schedule(&mut self, at: Duration, action: Action) {
        self.due.push((at, action));
    }

    /// Takes the actions due by `now`, oldest first.
    pub(super) fn take_due(&mut self, now: Duration) -> Vec<Action> {
        self.due.sort_by_key(|(at, _)| *at);
        let split = self.due.partition_point(|(at, _)| *at <= now);
        self.due.drain(..split).map(|(_, a)| a).collect()
    }
}

/// A match seen committed by at least one player.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) members: Vec<PlayerId>,
    pub(super) lobby_id: u64,
    pub(super) receivers: BTreeSet<PlayerId>,
    pub(super) first_step: usize,
}

/// What the clients saw, and the violations found as messages arrived.
#[derive(Debug, Default)]
pub(super) struct Observed {
    pub(super) matches: BTreeMap<u64, Seen>,
    pub(super) violations: Vec<String>,
    pub(super) cancelled: usize,
    pub(super) dropped_unhealthy: usize,
    /// No new joins after a lobby is left or a ticket lost (the end of a run).
    pub(super) draining: bool,
}

impl Observed {
    /// The client `p` takes one message from its home at `now`.
    pub(super) fn deliver(
        &mut self,
        p: &mut SimPlayer,
        message: AtomicServerMessage,
        now: Duration,
        step: usize,
        rng: &mut fastrand::Rng,
    ) {
        let rejoin_at = now + Duration::from_millis(rng.u64(50..600));
        match message {
            AtomicServerMessage::QueueJoined { .. } => {
                p.belief = Belief::Queued;
                p.interrupted = false;
                p.joins.push(step);
            }
            AtomicServerMessage::Ping { nonce } => p.schedule(now + p.rtt, Action::Pong(nonce)),
            AtomicServerMessage::MatchProposed { match_id, .. } => {
                p.belief = Belief::Matching(match_id);
                p.schedule(now + p.rtt, Action::Ack(match_id));
            }
            AtomicServerMessage::MatchFound {
                match_id,
                lobby_id,
                players,
                ..
            } => self.found(p, match_id, lobby_id, players, now, step, rng),
            AtomicServerMessage::MatchCancelled {
                match_id, requeued, ..
            } => {
                self.cancelled += 1;
                if requeued {
                    p.belief = Belief::Queued;
                } else {
                    if p.healthy() && !p.interrupted {
                        let why = format!(
                            "step {step}: healthy player {} dropped from match {match_id}",
                            p.id
                        );
                        self.violations.push(why);
                    }
                    self.dropped_unhealthy += 1;
                    self.idle(p, rejoin_at);
                }
            }
            AtomicServerMessage::QueueLeft { .. } | AtomicServerMessage::LobbyLeft { .. } => {
                self.idle(p, rejoin_at);
            }
            AtomicServerMessage::Error { .. } if p.belief == Belief::Joining => {
                self.idle(p, rejoin_at);
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn found(
        &mut self,
        p: &mut SimPlayer,
        match_id: u64,
        lobby_id: u64,
        players: Vec<crate::atomic::core::protocol::AtomicMatchedPlayer>,
        now: Duration,
        step: usize,
        rng: &mut fastrand::Rng,
    ) {
        if let Belief::InLobby { lobby_id: held } = p.belief
            && held != lobby_id
        {
            let why = format!(
                "step {step}: player {} in lobbies {held} and {lobby_id}",
                p.id
            );
            self.violations.push(why);
        }
        let members: Vec<PlayerId> = players.iter().map(|m| m.player).collect();
        if !members.contains(&p.id) {
            let why = format!(
                "step {step}: player {} told of match {match_id} without it",
                p.id
            );
            self.violations.push(why);
        }
        let seen = self.matches.entry(match_id).or_insert_with(|| Seen {
            members: members.clone(),
            lobby_id,
            receivers: BTreeSet::new(),
            first_step: step,
        });
        if seen.lobby_id != lobby_id {
            let why = format!("step {step}: match {match_id} has two lobbies");
            self.violations.push(why);
        }
        if !seen.receivers.insert(p.id) {
            let why = format!(
                "step {step}: player {} told twice of match {match_id}",
                p.id
            );
            self.violations.push(why);
        }
        p.belief = Belief::InLobby { lobby_id };
        let leave_at = now + Duration::from_millis(rng.u64(200..1500));
        p.schedule(leave_at, Action::LeaveLobby);
    }

    fn idle(&self, p: &mut SimPlayer, rejoin_at: Duration) {
        p.belief = Belief::Idle;
        if !self.draining {
            p.schedule(rejoin_at, Action::Join);
        }
    }
}
