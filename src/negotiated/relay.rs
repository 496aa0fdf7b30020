//! The relay of negotiated matchmaking: [`NegotiatedRelayPlugin`].
//!
//! It stores facts by frame, forwards them along the seed's pivots (see
//! [`relay_core`](super::core::relay_core)), drops frames older than two frame durations and answers
//! time requests. It does no matchmaking: whether a fact's author was entitled to it is
//! for clients to judge. It stamps every fact with the connection that sent it.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::renet::ServerEvent;
use bevy_renet::{RenetReceive, RenetServer, RenetServerEvent, RenetServerPlugin};

use crate::shared::clock::unix_now;
use crate::shared::codec;
use crate::shared::gate::{
    ConnectionGate, ConnectionsToRead, GatePolicy, GateProtocol, GateReply, GatedService,
    MatchmakingRateLimit, gate_protocol,
};
use crate::shared::inbox::InboxReader;
use crate::shared::player::PlayerId;

use super::channel::NegotiatedChannel;
use super::core::clock::as_us;
use super::core::fact::NegotiatedFact;
use super::core::frame::NegotiatedFrames;
use super::core::journal::NegotiatedRelayJournal;
use super::core::protocol::{
    NEGOTIATED_PROTOCOL_VERSION, NegotiatedClientMessage, NegotiatedErrorKind,
    NegotiatedRelayMessage, bounded_error_text,
};
use super::core::relay_core::{
    NEGOTIATED_DEFAULT_MAX_DEPARTED, NEGOTIATED_DEFAULT_MAX_FACTS,
    NEGOTIATED_DEFAULT_MAX_FACTS_PER_FRAME, NegotiatedOutbox, NegotiatedRelayCore,
    NegotiatedRelayLimits, NegotiatedRelayStats,
};
use super::core::store::NegotiatedFactStore;

/// Relay settings. The frame duration and the epoch are read when the plugin is built
/// (clients learn the frame duration from the welcome); the other fields may change at
/// run time.
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedRelaySettings {
    /// Length of one frame of the rolling queue: requests expire one to two frames after
    /// they were posted (the seed's example: 15 minutes). Default 60 s.
    pub frame_duration: Duration,
    /// Most facts one connection may post into one frame (its rejects of bids and
    /// withdrawals of its bids, at most one per bid, not counted). Default 256.
    pub max_facts_per_frame: usize,
    /// Most facts the relay holds in all (a bidder's withdrawal of a stored bid always
    /// fits); past it posts are refused with `RelayFull` until frames expire.
    /// Default 100 000.
    pub max_facts: usize,
    /// Most departed players remembered (to tell later subscribers); only players with a
    /// stored request are remembered, until it expires. Default 10 000.
    pub max_departed: usize,
    /// Bad messages (undecodable, oversized, before hello) a connection may send before
    /// it is disconnected.
    pub max_strikes: u32,
    /// How long a refused connection stays open so that the error reaches it.
    pub disconnect_grace: Duration,
    /// How fast one connection may send (default 30 messages a second, 60 at once); a
    /// message past it is dropped and earns a strike.
    pub rate_limit: MatchmakingRateLimit,
    /// How long a player refused for abuse (strikes) is refused again, at its first
    /// message, when it connects anew under the same id (default 60 s; zero: not at all).
    pub abuse_cooldown: Duration,
    /// Relay time = epoch + time since the app started. `None`: the Unix time when the
    /// plugin was built, so relay time is wall-clock time and frames survive restarts.
    /// Tests set a fixed epoch.
    pub epoch: Option<Duration>,
    /// Where the relay records every fact before it reports it stored, and reads them
    /// back when it starts, so that a restart keeps every match mutual (see
    /// [`NegotiatedRelayJournal`]). `None` (the default): facts live in memory only, and
    /// a restart between storing an accept and telling the bidder can leave the bidder
    /// unaware of its match. Read when the plugin is built.
    pub journal: Option<NegotiatedRelayJournal>,
}

impl Default for NegotiatedRelaySettings {
    fn default() -> Self {
        Self {
            frame_duration: Duration::from_secs(60),
            max_facts_per_frame: NEGOTIATED_DEFAULT_MAX_FACTS_PER_FRAME,
            max_facts: NEGOTIATED_DEFAULT_MAX_FACTS,
            max_departed: NEGOTIATED_DEFAULT_MAX_DEPARTED,
            max_strikes: 3,
            disconnect_grace: Duration::from_millis(250),
            rate_limit: MatchmakingRateLimit::default(),
            abuse_cooldown: Duration::from_secs(60),
            epoch: None,
            journal: None,
        }
    }
}

impl NegotiatedRelaySettings {
    /// The limits on what the relay keeps.
    pub fn limits(&self) -> NegotiatedRelayLimits {
        NegotiatedRelayLimits {
            max_facts_per_frame: self.max_facts_per_frame,
            max_facts: self.max_facts,
            max_departed: self.max_departed,
        }
    }
}

/// The relay's facts, subscriptions and connections. Read it for inspection; the plugin's
/// systems are the only writers.
#[derive(Resource, Debug)]
pub struct NegotiatedRelayState {
    core: NegotiatedRelayCore,
    /// Hello flags, strikes and refusals of every connection.
    gate: ConnectionGate,
    epoch: Duration,
    connections_refused: u64,
}

