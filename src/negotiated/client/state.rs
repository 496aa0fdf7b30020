//! What the game reads: [`NegotiatedClientState`] and [`NegotiatedClientStatus`].

use std::time::Duration;

use bevy::prelude::*;

use crate::negotiated::core::fact::NegotiatedFactId;
use crate::negotiated::core::machine::NegotiatedPhase;
use crate::shared::player::PlayerId;

use super::messages::{NegotiatedClientError, NegotiatedMatchFound};
use super::session::NegotiatedSession;

/// Where the client stands; drive the UI from it.
#[derive(States, Reflect, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[reflect(Debug, Clone, PartialEq, Hash, Default)]
pub enum NegotiatedClientState {
    /// No connection to the relay.
    #[default]
    Disconnected,
    /// Connected; waiting for the welcome and the first clock estimate.
    Syncing,
    /// Ready, not searching.
    Idle,
    /// The relay said it is closing (draining): reconnect to another relay. A match that
    /// completes meanwhile is still `Matched`.
    RelayClosing,
    /// Searching: reading the current frames.
    Looking,
    /// Our request is open, waiting for a bid.
    Requesting,
    /// Our bid waits for the requester's answer.
    Bidding,
    /// Paired (see [`NegotiatedClientStatus::found`]).
    Matched,
}

/// Details behind [`NegotiatedClientState`].
#[derive(Resource, Reflect, Debug, Clone, Default)]
#[reflect(Resource, Debug, Clone, Default)]
pub struct NegotiatedClientStatus {
    /// The id the relay stamps on our facts, once welcomed.
    pub client_id: Option<PlayerId>,
    /// The relay's frame duration, once welcomed.
    pub frame_duration: Option<Duration>,
    /// Estimated offset from our clock to the relay's, in microseconds.
    pub clock_offset_us: Option<i64>,
    /// Round trip of the trusted clock sample.
    pub round_trip: Option<Duration>,
    /// Relay time as of this frame, once the clock is estimated.
    pub relay_time: Option<Duration>,
    /// The category searched in.
    pub category: Option<String>,
    /// Our open request.
    pub request: Option<NegotiatedFactId>,
    /// Our bid waiting for an answer.
    pub bid: Option<NegotiatedFactId>,
    /// The last match.
    pub found: Option<NegotiatedMatchFound>,
    /// How many times the search went back to looking.
    pub restarts: u32,
    /// The last error.
    pub last_error: Option<NegotiatedClientError>,
}

impl NegotiatedClientStatus {
    /// Notes our open request and our bid waiting for an answer (at most one is set).
    pub(super) fn set_pending(
        &mut self,
        request: Option<NegotiatedFactId>,
        bid: Option<NegotiatedFactId>,
    ) {
        self.request = request;
        self.bid = bid;
    }

    /// Copies the connection details (id, frame grid, clock) from the session, as of
    /// local time `local`.
    pub(super) fn refresh(&mut self, session: &NegotiatedSession, local: Duration) {
        self.client_id = session.client_id;
        self.frame_duration = session
            .machine
            .as_ref()
            .map(|m| m.config().frames.duration());
        let best = session.clock.best();
        self.clock_offset_us = best.map(|s| s.offset_us);
        self.round_trip = best.map(|s| Duration::from_micros(s.round_trip_us));
        self.relay_time = session.relay_now(local);
    }
}

/// The state the session is in.
pub(super) fn client_state(session: &NegotiatedSession) -> NegotiatedClientState {
    match session.machine.as_ref() {
        _ if !session.connected => NegotiatedClientState::Disconnected,
        Some(machine) if session.welcomed && machine.is_online() => {
            match phase_state(machine.phase()) {
                NegotiatedClientState::Matched => NegotiatedClientState::Matched,
                _ if session.relay_closing => NegotiatedClientState::RelayClosing,
                state => state,
            }
        }
        _ => NegotiatedClientState::Syncing,
    }
}

/// The state of an online machine in this phase.
fn phase_state(phase: &NegotiatedPhase) -> NegotiatedClientState {
    match phase {
        NegotiatedPhase::Idle => NegotiatedClientState::Idle,
        NegotiatedPhase::Looking => NegotiatedClientState::Looking,
        NegotiatedPhase::Requesting { .. } | NegotiatedPhase::Accepting { .. } => {
            NegotiatedClientState::Requesting
        }
        NegotiatedPhase::Bidding { .. } | NegotiatedPhase::Withdrawing { .. } => {
            NegotiatedClientState::Bidding
        }
        NegotiatedPhase::Matched(_) => NegotiatedClientState::Matched,
    }
}
