//! The relay of negotiated matchmaking: [`NegotiatedRelayPlugin`].
//!
//! It stores facts by frame, forwards them along the seed's pivots (see
//! [`relay_core`](super::core::relay_core)), drops frames older than two frame durations and answers
//! time requests. It does no matchmaking: whether a fact's author was entitled to it is
//! for clients to judge. It stamps every fact with the connection that sent it.

use std::collections::HashMap;
use std::time::Duration;

use bevy::prelude::*;
use bevy_renet::renet::ServerEvent;
use bevy_renet::{RenetReceive, RenetServer, RenetServerEvent, RenetServerPlugin};

use crate::shared::clock::unix_now;
use crate::shared::codec::{self, CodecError};
use crate::shared::guard::{StrikeGuard, StrikeVerdict};
use crate::shared::player::PlayerId;

use super::channel::NegotiatedChannel;
use super::core::clock::as_us;
use super::core::frame::NegotiatedFrames;
use super::core::protocol::{
    NEGOTIATED_PROTOCOL_VERSION, NegotiatedClientMessage, NegotiatedErrorKind,
    NegotiatedRelayMessage, bounded_error_text,
};
use super::core::relay_core::{NegotiatedOutbox, NegotiatedRelayCore, NegotiatedRelayStats};
use super::core::store::NegotiatedFactStore;

/// Relay settings. The frame duration and the epoch are read when the plugin is built
/// (clients learn the frame duration from the welcome); the other fields may change at
/// run time.
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedRelaySettings {
    /// Length of one frame of the rolling queue: requests expire one to two frames after
    /// they were posted (the seed's example: 15 minutes). Default 60 s.
    pub frame_duration: Duration,
    /// Most facts one connection may post into one frame.
    pub max_facts_per_frame: usize,
    /// Bad messages (undecodable, oversized, before hello) a connection may send before
    /// it is disconnected.
    pub max_strikes: u32,
    /// How long a refused connection stays open so that the error reaches it.
    pub disconnect_grace: Duration,
    /// Relay time = epoch + time since the app started. `None`: the Unix time when the
    /// plugin was built, so relay time is wall-clock time and frames survive restarts.
    /// Tests set a fixed epoch.
    pub epoch: Option<Duration>,
}