impl NegotiatedRelayState {
    /// A relay's state at start; with a journal, what it holds is read back.
    ///
    /// # Panics
    /// If the journal cannot be read: starting with a partial store would break the
    /// verdicts given before the restart.
    fn new(settings: &NegotiatedRelaySettings) -> Self {
        let epoch = settings.epoch.unwrap_or_else(unix_now);
        let mut core = NegotiatedRelayCore::with_limits(
            NegotiatedFrames::new(settings.frame_duration),
            settings.limits(),
        );
        if let Some(journal) = &settings.journal {
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

    /// Bookkeeping for a connection the gate just refused: counted, and it no longer
    /// watches any frame.
    fn refused(&mut self, client: PlayerId) {
        self.connections_refused += 1;
        self.core.unsubscribe(client);
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
        let settings = app
            .world_mut()
            .get_resource_or_insert_with(|| self.settings.clone());
        let state = NegotiatedRelayState::new(&settings);
        if !app.is_plugin_added::<RenetServerPlugin>() {
            app.add_plugins(RenetServerPlugin);
        }
        let serving = resource_exists::<RenetServer>;
        let maintain = (apply_settings, expire_frames, close_refused_connections).chain();
        app.insert_resource(self.channel)
            .insert_resource(state)
            .add_observer(on_server_event)
            .configure_sets(
                PreUpdate,
                NegotiatedRelaySystems::Receive.after(RenetReceive),
            )
            .add_systems(
                PreUpdate,
                receive_messages
                    .in_set(NegotiatedRelaySystems::Receive)
                    .run_if(serving),
            )
            .add_systems(
                Update,
                maintain
                    .in_set(NegotiatedRelaySystems::Maintain)
                    .run_if(serving),
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
            state.gate.connect(client_id);
            state.core.connect(client_id);
        }
        ServerEvent::ClientDisconnected { client_id, reason } => {
            debug!("negotiated relay: client {client_id} disconnected ({reason})");
            state.gate.disconnect(client_id);
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
struct Relay<'w> {
    server: ResMut<'w, RenetServer>,
    channel: Res<'w, NegotiatedChannel>,
    settings: Res<'w, NegotiatedRelaySettings>,
    state: ResMut<'w, NegotiatedRelayState>,
    inbox: InboxReader<'w>,
}

fn receive_messages(time: Res<Time<Real>>, mut relay: Relay) {
    relay.receive_all(time.elapsed());
}

impl GatedService for Relay<'_> {
    type Message = NegotiatedClientMessage;

    fn gate(&mut self) -> (&mut ConnectionGate, GatePolicy) {
        let policy = GatePolicy {
            max_strikes: self.settings.max_strikes,
            disconnect_grace: self.settings.disconnect_grace,
            rate_limit: self.settings.rate_limit,
            abuse_cooldown: self.settings.abuse_cooldown,
        };
        (&mut self.state.gate, policy)
    }

    fn clients(&self) -> Vec<PlayerId> {
        self.server.clients_id()
    }

    fn to_read(&mut self, now: Duration) -> ConnectionsToRead {
        self.inbox.connections_to_read(now)
    }

    fn unreported(&mut self, client: PlayerId) {
        self.inbox.unreported(client);
    }

    fn read_again(&mut self, client: PlayerId) {
        self.inbox.read_again(client, &self.server);
    }

    fn next_message(&mut self, client: PlayerId) -> Option<Vec<u8>> {
        let bytes = self.server.receive_message(client, self.channel.id)?;
        Some(bytes.into())
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
                self.time_request(client, client_sent_us, now);
            }
            NegotiatedClientMessage::Subscribe { category, frames } => {
                self.subscribe(client, category, frames);
            }
            NegotiatedClientMessage::Unsubscribe => self.unsubscribe(client),
            NegotiatedClientMessage::Post { fact } => self.post(client, fact, now),
        }
    }
}

impl Relay<'_> {
    fn send(&mut self, to: PlayerId, message: &NegotiatedRelayMessage) {
        send(&mut self.server, &self.channel, to, message);
    }

    /// Sends what the core asks to send.
    fn send_all(&mut self, out: NegotiatedOutbox) {
        send_all(&mut self.server, &self.channel, out);
    }

    /// [`NegotiatedClientMessage::TimeRequest`]: tells the relay's time.
    fn time_request(&mut self, client: PlayerId, client_sent_us: u64, now: Duration) {
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
    fn subscribe(&mut self, client: PlayerId, category: String, frames: Vec<u64>) {
        match self.state.core.subscribe(client, category, frames) {
            Ok(out) => self.send_all(out),
            Err(refusal) => self.send(client, &refusal.to_message()),
        }
    }

    /// [`NegotiatedClientMessage::Unsubscribe`]: stops watching.
    fn unsubscribe(&mut self, client: PlayerId) {
        self.state.core.unsubscribe(client);
    }

    /// [`NegotiatedClientMessage::Post`]: stores a fact and forwards it, or refuses it;
    /// either way the poster gets the verdict.
    fn post(&mut self, client: PlayerId, fact: NegotiatedFact, now: Duration) {
        let out = self.state.core.post(client, fact, now);
        for (_, message) in &out {
            if let NegotiatedRelayMessage::Refused { kind, message, .. } = message {
                debug!("negotiated relay: refused a fact from {client} ({kind:?}): {message}");
            }
        }
        self.send_all(out);
    }
}

fn apply_settings(settings: Res<NegotiatedRelaySettings>, mut state: ResMut<NegotiatedRelayState>) {
    if settings.is_changed() && !settings.is_added() {
        state.core.set_limits(settings.limits());
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
    for client in state.gate.take_due(time.elapsed()) {
        server.disconnect(client);
    }
}
