//! The relay's state: its facts, subscriptions and connections.

use std::time::Duration;

use bevy::prelude::*;

use crate::negotiated::core::frame::NegotiatedFrames;
use crate::negotiated::core::relay_core::{NegotiatedRelayCore, NegotiatedRelayStats};
use crate::negotiated::core::store::NegotiatedFactStore;
use crate::shared::clock::unix_now;
use crate::shared::gate::ConnectionGate;
use crate::shared::player::PlayerId;

use super::settings::NegotiatedRelaySettings;
use super::shared::{NegotiatedSharedStatus, SharedLink};

/// The relay's facts, subscriptions and connections. Read it for inspection; the plugin's
/// systems are the only writers.
///
/// Reflects the relay clock's epoch and the count of refused connections; the store and
/// routing (read them with [`core`](Self::core)) and the connection gate are internal and
/// not reflected.
#[derive(Resource, Reflect, Debug)]
#[reflect(Resource, Debug)]
pub struct NegotiatedRelayState {
    #[reflect(ignore, default = "unreflected_core")]
    pub(super) core: NegotiatedRelayCore,
    /// Hello flags, strikes and refusals of every connection.
    #[reflect(ignore)]
    pub(super) gate: ConnectionGate,
    epoch: Duration,
    connections_refused: u64,
    /// The drain, once started.
    #[reflect(ignore)]
    pub(super) drain: Option<super::drain::RelayDrain>,
    /// The shared store, when the relay shares one.
    #[reflect(ignore)]
    pub(super) shared: Option<SharedLink>,
}

/// The core of a relay state made from a reflected value (which carries no facts): empty,
/// with the default settings' frames and limits.
fn unreflected_core() -> NegotiatedRelayCore {
    let settings = NegotiatedRelaySettings::default();
    NegotiatedRelayCore::with_limits(
        NegotiatedFrames::new(settings.frame_duration),
        settings.limits,
    )
}

impl NegotiatedRelayState {
    /// A relay's state at start; with a journal, what it holds is read back.
    ///
    /// # Panics
    /// If the journal cannot be read: starting with a partial store would break the
    /// verdicts given before the restart.
    pub(super) fn new(settings: &NegotiatedRelaySettings) -> Self {
        let epoch = settings.epoch.unwrap_or_else(unix_now);
        let mut core = NegotiatedRelayCore::with_limits(
            NegotiatedFrames::new(settings.frame_duration),
            settings.limits,
        );
        let shared = settings.shared.as_ref().map(|facts| {
            if settings.journal.is_some() {
                warn!("negotiated relay: a shared store is set: the journal is not used");
            }
            SharedLink::start(facts, core.frames(), core.limits())
        });
        if let Some(journal) = settings.journal.as_ref().filter(|_| shared.is_none()) {
            match core.restore(journal.clone(), epoch) {
                Ok(restored) => {
                    info!("negotiated relay: {restored} facts read back from the journal")
                }
                Err(why) => panic!(
                    "negotiated relay: the journal cannot be read ({why}); refusing to start with a partial store"
                ),
            }
        }
        Self {
            core,
            gate: ConnectionGate::default(),
            epoch,
            connections_refused: 0,
            drain: None,
            shared,
        }
    }

    /// Store and routing.
    pub fn core(&self) -> &NegotiatedRelayCore {
        &self.core
    }

    /// The stored facts.
    pub fn store(&self) -> &NegotiatedFactStore {
        self.core.store()
    }

    /// Counters.
    pub fn stats(&self) -> NegotiatedRelayStats {
        self.core.stats()
    }

    /// The frame grid.
    pub fn frames(&self) -> NegotiatedFrames {
        self.core.frames()
    }

    /// Relay time at this app time ([`Time<Real>`] elapsed).
    pub fn relay_time(&self, elapsed: Duration) -> Duration {
        self.epoch.saturating_add(elapsed)
    }

    /// The relay clock's epoch.
    pub fn epoch(&self) -> Duration {
        self.epoch
    }

    /// Whether the relay is draining ([`NegotiatedRelayDrain`](super::NegotiatedRelayDrain)).
    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Strikes of a connected client.
    pub fn strikes(&self, client: PlayerId) -> Option<u32> {
        self.gate.strikes(client)
    }

    /// Whether a connected client's hello was accepted.
    pub fn is_welcomed(&self, client: PlayerId) -> bool {
        self.gate.is_welcomed(client)
    }

    /// Connected clients.
    pub fn connected(&self) -> usize {
        self.gate.connected()
    }

    /// Connections closed for a version mismatch or abuse.
    pub fn connections_refused(&self) -> u64 {
        self.connections_refused
    }

    /// The shared store as this relay sees it, when it shares one
    /// ([`NegotiatedRelaySettings::shared`](super::NegotiatedRelaySettings::shared)).
    pub fn shared(&self) -> Option<&NegotiatedSharedStatus> {
        self.shared.as_ref().map(SharedLink::status)
    }

    /// Bookkeeping for a connection the gate just refused: counted, and it no longer
    /// watches any frame.
    pub(super) fn refused(&mut self, client: PlayerId) {
        self.connections_refused += 1;
        self.core.unsubscribe(client);
    }
}
