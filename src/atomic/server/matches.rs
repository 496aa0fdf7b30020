//! Matches: forming them from full queues, carrying out what their commit machines ask,
//! and committing or rolling them back.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use crate::atomic::core::commit::{CommitAction, CommitMachine, CommitOutcome, PlayerReport};
use crate::atomic::core::protocol::{MatchedPlayer, ServerMessage};
use crate::atomic::core::queue::QueueTicket;
use crate::shared::player::PlayerId;

use super::ServerLink;
use super::components::{
    MatchLobby, MatchmakingLobby, MatchmakingMatch, MatchmakingMatchCommitted, MatchmakingOutcome,
    cancel_reason,
};
use super::settings::{MatchmakingServerSettings, MatchmakingServerStats};
use super::state::{MatchmakingPlayerLocation, MatchmakingServerState};

/// Everything forming and finishing matches writes to.
#[derive(SystemParam)]
pub(super) struct MatchEffects<'w, 's> {
    link: ServerLink<'w>,
    state: ResMut<'w, MatchmakingServerState>,
    stats: ResMut<'w, MatchmakingServerStats>,
    lobbies: Query<'w, 's, &'static mut MatchmakingLobby>,
    outcomes: MessageWriter<'w, MatchmakingOutcome>,
    committed: MessageWriter<'w, MatchmakingMatchCommitted>,
    commands: Commands<'w, 's>,
}

/// Spawns a match entity for every full group in the queues.
pub(super) fn form_matches(
    settings: Res<MatchmakingServerSettings>,
    time: Res<Time<Real>>,
    mut effects: MatchEffects,
) {
    let now = time.elapsed();
    while let Some((category, tickets)) = effects.state.pop_ready_group() {
        effects.form(category, tickets, &settings, now);
    }
}

/// Polls every match's commit machine and carries out its actions.
pub(super) fn advance_matches(
    time: Res<Time<Real>>,
    mut matches: Query<(Entity, &mut MatchmakingMatch)>,
    mut effects: MatchEffects,
) {
    let now = time.elapsed();
    for (entity, mut m) in &mut matches {
        if m.machine.is_finished() {
            continue;
        }
        for action in m.machine.poll(now) {
            effects.carry_out(entity, &mut m, action, now);
        }
    }
}

impl MatchEffects<'_, '_> {
    /// Takes a group of tickets into a new match entity and tells its players.
    fn form(
        &mut self,
        category: String,
        tickets: Vec<QueueTicket<PlayerId>>,
        settings: &MatchmakingServerSettings,
        now: Duration,
    ) {
        self.stats.sync_queued(&self.state.queue, &category);
        let players: Vec<PlayerId> = tickets.iter().map(|t| t.player).collect();
        let (match_id, nonces) = self.state.new_match(players.len());
        for ticket in &tickets {
            let waited = now.saturating_sub(ticket.enqueued_at);
            self.stats.time_in_queue.record(waited);
        }
        let entity = self
            .commands
            .spawn(MatchmakingMatch {
                match_id,
                category: category.clone(),
                machine: CommitMachine::new(&players, &nonces, settings.timings()),
                tickets,
                formed_at: now,
                lobby: None,
            })
            .id();
        let checking = ServerMessage::MatchChecking {
            match_id,
            category: category.clone(),
            players: players.len() as u8,
        };
        for player in &players {
            if self.state.enter_match(*player, entity, match_id) {
                self.link.send(*player, &checking);
            }
        }
        self.stats.matches_formed += 1;
        self.stats.matches_in_flight += 1;
        debug!("matchmaking: match {match_id} formed in {category}: {players:?}");
    }

    /// Does what the commit machine of the match `entity` asks.
    fn carry_out(
        &mut self,
        entity: Entity,
        m: &mut MatchmakingMatch,
        action: CommitAction<PlayerId>,
        now: Duration,
    ) {
        match action {
            CommitAction::Ping { player, nonce } => {
                self.link.send(player, &ServerMessage::Ping { nonce });
            }
            CommitAction::CreateLobby => self.create_lobby(m),
            CommitAction::Propose { player, attempt } => self.propose(m, player, attempt),
            CommitAction::Finish(outcome) => self.finish(entity, m, &outcome, now),
        }
    }

    /// Phase 2 begins: spawns the match's lobby with a fresh id and code.
    fn create_lobby(&mut self, m: &mut MatchmakingMatch) {
        let (lobby_id, code) = self.state.new_lobby();
        let members: Vec<PlayerId> = m.machine.players().collect();
        let lobby = self
            .commands
            .spawn(MatchmakingLobby {
                lobby_id,
                code: code.clone(),
                category: m.category.clone(),
                host: members[0],
                members,
                match_id: m.match_id,
                committed: false,
            })
            .id();
        self.state.open_lobby(lobby_id, lobby);
        self.stats.lobbies_open += 1;
        m.lobby = Some(MatchLobby {
            entity: lobby,
            lobby_id,
            code,
        });
    }

    /// Sends (or resends) the proposal to a player.
    fn propose(&mut self, m: &MatchmakingMatch, player: PlayerId, attempt: u32) {
        let lobby = m.lobby.as_ref().expect("lobby created before proposals");
        let proposed = ServerMessage::MatchProposed {
            match_id: m.match_id,
            lobby_id: lobby.lobby_id,
            lobby_code: lobby.code.clone(),
            attempt,
        };
        self.link.send(player, &proposed);
    }

