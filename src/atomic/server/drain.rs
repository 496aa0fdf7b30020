//! Draining: the server app writes [`AtomicDrain`]; from then on no ticket is taken, every
//! player not in a forming match is told the server is closing (queued players lose their
//! tickets), matches in flight finish or are called off at the drain's deadline (their
//! players are told, not re-queued), and [`AtomicDrainFinished`] comes once nothing is in
//! flight. A rolling update drains one server at a time.

use std::time::Duration;

use bevy::prelude::*;

use crate::atomic::core::protocol::AtomicServerMessage;

use super::components::AtomicMatch;
use super::matches::MatchEffects;
use super::state::{AtomicPlayerLocation, Drain};

/// Starts draining the server (the `server` example writes it on SIGTERM). A second
/// drain changes nothing.
#[derive(Message, Reflect, Debug, Clone, Copy, PartialEq, Eq)]
#[reflect(Debug, Clone, PartialEq)]
pub struct AtomicDrain {
    /// How long matches in flight may take to commit or roll back; those still forming
    /// then are called off (status `aborted`).
    pub timeout: Duration,
}

/// The drain is over: nothing is in flight, every player was told. Written once; the app
/// may write its final stats and exit.
#[derive(Message, Reflect, Debug, Clone, Copy, PartialEq, Eq)]
#[reflect(Debug, Clone, PartialEq)]
pub struct AtomicDrainFinished {
    /// Matches committed since start, counting those that committed during the drain.
    pub matches_committed: u64,
    /// Matches rolled back since start.
    pub matches_rolled_back: u64,
}

/// Starts the drain at the first [`AtomicDrain`].
pub(super) fn start_drain(
    time: Res<Time<Real>>,
    mut drains: MessageReader<AtomicDrain>,
    mut effects: MatchEffects,
) {
    for drain in drains.read() {
        if effects.state.drain.is_none() {
            let deadline = time.elapsed().saturating_add(drain.timeout);
            info!(
                "matchmaking: draining: {} matches in flight, {} queued, {} lobbies (timeout {:?})",
                effects.stats.matches_in_flight,
                effects.stats.total_queued(),
                effects.stats.lobbies_open,
                drain.timeout
            );
            effects.state.drain = Some(Drain {
                deadline,
                ..default()
            });
        }
    }
}

/// While draining: tells every settled player, once, that the server is closing (taking
/// queued players' tickets), calls off matches still forming at the deadline, and says
/// when the drain is over.
pub(super) fn advance_drain(
    time: Res<Time<Real>>,
    matches: Query<(Entity, &AtomicMatch)>,
    mut finished: MessageWriter<AtomicDrainFinished>,
    mut effects: MatchEffects,
) {
    let Some(deadline) = effects.state.drain.as_ref().map(|d| d.deadline) else {
        return;
    };
    effects.tell_closing();
    let in_flight: Vec<Entity> = matches
        .iter()
        .filter(|(_, m)| !m.machine().is_finished())
        .map(|(e, _)| e)
        .collect();
    if !in_flight.is_empty() && time.elapsed() >= deadline {
        // the removal observer rolls each back (status aborted) and tells its players
        for entity in in_flight {
            effects.commands.entity(entity).try_despawn();
        }
        return;
    }
    let drain = effects.state.drain.as_mut().expect("draining");
    if in_flight.is_empty() && !drain.finished {
        drain.finished = true;
        info!(
            "matchmaking: drained: {} matches committed, {} rolled back",
            effects.stats.matches_committed, effects.stats.matches_rolled_back
        );
        finished.write(AtomicDrainFinished {
            matches_committed: effects.stats.matches_committed,
            matches_rolled_back: effects.stats.matches_rolled_back,
        });
    }
}

impl MatchEffects<'_, '_> {
    /// Tells every player not in a forming match, once per session, that the server is
    /// closing; a queued player's ticket goes first.
    fn tell_closing(&mut self) {
        let closing = AtomicServerMessage::ServerClosing {
            retry_elsewhere: true,
        };
        for (player, session, location) in self.state.settled_players() {
            let drain = self.state.drain.as_mut().expect("draining");
            if !drain.told.insert(session) {
                continue;
            }
            if location == AtomicPlayerLocation::Queued {
                let (queued, idle) = (AtomicPlayerLocation::Queued, AtomicPlayerLocation::Idle);
                if let Some(ticket) = self.state.queue.remove(&player) {
                    self.stats.sync_queued(&self.state.queue, &ticket.category);
                }
                let _ = self.state.move_player(player, session, queued, idle);
            }
            self.link.send(player, &closing);
        }
    }
}