impl Default for NegotiatedRelaySettings {
    fn default() -> Self {
        Self {
            frame_duration: Duration::from_secs(60),
            max_facts_per_frame: 256,
            max_strikes: 3,
            disconnect_grace: Duration::from_millis(250),
            epoch: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct RelayConnection {
    hello: bool,
}

/// The relay's facts, subscriptions and connections. Read it for inspection; the plugin's
/// systems are the only writers.
#[derive(Resource, Debug)]
pub struct NegotiatedRelayState {
    core: NegotiatedRelayCore,
    connections: HashMap<PlayerId, RelayConnection>,
    guard: StrikeGuard,
    epoch: Duration,
    connections_refused: u64,
}

impl NegotiatedRelayState {
    fn new(settings: &NegotiatedRelaySettings) -> Self {
        Self {
            core: NegotiatedRelayCore::new(
                NegotiatedFrames::new(settings.frame_duration),
                settings.max_facts_per_frame,
            ),
            connections: HashMap::new(),
            guard: StrikeGuard::default(),
            epoch: settings.epoch.unwrap_or_else(unix_now),
            connections_refused: 0,
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
        self.epoch + elapsed
    }

    /// The relay clock's epoch.
    pub fn epoch(&self) -> Duration {
        self.epoch
    }

    /// Strikes of a connected client.
    pub fn strikes(&self, client: PlayerId) -> Option<u32> {
        self.connections
            .contains_key(&client)
            .then(|| self.guard.strikes(client))
    }

    /// Whether a connected client's hello was accepted.
    pub fn is_welcomed(&self, client: PlayerId) -> bool {
        self.connections.get(&client).is_some_and(|c| c.hello)
    }

    /// Connected clients.
    pub fn connected(&self) -> usize {
        self.connections.len()
    }

    /// Connections closed for a version mismatch or abuse.
    pub fn connections_refused(&self) -> u64 {
        self.connections_refused
    }
}

/// System sets of the relay plugin.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiatedRelaySystems {
    /// `PreUpdate`, after [`RenetReceive`]: decodes client messages, answers time
    /// requests, stores and forwards facts.
    Receive,
    /// `Update`: applies settings, drops expired frames, closes refused connections.
    Maintain,
}

/// The relay of negotiated matchmaking.
///
/// Needs a [`RenetServer`] resource whose connection config includes the
/// [`NegotiatedChannel`]. Adds bevy_renet's [`RenetServerPlugin`] if the app has not.
#[derive(Debug, Clone, Default)]
pub struct NegotiatedRelayPlugin {
    /// The channel carrying negotiated messages.
    pub channel: NegotiatedChannel,
    /// Initial settings (kept if the app inserted its own resource first).
    pub settings: NegotiatedRelaySettings,
}

impl Plugin for NegotiatedRelayPlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<RenetServerPlugin>() {
            app.add_plugins(RenetServerPlugin);
        }
        if !app.world().contains_resource::<NegotiatedRelaySettings>() {
            app.insert_resource(self.settings.clone());
        }
        let state = NegotiatedRelayState::new(app.world().resource::<NegotiatedRelaySettings>());
        app.insert_resource(self.channel)
            .insert_resource(state)
            .configure_sets(
                PreUpdate,
                NegotiatedRelaySystems::Receive.after(RenetReceive),
            )
            .add_observer(on_server_event)
            .add_systems(
                PreUpdate,
                receive_messages
                    .in_set(NegotiatedRelaySystems::Receive)
                    .run_if(resource_exists::<RenetServer>),
            )
            .add_systems(
                Update,
                (apply_settings, expire_frames, close_refused_connections)
                    .chain()
                    .in_set(NegotiatedRelaySystems::Maintain)
                    .run_if(resource_exists::<RenetServer>),
            );
    }
}

fn on_server_event(
    event: On<RenetServerEvent>,
    mut state: ResMut<NegotiatedRelayState>,
    server: Option<ResMut<RenetServer>>,
    channel: Res<NegotiatedChannel>,
) {
    match event.event().0 {
        ServerEvent::ClientConnected { client_id } => {
            state
                .connections
                .insert(client_id, RelayConnection::default());
            state.core.connect(client_id);
        }
        ServerEvent::ClientDisconnected { client_id, reason } => {
            debug!("negotiated relay: client {client_id} disconnected ({reason})");
            state.connections.remove(&client_id);
            state.guard.forget(client_id);
            let out = state.core.disconnect(client_id);
            if let Some(mut server) = server {
                send_all(&mut server, &channel, out);
            }
        }
    }
}

fn send(
    server: &mut RenetServer,
    channel: &NegotiatedChannel,
    to: PlayerId,
    msg: &NegotiatedRelayMessage,
) {
    if server.is_connected(to) {
        server.send_message(to, channel.id, codec::encode(msg));
    }
}

fn send_all(server: &mut RenetServer, channel: &NegotiatedChannel, out: NegotiatedOutbox) {
    for (to, msg) in out {
        send(server, channel, to, &msg);
    }
}

fn receive_messages(
    mut server: ResMut<RenetServer>,
    channel: Res<NegotiatedChannel>,
    settings: Res<NegotiatedRelaySettings>,
    time: Res<Time<Real>>,
    mut state: ResMut<NegotiatedRelayState>,
) {
    let elapsed = time.elapsed();
    let now = state.relay_time(elapsed);
    let state = &mut *state;
    for client in server.clients_id() {
        while let Some(bytes) = server.receive_message(client, channel.id) {
            let Some(connection) = state.connections.get(&client) else {
                break;
            };
            if state.guard.is_refused(client) {
                continue;
            }
            let hello = connection.hello;
            let message = match codec::decode::<NegotiatedClientMessage>(&bytes) {
                Ok(message) => message,
                Err(err) => {
                    let kind = match err {
                        CodecError::TooLarge { .. } => NegotiatedErrorKind::TooLarge,
                        _ => NegotiatedErrorKind::Malformed,
                    };
                    strike(
                        state,
                        &settings,
                        &mut server,
                        &channel,
                        client,
                        kind,
                        err.to_string(),
                        elapsed,
                    );
                    continue;
                }
            };
            match message {
                NegotiatedClientMessage::Hello { protocol_version } => {
                    if hello {
                        send_error(
                            &mut server,
                            &channel,
                            client,
                            NegotiatedErrorKind::Unexpected,
                            "hello was already accepted",
                        );
                    } else if protocol_version != NEGOTIATED_PROTOCOL_VERSION {
                        send_error(
                            &mut server,
                            &channel,
                            client,
                            NegotiatedErrorKind::VersionMismatch,
                            format!(
                                "client speaks negotiated protocol {protocol_version}, relay speaks {NEGOTIATED_PROTOCOL_VERSION}; update the game"
                            ),
                        );
                        refuse(state, &settings, client, elapsed);
                    } else {
                        state.connections.get_mut(&client).expect("checked").hello = true;
                        send(
                            &mut server,
                            &channel,
                            client,
                            &NegotiatedRelayMessage::Welcome {
                                protocol_version: NEGOTIATED_PROTOCOL_VERSION,
                                client_id: client,
                                frame_duration_us: as_us(state.core.frames().duration()),
                            },
                        );
                    }
                }
                _ if !hello => {
                    strike(
                        state,
                        &settings,
                        &mut server,
                        &channel,
                        client,
                        NegotiatedErrorKind::HelloRequired,
                        "send Hello with the protocol version first".into(),
                        elapsed,
                    );
                }
                NegotiatedClientMessage::TimeRequest { client_sent_us } => {
                    let relay_us = as_us(now);
                    send(
                        &mut server,
                        &channel,
                        client,
                        &NegotiatedRelayMessage::Time {
                            client_sent_us,
                            relay_received_us: relay_us,
                            relay_sent_us: relay_us,
                        },
                    );
                }
                NegotiatedClientMessage::Subscribe { category, frames } => {
                    match state.core.subscribe(client, category, frames) {
                        Ok(out) => send_all(&mut server, &channel, out),
                        Err(refusal) => send(&mut server, &channel, client, &refusal.to_message()),
                    }
                }
                NegotiatedClientMessage::Unsubscribe => state.core.unsubscribe(client),
                NegotiatedClientMessage::Post { fact } => {
                    match state.core.post(client, fact, now) {
                        Ok(out) => send_all(&mut server, &channel, out),
                        Err(refusal) => {
                            debug!(
                                "negotiated relay: refused a fact from {client}: {}",
                                refusal.message
                            );
                            send(&mut server, &channel, client, &refusal.to_message());
                        }
                    }
                }
            }
        }
    }
}

fn send_error(
    server: &mut RenetServer,
    channel: &NegotiatedChannel,
    to: PlayerId,
    kind: NegotiatedErrorKind,
    message: impl Into<String>,
) {
    send(
        server,
        channel,
        to,
        &NegotiatedRelayMessage::Error {
            kind,
            message: bounded_error_text(message.into()),
        },
    );
}

fn strike(
    state: &mut NegotiatedRelayState,
    settings: &NegotiatedRelaySettings,
    server: &mut RenetServer,
    channel: &NegotiatedChannel,
    client: PlayerId,
    kind: NegotiatedErrorKind,
    message: String,
    elapsed: Duration,
) {
    let verdict = state.guard.strike(
        client,
        settings.max_strikes,
        settings.disconnect_grace,
        elapsed,
    );
    warn!("negotiated relay: bad message from client {client} ({verdict:?}): {message}");
    send_error(server, channel, client, kind, message);
    if let StrikeVerdict::Refused(strikes) = verdict {
        send_error(
            server,
            channel,
            client,
            NegotiatedErrorKind::Abuse,
            format!("{strikes} bad messages: disconnecting"),
        );
        refused(state, client);
    }
}

/// Stops serving a connection and closes it once the error had time to reach it.
fn refuse(
    state: &mut NegotiatedRelayState,
    settings: &NegotiatedRelaySettings,
    client: PlayerId,
    elapsed: Duration,
) {
    if state
        .guard
        .refuse(client, settings.disconnect_grace, elapsed)
    {
        refused(state, client);
    }
}

/// Bookkeeping for a connection just refused.
fn refused(state: &mut NegotiatedRelayState, client: PlayerId) {
    state.connections_refused += 1;
    state.core.unsubscribe(client);
}

fn apply_settings(settings: Res<NegotiatedRelaySettings>, mut state: ResMut<NegotiatedRelayState>) {
    if settings.is_changed() && !settings.is_added() {
        state
            .core
            .set_max_facts_per_frame(settings.max_facts_per_frame);
    }
}

fn expire_frames(time: Res<Time<Real>>, mut state: ResMut<NegotiatedRelayState>) {
    let now = state.relay_time(time.elapsed());
    let oldest = state.core.frames().oldest_kept(now);
    if state
        .core
        .store()
        .frames()
        .next()
        .is_some_and(|(f, _)| f < oldest)
    {
        let dropped = state.core.expire(now);
        debug!("negotiated relay: dropped {dropped} expired facts");
    }
}

fn close_refused_connections(
    mut server: ResMut<RenetServer>,
    mut state: ResMut<NegotiatedRelayState>,
    time: Res<Time<Real>>,
) {
    for client in state.guard.take_due(time.elapsed()) {
        server.disconnect(client);
    }
}