    /// The match is over: commits or rolls back, reports the outcome, despawns the match.
    fn finish(
        &mut self,
        entity: Entity,
        m: &MatchmakingMatch,
        outcome: &CommitOutcome<PlayerId>,
        now: Duration,
    ) {
        let elapsed = now.saturating_sub(m.formed_at);
        let requeued = if outcome.status.is_success() {
            self.commit(entity, m, outcome, elapsed);
            Vec::new()
        } else {
            self.roll_back(entity, m, outcome)
        };
        self.outcomes.write(m.outcome(outcome, requeued, elapsed));
        self.commands.entity(entity).despawn();
        self.stats.matches_in_flight = self.stats.matches_in_flight.saturating_sub(1);
    }

    /// Marks the lobby committed, moves every player still in the match into it, tells
    /// them the match is found and tells the server app.
    fn commit(
        &mut self,
        entity: Entity,
        m: &MatchmakingMatch,
        outcome: &CommitOutcome<PlayerId>,
        elapsed: Duration,
    ) {
        let lobby = m.lobby.as_ref().expect("committed matches have a lobby");
        if let Ok(mut l) = self.lobbies.get_mut(lobby.entity) {
            l.committed = true;
        }
        let players = matched_players(outcome);
        let found = ServerMessage::MatchFound {
            match_id: m.match_id,
            lobby_id: lobby.lobby_id,
            lobby_code: lobby.code.clone(),
            category: m.category.clone(),
            players: players.clone(),
        };
        let (from, to) = (
            MatchmakingPlayerLocation::Matching(entity),
            MatchmakingPlayerLocation::InLobby(lobby.entity),
        );
        for report in &outcome.players {
            if self.state.move_player(report.player, from, to) {
                self.link.send(report.player, &found);
            }
        }
        self.stats.matches_committed += 1;
        self.stats.time_to_commit.record(elapsed);
        let ids: Vec<PlayerId> = players.iter().map(|p| p.player).collect();
        info!(
            "matchmaking: match {} committed in {}: lobby {} {ids:?}",
            m.match_id, m.category, lobby.code
        );
        self.committed.write(MatchmakingMatchCommitted {
            match_id: m.match_id,
            lobby: lobby.entity,
            lobby_id: lobby.lobby_id,
            lobby_code: lobby.code.clone(),
            category: m.category.clone(),
            players,
        });
    }

    /// Deletes the lobby, puts the healthy players still in the match back at the front
    /// of their queue (in match order), moves the others out and tells each why the
    /// match was cancelled. Returns who was re-queued.
    fn roll_back(
        &mut self,
        entity: Entity,
        m: &MatchmakingMatch,
        outcome: &CommitOutcome<PlayerId>,
    ) -> Vec<PlayerId> {
        if let Some(lobby) = &m.lobby {
            // the removal observer frees the id, the code and the members
            self.commands.entity(lobby.entity).despawn();
        }
        let requeued = self.requeue(entity, m, outcome.requeue());
        self.stats.sync_queued(&self.state.queue, &m.category);
        let from = MatchmakingPlayerLocation::Matching(entity);
        for report in &outcome.players {
            let position = requeued.iter().position(|p| *p == report.player);
            let idle = MatchmakingPlayerLocation::Idle;
            if position.is_some() || self.state.move_player(report.player, from, idle) {
                self.cancelled(m, outcome, report, position);
            }
        }
        self.stats.rolled_back(&outcome.status, requeued.len());
        info!(
            "matchmaking: match {} rolled back ({}), re-queued {:?}",
            m.match_id, outcome.status, requeued
        );
        requeued
    }

    /// Moves each of `players` (in match order) that is still in the match `entity` back
    /// to the front of its queue with its old ticket. Returns them in match order.
    fn requeue(
        &mut self,
        entity: Entity,
        m: &MatchmakingMatch,
        players: Vec<PlayerId>,
    ) -> Vec<PlayerId> {
        let mut requeued = Vec::new();
        // in reverse, so that the front of the queue keeps the match order
        for player in players.into_iter().rev() {
            if let Some(ticket) = m.ticket(player)
                && self.state.requeue(ticket.clone(), entity)
            {
                requeued.insert(0, player);
            }
        }
        requeued
    }

    /// Tells a player its match was cancelled and, if it was re-queued, where it stands.
    fn cancelled(
        &mut self,
        m: &MatchmakingMatch,
        outcome: &CommitOutcome<PlayerId>,
        report: &PlayerReport<PlayerId>,
        position: Option<usize>,
    ) {
        let max_latency = m.machine.timings().max_latency;
        let cancelled = ServerMessage::MatchCancelled {
            match_id: m.match_id,
            status: outcome.status.clone(),
            reason: cancel_reason(&outcome.status, report, max_latency),
            requeued: position.is_some(),
        };
        self.link.send(report.player, &cancelled);
        if let Some(i) = position {
            let joined = ServerMessage::QueueJoined {
                category: m.category.clone(),
                position: i as u32 + 1,
                requeued: true,
            };
            self.link.send(report.player, &joined);
        }
    }
}

/// The players of a committed match in match order with their latency (the first hosts).
fn matched_players(outcome: &CommitOutcome<PlayerId>) -> Vec<MatchedPlayer> {
    outcome
        .players
        .iter()
        .enumerate()
        .map(|(i, r)| MatchedPlayer {
            player: r.player,
            latency: r.health.latency().unwrap_or_default(),
            host: i == 0,
        })
        .collect()
}
