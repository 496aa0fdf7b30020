//! The `PreUpdate` system: notices connects and disconnects, decodes relay messages and
//! feeds the clock and the machine, one handler per relay message.

use std::time::Duration;

use bevy::prelude::*;
use bevy_renet::RenetClient;

use crate::negotiated::channel::NegotiatedChannel;
use crate::negotiated::core::clock::as_us;
use crate::negotiated::core::fact::{NegotiatedFact, NegotiatedFactId};
use crate::negotiated::core::frame::NegotiatedFrames;
use crate::negotiated::core::machine::{NegotiatedMachine, NegotiatedMachineConfig};
use crate::negotiated::core::protocol::{
    NEGOTIATED_PROTOCOL_VERSION, NegotiatedClientMessage, NegotiatedErrorKind,
    NegotiatedRelayMessage,
};
use crate::shared::codec::{self, CodecError};
use crate::shared::player::PlayerId;

use super::NegotiatedClientSettings;
use super::messages::{NegotiatedClientError, NegotiatedConnected, NegotiatedRelayClosing};
use super::session::{NegotiatedSession, SessionContext, send};
use crate::shared::connect::describe_own_config;
use crate::shared::connection_config::hello_fingerprint;

/// Says hello on connect, notes a lost connection, and handles every relay message.
pub(super) fn receive_messages(mut context: SessionContext) {
    let local = context.local_now();
    let session = &mut *context.session;
    let Some(client) = context.client.as_mut().filter(|c| c.is_connected()) else {
        let ours = describe_own_config(context.channel.id, context.config.as_deref());
        let by_game = context.closed_by_game.is_some();
        session.lose_connection(context.client.as_deref(), ours, by_game);
        return;
    };
    if !session.connected {
        let fingerprint = hello_fingerprint(context.config.as_deref());
        greet_relay(client, &context.channel, session, local, fingerprint);
    }
    // time first: what expired by now ends before this batch of messages is judged
    if let Some(now) = session.relay_now(local) {
        session.run_machine(|machine| {
            if machine.is_online() {
                machine.pass_time(now)
            } else {
                Vec::new()
            }
        });
    }
    while let Some(bytes) = client.receive_message(context.channel.id) {
        match decode_relay_message(&bytes) {
            Ok(message) => handle_relay_message(session, &context.settings, message, local),
            Err(error) => session.errors.push(error),
        }
    }
}

/// A new connection: say hello and ask for the time at once.
fn greet_relay(
    client: &mut RenetClient,
    channel: &NegotiatedChannel,
    session: &mut NegotiatedSession,
    local: Duration,
    config_fingerprint: u64,
) {
    session.connected = true;
    let hello = NegotiatedClientMessage::Hello {
        protocol_version: NEGOTIATED_PROTOCOL_VERSION,
        config_fingerprint,
    };
    send(client, channel, &hello);
    send(client, channel, &session.time_request(local));
}

/// Decodes one relay message, or says why it could not.
fn decode_relay_message(bytes: &[u8]) -> Result<NegotiatedRelayMessage, NegotiatedClientError> {
    codec::decode::<NegotiatedRelayMessage>(bytes).map_err(|err| {
        let kind = match err {
            CodecError::TooLarge { .. } => NegotiatedErrorKind::TooLarge,
            _ => NegotiatedErrorKind::Malformed,
        };
        NegotiatedClientError::new(kind, format!("undecodable message from the relay: {err}"))
    })
}

/// Hands one relay message to its handler.
fn handle_relay_message(
    session: &mut NegotiatedSession,
    settings: &NegotiatedClientSettings,
    message: NegotiatedRelayMessage,
    local: Duration,
) {
    let relay_now = session.relay_now(local);
    match message {
        NegotiatedRelayMessage::Welcome {
            protocol_version,
            client_id,
            frame_duration_us,
        } => on_welcome(
            session,
            settings,
            protocol_version,
            client_id,
            frame_duration_us,
            relay_now,
        ),
        NegotiatedRelayMessage::Time {
            client_sent_us,
            relay_received_us,
            relay_sent_us,
        } => on_time(
            session,
            client_sent_us,
            relay_received_us,
            relay_sent_us,
            local,
        ),
        NegotiatedRelayMessage::Fact { author, fact } => on_fact(session, author, fact),
        NegotiatedRelayMessage::Departed { author } => on_departed(session, author),
        NegotiatedRelayMessage::Synced { category, frame } => on_synced(session, &category, frame),
        NegotiatedRelayMessage::Stored { fact } => on_stored(session, fact),
        NegotiatedRelayMessage::Refused {
            fact,
            kind,
            message,
        } => on_refused(session, fact, kind, message),
        NegotiatedRelayMessage::RelayClosing { retry_elsewhere } => {
            on_relay_closing(session, retry_elsewhere);
        }
        NegotiatedRelayMessage::Error { kind, message } => on_relay_error(session, kind, message),
    }
}

