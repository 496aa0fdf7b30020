//! The end of a cluster simulation: faults stop and nobody joins again until the cluster
//! is quiet, then what every player believes is checked against its home and the store,
//! and once everyone has left, the store must be empty.

use std::time::Duration;

use crate::atomic::core::cluster::AtomicLocalSeat;
use crate::atomic::core::store::{AtomicStore, AtomicStoreSeat};

use super::player::Belief;
use super::{AtomicStoreUnderTest, Sim};

impl<S: AtomicStoreUnderTest> Sim<'_, S> {
    /// Stops the faults and every new join, revives dead nodes and lets the cluster settle.
    pub(super) fn quiet(&mut self) {
        self.observed.draining = true;
        self.store.flaky = None;
        for n in &mut self.nodes {
            n.stalled_until = Duration::ZERO;
            if n.node.is_none() {
                n.revive_at = Duration::ZERO;
            }
        }
        self.run_for(self.settings.quiet);
    }

    fn run_for(&mut self, length: Duration) {
        let steps = length.as_micros() / self.settings.step.as_micros().max(1);
        for _ in 0..steps {
            self.tick(false);
        }
    }

    /// Once quiet: every committed match reached each of its players (unless a fault
    /// interrupted it), and each player's belief, its home's seat and the store agree.
    pub(super) fn check_end(&mut self) {
        for (match_id, seen) in &self.observed.matches {
            for member in &seen.members {
                let p = &self.players[(*member - 1) as usize];
                let joined = p.joined_before(seen.first_step);
                if !seen.receivers.contains(member) && !p.interrupted_since(joined) {
                    let why = format!(
                        "match {match_id} (step {}, lobby {}, members {:?}, told {:?}) never reached its player {member}",
                        seen.first_step, seen.lobby_id, seen.members, seen.receivers
                    );
                    self.observed.violations.push(why);
                }
            }
        }
        for i in 0..self.players.len() {
            self.check_player_at_end(i);
        }
        for n in &self.nodes {
            if let Some(node) = &n.node
                && node.coordinating().next().is_some()
            {
                let why = format!("{} still coordinates matches once quiet", n.name);
                self.observed.violations.push(why);
            }
        }
    }

    fn check_player_at_end(&mut self, i: usize) {
        let p = &self.players[i];
        let Some(h) = p.home else {
            let why = format!("player {} never connected again", p.id);
            return self.observed.violations.push(why);
        };
        let (id, belief) = (p.id, p.belief.clone());
        let seat = self.nodes[h]
            .node
            .as_ref()
            .and_then(|n| n.seat(id))
            .cloned();
        let record = self.store.player(id);
        let in_store = match record {
            Ok(Some(r)) if r.node == self.nodes[h].name => Some(r.seat),
            Ok(Some(r)) => {
                let why = format!("player {id} on {} is held by {} in the store", h, r.node);
                return self.observed.violations.push(why);
            }
            Ok(None) => None,
            Err(error) => {
                let why = format!("store unreadable at the end: {error}");
                return self.observed.violations.push(why);
            }
        };
        let agree = match (&belief, &seat, &in_store) {
            (Belief::Idle, Some(AtomicLocalSeat::Idle), None) => true,
            (
                Belief::Queued,
                Some(AtomicLocalSeat::Queued { category, .. }),
                Some(AtomicStoreSeat::Queued { category: held }),
            ) => category == held,
            _ => false,
        };
        if !agree {
            let why = format!(
                "player {id} once quiet: believes {belief:?}, home {seat:?}, store {in_store:?}"
            );
            self.observed.violations.push(why);
        }
    }

    /// Every player leaves and disconnects; then the store must hold nothing.
    pub(super) fn drain(&mut self) {
        for i in 0..self.players.len() {
            let Some(h) = self.players[i].home else {
                continue;
            };
            let id = self.players[i].id;
            if let Some(node) = self.nodes[h].node.as_mut() {
                let now = self.now;
                match self.players[i].belief {
                    Belief::Queued => node.leave(id, &mut self.store, &mut self.inbox, now),
                    Belief::InLobby { .. } => node.leave_lobby(id, &mut self.store, now),
                    _ => {}
                }
                node.disconnect(id, &mut self.store, &mut self.inbox, now);
                let _ = node.take_outputs();
            }
            let p = &mut self.players[i];
            p.home = None;
            p.due.clear();
        }
        self.run_for(self.settings.empty);
        match self.store.residue() {
            Ok(0) => {}
            Ok(left) => {
                let why = format!("{left} records left in the store once everyone has gone");
                self.observed.violations.push(why);
            }
            Err(error) => {
                let why = format!("store unreadable at the end: {error}");
                self.observed.violations.push(why);
            }
        }
    }
}
