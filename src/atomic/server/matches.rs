//! Matches: forming them from full queues, carrying out what their commit machines ask,
//! and committing or rolling them back.

use std::collections::HashMap;
use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use crate::atomic::core::commit::{
    AtomicCommitAction, AtomicCommitMachine, AtomicCommitOutcome, AtomicPlayerReport,
};
use crate::atomic::core::protocol::AtomicServerMessage;
use crate::atomic::core::queue::AtomicQueueTicket;
use crate::shared::player::PlayerId;

use super::components::{
    AtomicLobby, AtomicMatch, AtomicMatchCommitted, AtomicMatchOutcome, MatchLobby, cancel_reason,
};
use super::settings::{ActiveSettings, AtomicServerSettings, AtomicServerStats};
use super::state::{AtomicPlayerLocation, AtomicServerState};
use super::{AtomicServerLink, TransportClock};

/// A player a rollback put back in the queue, told its position once every rollback of
/// the frame is done (a later one may put an older ticket ahead of it).
#[derive(Debug, Clone)]
pub(super) struct Requeued {
    player: PlayerId,
    session: u64,
    category: String,
}

/// Everything forming and finishing matches writes to.
#[derive(SystemParam)]
pub(super) struct MatchEffects<'w, 's> {
    pub(super) link: AtomicServerLink<'w>,
    pub(super) state: ResMut<'w, AtomicServerState>,
    pub(super) stats: ResMut<'w, AtomicServerStats>,
    pub(super) lobbies: Query<'w, 's, &'static mut AtomicLobby>,
    outcomes: MessageWriter<'w, AtomicMatchOutcome>,
    committed: MessageWriter<'w, AtomicMatchCommitted>,
    pub(super) commands: Commands<'w, 's>,
    requeued: Local<'s, Vec<Requeued>>,
    unstamped: ResMut<'w, UnstampedPings>,
}

/// The matches that sent health pings this frame, for [`stamp_sent_pings`].
#[derive(Resource, Debug, Default)]
pub(super) struct UnstampedPings(Vec<Entity>);

/// Spawns a match entity for every full group in the queues.
pub(super) fn form_matches(
    settings: Res<ActiveSettings>,
    time: Res<Time<Real>>,
    mut effects: MatchEffects,
) {
    let now = time.elapsed();
    while let Some((category, tickets)) = effects.state.pop_ready_group() {
        effects.form(category, tickets, &settings.0, now);
    }
}

/// Polls every match's commit machine and carries out its actions.
pub(super) fn advance_matches(
    time: Res<Time<Real>>,
    mut matches: Query<(Entity, &mut AtomicMatch)>,
    mut effects: MatchEffects,
) {
    let now = time.elapsed();
    for (entity, mut m) in &mut matches {
        if m.machine.is_finished() {
            continue;
        }
        // a poll with nothing due only notes the time: not a change anyone reacts to
        let actions = m.bypass_change_detection().machine.poll(now);
        if actions.is_empty() {
            continue;
        }
        m.set_changed();
        for action in actions {
            effects.carry_out(entity, &mut m, action, now);
        }
    }
    effects.announce_requeues();
}

/// Stamps the health pings of the frame with the moment they really left: runs after the
/// transport sent the frame's packets.
pub(super) fn stamp_sent_pings(
    clock: TransportClock,
    mut unstamped: ResMut<UnstampedPings>,
    mut matches: Query<&mut AtomicMatch>,
) {
    let now = clock.now();
    for entity in unstamped.0.drain(..) {
        if let Ok(mut m) = matches.get_mut(entity)
            && m.machine.has_unstamped_pings()
        {
            m.machine.pings_sent(now);
        }
    }
}

impl MatchEffects<'_, '_> {
    /// Takes a group of tickets into a new match entity and tells its players.
    fn form(
        &mut self,
        category: String,
        tickets: Vec<AtomicQueueTicket<PlayerId>>,
        settings: &AtomicServerSettings,
        now: Duration,
    ) {
        self.stats.sync_queued(&self.state.queue, &category);
        let players: Vec<PlayerId> = tickets.iter().map(|t| t.player).collect();
        let (match_id, nonces) = self.state.new_match(players.len());
        for ticket in &tickets {
            // once per ticket: a re-queued player was sampled when first taken
            if self.state.first_take(ticket.player) {
                let waited = now.saturating_sub(ticket.enqueued_at);
                self.stats.time_in_queue.record(waited);
            }
        }
        let entity = self.commands.spawn_empty().id();
        let checking = AtomicServerMessage::MatchChecking {
            match_id,
            category: category.clone(),
            players: players.len() as u8,
        };
        let mut sessions = HashMap::new();
        for player in &players {
            if let Some(session) = self.state.enter_match(*player, entity) {
                sessions.insert(*player, session);
                self.link.send(*player, &checking);
            }
        }
        self.commands.entity(entity).insert(AtomicMatch {
            match_id,
            category: category.clone(),
            machine: AtomicCommitMachine::new(&players, &nonces, settings.commit),
            tickets,
            sessions,
            formed_at: now,
            lobby: None,
        });
        self.stats.matches_formed += 1;
        self.stats.matches_in_flight += 1;
        debug!("matchmaking: match {match_id} formed in {category}: {players:?}");
    }