/// The relay welcomed us: (re)start the machine for this id and frame grid, carrying a
/// search over, and bring it online if the clock is known.
fn on_welcome(
    session: &mut NegotiatedSession,
    settings: &NegotiatedClientSettings,
    protocol_version: u32,
    client_id: PlayerId,
    frame_duration_us: u64,
    relay_now: Option<Duration>,
) {
    if protocol_version != NEGOTIATED_PROTOCOL_VERSION {
        session.errors.push(NegotiatedClientError::new(
            NegotiatedErrorKind::VersionMismatch,
            format!(
                "relay speaks negotiated protocol {protocol_version}, we speak {NEGOTIATED_PROTOCOL_VERSION}"
            ),
        ));
        return;
    }
    let frames = NegotiatedFrames::new(Duration::from_micros(frame_duration_us));
    let config = NegotiatedMachineConfig {
        me: client_id,
        frames,
        bid_timeout: settings.bid_timeout,
        seed: settings.seed.unwrap_or_else(|| fastrand::u64(..)),
    };
    let same_grid = session
        .machine
        .as_ref()
        .is_some_and(|m| m.config().me == client_id && m.config().frames == frames);
    if !same_grid {
        replace_machine(session, config, relay_now);
    }
    session.welcomed = true;
    session.client_id = Some(client_id);
    session.connected_events.push(NegotiatedConnected {
        client_id,
        frame_duration: frames.duration(),
    });
    if let Some(now) = relay_now {
        session.go_online(now);
    }
}

/// A new machine, searching again in the category the old one (or the game, before the
/// welcome) was searching in.
fn replace_machine(
    session: &mut NegotiatedSession,
    config: NegotiatedMachineConfig,
    relay_now: Option<Duration>,
) {
    let mut machine = NegotiatedMachine::new(config);
    let carried = session
        .machine
        .take()
        .filter(|m| m.is_searching())
        .and_then(|m| m.category().map(str::to_owned))
        .or_else(|| session.intent.take());
    if let Some(category) = carried {
        let out = machine.search(&category, relay_now.unwrap_or_default());
        session.outbox.extend(out);
    }
    session.machine = Some(machine);
}

/// The relay's answer to a time request: a clock sample (received at local time
/// `local`); the machine goes online once the clock is known.
fn on_time(
    session: &mut NegotiatedSession,
    client_sent_us: u64,
    relay_received_us: u64,
    relay_sent_us: u64,
    local: Duration,
) {
    session.clock.record(
        client_sent_us,
        relay_received_us,
        relay_sent_us,
        as_us(local),
    );
    if let Some(now) = session.relay_now(local) {
        session.go_online(now);
    }
}

/// A fact: the machine reacts to it (decisions wait for the next tick).
fn on_fact(session: &mut NegotiatedSession, author: PlayerId, fact: NegotiatedFact) {
    session.run_machine(|machine| machine.ingest(author, fact));
}

/// A player's connection closed.
fn on_departed(session: &mut NegotiatedSession, author: PlayerId) {
    session.run_machine(|machine| machine.ingest_departed(author));
}

/// The relay sent everything it holds for a watched frame.
fn on_synced(session: &mut NegotiatedSession, category: &str, frame: u64) {
    if let Some(machine) = session.machine.as_mut() {
        machine.ingest_synced(category, frame);
    }
}

/// The relay stored a fact we posted.
fn on_stored(session: &mut NegotiatedSession, fact: NegotiatedFactId) {
    session.run_machine(|machine| machine.ingest_stored(fact));
}

/// The relay refused a fact we posted: the machine stops waiting on it, and a request
/// refused for its frame makes us ask for the relay's time again at once.
fn on_refused(
    session: &mut NegotiatedSession,
    fact: NegotiatedFactId,
    kind: NegotiatedErrorKind,
    message: String,
) {
    if kind == NegotiatedErrorKind::FrameOutOfRange {
        session.last_time_request = None;
    }
    session.run_machine(|machine| machine.ingest_refused(fact, kind));
    on_relay_error(session, kind, message);
}

/// The relay refused something we sent.
fn on_relay_error(session: &mut NegotiatedSession, kind: NegotiatedErrorKind, message: String) {
    warn!("negotiated relay refused a message ({kind:?}): {message}");
    if matches!(
        kind,
        NegotiatedErrorKind::VersionMismatch | NegotiatedErrorKind::ConfigMismatch
    ) {
        session.hello_refused = true;
    }
    session
        .errors
        .push(NegotiatedClientError::new(kind, message));
}

/// `RelayClosing`: the relay drains. Noted once per connection; the search goes on (an
/// accept under way may still complete) until the game reconnects elsewhere.
fn on_relay_closing(session: &mut NegotiatedSession, retry_elsewhere: bool) {
    if session.relay_closing {
        return;
    }
    warn!("negotiated relay is closing (retry elsewhere: {retry_elsewhere})");
    session.relay_closing = true;
    session
        .closing_events
        .push(NegotiatedRelayClosing { retry_elsewhere });
}
