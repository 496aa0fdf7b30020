//! Receiving: every message passes the connection gate, then goes to the handler of its
//! [`NegotiatedClientMessage`] variant.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use crate::negotiated::core::clock::as_us;
use crate::negotiated::core::fact::NegotiatedFact;
use crate::negotiated::core::protocol::{
    NEGOTIATED_PROTOCOL_VERSION, NegotiatedClientMessage, NegotiatedErrorKind,
    NegotiatedRelayMessage, bounded_error_text,
};
use crate::shared::connection_config::MatchmakingConnectionConfig;

use super::drain::refuse_while_draining;
use crate::shared::gate::{
    ConnectionGate, GateProtocol, GateReply, GatedService, MatchmakingGatePolicy, gate_protocol,
};
use crate::shared::player::PlayerId;

use super::NegotiatedRelayLink;
use super::settings::NegotiatedRelaySettings;
use super::state::NegotiatedRelayState;

gate_protocol!(
    NegotiatedClientMessage,
    NegotiatedErrorKind,
    GateProtocol {
        name: "negotiated",
        speaker: "relay",
        version: NEGOTIATED_PROTOCOL_VERSION,
    }
);

/// What the relay's receive system reads and writes.
#[derive(SystemParam)]
pub(super) struct Relay<'w> {
    link: NegotiatedRelayLink<'w>,
    settings: Res<'w, NegotiatedRelaySettings>,
    state: ResMut<'w, NegotiatedRelayState>,
}

/// Reads every connection's negotiated channel through the gate.
pub(super) fn receive_messages(
    time: Res<Time<Real>>,
    config: Option<Res<MatchmakingConnectionConfig>>,
    mut relay: Relay,
) {
    relay
        .state
        .gate
        .expect_config(config.map(|c| c.fingerprint));
    relay.receive_all(time.elapsed());
}

impl<'w> GatedService for Relay<'w> {
    type Message = NegotiatedClientMessage;
    type Transport = NegotiatedRelayLink<'w>;

    fn gate(&mut self) -> (&mut ConnectionGate, MatchmakingGatePolicy) {
        (&mut self.state.gate, self.settings.gate)
    }

    fn transport(&mut self) -> &mut NegotiatedRelayLink<'w> {
        &mut self.link
    }

    fn welcome(&mut self, client: PlayerId) {
        let frame_duration = self.state.core.frames().duration();
        self.send(
            client,
            &NegotiatedRelayMessage::Welcome {
                protocol_version: NEGOTIATED_PROTOCOL_VERSION,
                client_id: client,
                frame_duration_us: as_us(frame_duration),
            },
        );
    }

    fn reply(&mut self, client: PlayerId, reply: GateReply) {
        if let Some(warning) = reply.warning() {
            warn!("negotiated relay: client {client}: {warning}");
        }
        for error in &reply.errors {
            let message = bounded_error_text(error.message.clone());
            let kind = error.kind.into();
            self.send(client, &NegotiatedRelayMessage::Error { kind, message });
        }
        if reply.refused {
            self.state.refused(client);
        }
    }

    fn deliver(&mut self, client: PlayerId, message: NegotiatedClientMessage, elapsed: Duration) {
        let now = self.state.relay_time(elapsed);
        match message {
            // the gate answers every hello
            NegotiatedClientMessage::Hello { .. } => {}
            NegotiatedClientMessage::TimeRequest { client_sent_us } => {
                self.on_time_request(client, client_sent_us, now);
            }
            NegotiatedClientMessage::Subscribe { category, frames } => {
                self.on_subscribe(client, category, frames);
            }
            NegotiatedClientMessage::Unsubscribe => self.on_unsubscribe(client),
            NegotiatedClientMessage::Post { fact } => self.on_post(client, fact, now),
        }
    }
}

impl Relay<'_> {
    fn send(&mut self, to: PlayerId, message: &NegotiatedRelayMessage) {
        self.link.send(to, message);
    }

    /// [`NegotiatedClientMessage::TimeRequest`]: tells the relay's time.
    fn on_time_request(&mut self, client: PlayerId, client_sent_us: u64, now: Duration) {
        let relay_us = as_us(now);
        let time = NegotiatedRelayMessage::Time {
            client_sent_us,
            relay_received_us: relay_us,
            relay_sent_us: relay_us,
        };
        self.send(client, &time);
    }

    /// [`NegotiatedClientMessage::Subscribe`]: watches frames of a category, and gets
    /// their stored facts.
    fn on_subscribe(&mut self, client: PlayerId, category: String, frames: Vec<u64>) {
        let (category, frames) = match self.state.shared.as_mut() {
            Some(shared) => match shared.subscribe(client, category, frames) {
                Some(now) => now,
                None => return,
            },
            None => (category, frames),
        };
        match self.state.core.subscribe(client, category, frames) {
            Ok(out) => self.link.send_all(out),
            Err(refusal) => self.send(client, &refusal.to_message()),
        }
    }

    /// [`NegotiatedClientMessage::Unsubscribe`]: stops watching.
    fn on_unsubscribe(&mut self, client: PlayerId) {
        self.state.core.unsubscribe(client);
    }

    /// [`NegotiatedClientMessage::Post`]: stores a fact and forwards it, or refuses it;
    /// either way the poster gets the verdict.
    fn on_post(&mut self, client: PlayerId, fact: NegotiatedFact, now: Duration) {
        if let Some(refusal) = refuse_while_draining(&mut self.state, client, &fact) {
            self.send(client, &refusal);
            return;
        }
        if let Some(shared) = self.state.shared.as_mut() {
            shared.post(client, fact, now);
            return;
        }
        let out = self.state.core.post(client, fact, now);
        for (_, message) in &out {
            if let NegotiatedRelayMessage::Refused { kind, message, .. } = message {
                debug!("negotiated relay: refused a fact from {client} ({kind:?}): {message}");
            }
        }
        self.link.send_all(out);
    }
}