    /// Does what the commit machine of the match `entity` asks.
    fn carry_out(
        &mut self,
        entity: Entity,
        m: &mut AtomicMatch,
        action: AtomicCommitAction<PlayerId>,
        now: Duration,
    ) {
        match action {
            AtomicCommitAction::Ping { player, nonce } => {
                if let Some(session) = self.session_in(m, player) {
                    self.state.note_ping(player, session, nonce);
                    self.link.send(player, &AtomicServerMessage::Ping { nonce });
                }
                self.unstamped.0.push(entity);
            }
            AtomicCommitAction::CreateLobby => self.create_lobby(m),
            AtomicCommitAction::Propose { player, attempt } => self.propose(m, player, attempt),
            AtomicCommitAction::Finish(outcome) => self.finish(entity, m, &outcome, now),
        }
    }

    /// The session a player of the match `m` is still connected in, if it is the one the
    /// match took (the match talks to no other).
    fn session_in(&self, m: &AtomicMatch, player: PlayerId) -> Option<u64> {
        let session = m.session(player)?;
        (self.state.session(player) == Some(session)).then_some(session)
    }

    /// Phase 2 begins: spawns the match's lobby with a fresh id and code.
    fn create_lobby(&mut self, m: &mut AtomicMatch) {
        let (lobby_id, code) = self.state.new_lobby();
        let members: Vec<PlayerId> = m.machine.players().collect();
        for (player, session) in &m.sessions {
            self.state
                .note_proposal(*player, *session, (m.match_id, lobby_id));
        }
        let lobby = self
            .commands
            .spawn(AtomicLobby {
                lobby_id,
                code: code.clone(),
                category: m.category.clone(),
                host: members[0],
                members,
                match_id: m.match_id,
                committed: false,
                sessions: m.sessions.clone(),
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
    fn propose(&mut self, m: &AtomicMatch, player: PlayerId, attempt: u32) {
        let lobby = m.lobby.as_ref().expect("lobby created before proposals");
        let proposed = AtomicServerMessage::MatchProposed {
            match_id: m.match_id,
            lobby_id: lobby.lobby_id,
            lobby_code: lobby.code.clone(),
            attempt,
        };
        if self.session_in(m, player).is_some() {
            self.link.send(player, &proposed);
        }
    }

    /// The match is over: commits or rolls back, reports the outcome, despawns the match.
    pub(super) fn finish(
        &mut self,
        entity: Entity,
        m: &AtomicMatch,
        outcome: &AtomicCommitOutcome<PlayerId>,
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
        // (already going away when the app despawned it)
        self.commands.entity(entity).try_despawn();
        self.stats.matches_in_flight = self.stats.matches_in_flight.saturating_sub(1);
    }

    /// Marks the lobby committed, moves every player still in the match into it, tells
    /// them the match is found and tells the server app.
    fn commit(
        &mut self,
        entity: Entity,
        m: &AtomicMatch,
        outcome: &AtomicCommitOutcome<PlayerId>,
        elapsed: Duration,
    ) {
        let lobby = m.lobby.as_ref().expect("committed matches have a lobby");
        if let Ok(mut l) = self.lobbies.get_mut(lobby.entity) {
            l.committed = true;
        }
        let players = outcome.matched_players();
        let found = AtomicServerMessage::MatchFound {
            match_id: m.match_id,
            lobby_id: lobby.lobby_id,
            lobby_code: lobby.code.clone(),
            category: m.category.clone(),
            players: players.clone(),
        };
        let (from, to) = (
            AtomicPlayerLocation::Matching(entity),
            AtomicPlayerLocation::InLobby(lobby.entity),
        );
        for report in &outcome.players {
            if let Some(session) = m.session(report.player)
                && self.state.move_player(report.player, session, from, to)
            {
                self.link.send(report.player, &found);
            }
        }
        self.stats.matches_committed += 1;
        self.stats.time_to_commit.record(elapsed);
        let ids: Vec<PlayerId> = players.iter().map(|p| p.player).collect();
        debug!(
            "matchmaking: match {} committed in {}: lobby {} {ids:?}",
            m.match_id, m.category, lobby.code
        );
        self.committed.write(AtomicMatchCommitted {
            match_id: m.match_id,
            lobby: lobby.entity,
            lobby_id: lobby.lobby_id,
            lobby_code: lobby.code.clone(),
            category: m.category.clone(),
            players,
        });
    }

    /// Deletes the lobby, puts the healthy players still in the match back at the front
    /// of their queue (by original enqueue time), moves the others out and tells each why
    /// the match was cancelled. Returns who was re-queued, in match order.
    fn roll_back(
        &mut self,
        entity: Entity,
        m: &AtomicMatch,
        outcome: &AtomicCommitOutcome<PlayerId>,
    ) -> Vec<PlayerId> {
        if let Some(lobby) = &m.lobby {
            // the removal observer frees the id, the code and the members (the app may
            // have despawned it already)
            self.commands.entity(lobby.entity).try_despawn();
        }
        // a draining server re-queues nobody: its players are told to go elsewhere
        let requeued = if self.state.is_draining() {
            Vec::new()
        } else {
            let requeued = self.requeue(entity, m, outcome.requeue());
            self.count_dropped(m, outcome, &requeued);
            requeued
        };
        self.stats.sync_queued(&self.state.queue, &m.category);
        let from = AtomicPlayerLocation::Matching(entity);
        for report in &outcome.players {
            let back = requeued.contains(&report.player);
            let idle = AtomicPlayerLocation::Idle;
            let session = m.session(report.player);
            if back || session.is_some_and(|s| self.state.move_player(report.player, s, from, idle))
            {
                self.cancelled(m, outcome, report, back);
            }
        }
        self.stats.rolled_back(&outcome.status, requeued.len());
        debug!(
            "matchmaking: match {} rolled back ({}), re-queued {:?}",
            m.match_id, outcome.status, requeued
        );
        requeued
    }

    /// Moves each of `players` that is still in the match `entity`, in the session it was
    /// taken in with, back to the front of its queue with its old ticket (the queue orders
    /// the front by original enqueue time). Returns them in match order.
    fn requeue(
        &mut self,
        entity: Entity,
        m: &AtomicMatch,
        players: Vec<PlayerId>,
    ) -> Vec<PlayerId> {
        let mut requeued = Vec::new();
        for player in players {
            if let (Some(ticket), Some(session)) = (m.ticket(player), m.session(player))
                && self.state.requeue(ticket.clone(), session, entity)
            {
                requeued.push(player);
                self.requeued.push(Requeued {
                    player,
                    session,
                    category: m.category.clone(),
                });
            }
        }
        requeued
    }

    /// Counts (and reports) every player the commit machine said to re-queue who is still
    /// connected in the session the match took but was not re-queued: a healthy player
    /// dropped, which must never happen.
    fn count_dropped(
        &mut self,
        m: &AtomicMatch,
        outcome: &AtomicCommitOutcome<PlayerId>,
        requeued: &[PlayerId],
    ) {
        for player in outcome.requeue() {
            let session = m.session(player);
            if requeued.contains(&player) || session.is_none() {
                continue;
            }
            if self.state.session(player) == session {
                self.stats.healthy_players_dropped += 1;
                error!(
                    "matchmaking: match {}: healthy player {player} was not re-queued ({:?})",
                    m.match_id,
                    self.state.location(player)
                );
                debug_assert!(
                    false,
                    "healthy player {player} dropped by match {}",
                    m.match_id
                );
            }
        }
    }

    /// Tells a player its match was cancelled (and whether it is back in the queue; its
    /// position follows once the frame's rollbacks are done).
    fn cancelled(
        &mut self,
        m: &AtomicMatch,
        outcome: &AtomicCommitOutcome<PlayerId>,
        report: &AtomicPlayerReport<PlayerId>,
        requeued: bool,
    ) {
        let max_latency = m.machine.timings().max_latency;
        let cancelled = AtomicServerMessage::MatchCancelled {
            match_id: m.match_id,
            status: outcome.status.clone(),
            reason: cancel_reason(&outcome.status, report, max_latency),
            requeued,
        };
        self.link.send(report.player, &cancelled);
    }

    /// Tells every player re-queued since the last call its position, now that the
    /// rollbacks that could move it are done.
    pub(super) fn announce_requeues(&mut self) {
        for r in std::mem::take(&mut *self.requeued) {
            if self.state.session(r.player) != Some(r.session) {
                continue;
            }
            let Some(position) = self.state.queue.position(&r.player) else {
                continue;
            };
            let joined = AtomicServerMessage::QueueJoined {
                category: r.category,
                position: position as u32,
                requeued: true,
            };
            self.link.send(r.player, &joined);
        }
    }
}
