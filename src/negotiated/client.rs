//! The client of negotiated matchmaking: [`NegotiatedClientPlugin`].
//!
//! The game writes [`NegotiatedSearch`] and [`NegotiatedCancelSearch`]; the plugin says
//! hello to the relay, estimates the relay's clock, runs the
//! [`NegotiatedMachine`] on corrected time, keeps
//! [`NegotiatedClientState`] and [`NegotiatedClientStatus`] current and reports what
//! happens as Bevy messages.

use std::time::Duration;

use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_renet::{RenetClient, RenetClientPlugin, RenetReceive};

use crate::shared::codec::{self, CodecError};
use crate::shared::player::PlayerId;

use super::channel::NegotiatedChannel;
use super::core::clock::{NegotiatedClock, apply_offset, as_us};
use super::core::fact::NegotiatedFactId;
use super::core::frame::NegotiatedFrames;
use super::core::machine::{
    NegotiatedEvent, NegotiatedMachine, NegotiatedMachineConfig, NegotiatedMatch, NegotiatedOutput,
    NegotiatedPhase, NegotiatedRestartReason, NegotiatedRole,
};
use super::core::protocol::{
    NEGOTIATED_PROTOCOL_VERSION, NegotiatedClientMessage, NegotiatedErrorKind,
    NegotiatedRelayMessage,
};
use crate::shared::clock::unix_now;

/// Client settings, read when the relay welcomes the client (a change applies from the
/// next connection), except `time_sync_interval`, read every frame.
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedClientSettings {
    /// How long to wait for the requester to answer a bid before looking again.
    /// Default 3 s; keep it well above the round trip to the relay.
    pub bid_timeout: Duration,
    /// How often to ask the relay for its time again (the estimate keeps the sample
    /// with the shortest round trip among the last few). Default 10 s.
    pub time_sync_interval: Duration,
    /// The local clock = epoch + time since the app started (+ `clock_skew_ms`).
    /// `None`: the Unix time when the plugin was built.
    pub epoch: Option<Duration>,
    /// Added to the local clock, in milliseconds: simulates a badly set clock in tests.
    /// Leave at zero in a game.
    pub clock_skew_ms: i64,
    /// Seed of the random choice among open requests (`None`: random).
    pub seed: Option<u64>,
}

impl Default for NegotiatedClientSettings {
    fn default() -> Self {
        Self {
            bid_timeout: Duration::from_secs(3),
            time_sync_interval: Duration::from_secs(10),
            epoch: None,
            clock_skew_ms: 0,
            seed: None,
        }
    }
}

/// Where the client stands; drive the UI from it.
#[derive(States, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NegotiatedClientState {
    /// No connection to the relay.
    #[default]
    Disconnected,
    /// Connected; waiting for the welcome and the first clock estimate.
    Syncing,
    /// Ready, not searching.
    Idle,
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
#[derive(Resource, Debug, Clone, Default)]
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

/// Game → plugin: start searching in this category (kept until connected and synced).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedSearch {
    /// The category.
    pub category: String,
}

/// Game → plugin: abandon the search (cancels our open request).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NegotiatedCancelSearch;

/// The relay welcomed us.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedConnected {
    /// Our id.
    pub client_id: PlayerId,
    /// The relay's frame duration.
    pub frame_duration: Duration,
}

/// We posted a request.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedRequestPosted {
    /// The request.
    pub request: NegotiatedFactId,
    /// The category.
    pub category: String,
    /// Its frame.
    pub frame: u64,
}

/// We bid on a request.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedBidPlaced {
    /// The bid.
    pub bid: NegotiatedFactId,
    /// The request.
    pub request: NegotiatedFactId,
    /// Its author.
    pub requester: PlayerId,
}

/// Paired: start the game with `other`.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMatchFound {
    /// The category.
    pub category: String,
    /// Our id.
    pub me: PlayerId,
    /// The other player.
    pub other: PlayerId,
    /// Our side (the requester may host).
    pub role: NegotiatedRole,
    /// The request.
    pub request: NegotiatedFactId,
    /// The accepted bid.
    pub bid: NegotiatedFactId,
    /// The accept.
    pub accept: NegotiatedFactId,
}

impl NegotiatedMatchFound {
    fn new(me: PlayerId, m: NegotiatedMatch) -> Self {
        Self {
            category: m.category,
            me,
            other: m.other,
            role: m.role,
            request: m.request,
            bid: m.bid,
            accept: m.accept,
        }
    }
}

/// The search was abandoned.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedCancelled {
    /// The category.
    pub category: String,
    /// Our request that was cancelled, if one was open.
    pub request: Option<NegotiatedFactId>,
}

/// The search went back to looking.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatedRestarted {
    /// Why.
    pub reason: NegotiatedRestartReason,
}

/// Something went wrong: refused by the relay, an ignored fact, or a local problem.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedClientError {
    /// What.
    pub kind: NegotiatedErrorKind,
    /// For humans.
    pub message: String,
}

/// System sets of the client plugin.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiatedClientSystems {
    /// `PreUpdate`, after [`RenetReceive`]: says hello on connect, decodes relay
    /// messages, feeds the clock and the machine.
    Receive,
    /// `Update`: takes the game's requests, asks for the time, advances the machine,
    /// sends its messages, writes Bevy messages and the state.
    Drive,
}

/// The client of negotiated matchmaking.
///
/// Needs a [`RenetClient`] resource whose connection config includes the
/// [`NegotiatedChannel`]. Adds bevy_renet's [`RenetClientPlugin`] and Bevy's
/// `StatesPlugin` if the app has not.
#[derive(Debug, Clone, Default)]
pub struct NegotiatedClientPlugin {
    /// The channel carrying negotiated messages.
    pub channel: NegotiatedChannel,
    /// Initial settings (kept if the app inserted its own resource first).
    pub settings: NegotiatedClientSettings,
}

impl Plugin for NegotiatedClientPlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<RenetClientPlugin>() {
            app.add_plugins(RenetClientPlugin);
        }
        if !app.is_plugin_added::<StatesPlugin>() {
            app.add_plugins(StatesPlugin);
        }
        if !app.world().contains_resource::<NegotiatedClientSettings>() {
            app.insert_resource(self.settings.clone());
        }
        let epoch = app
            .world()
            .resource::<NegotiatedClientSettings>()
            .epoch
            .unwrap_or_else(unix_now);
        app.insert_resource(self.channel)
            .insert_resource(NegotiatedSession { epoch, ..default() })
            .init_state::<NegotiatedClientState>()
            .init_resource::<NegotiatedClientStatus>()
            .add_message::<NegotiatedSearch>()
            .add_message::<NegotiatedCancelSearch>()
            .add_message::<NegotiatedConnected>()
            .add_message::<NegotiatedRequestPosted>()
            .add_message::<NegotiatedBidPlaced>()
            .add_message::<NegotiatedMatchFound>()
            .add_message::<NegotiatedCancelled>()
            .add_message::<NegotiatedRestarted>()
            .add_message::<NegotiatedClientError>()
            .configure_sets(
                PreUpdate,
                NegotiatedClientSystems::Receive.after(RenetReceive),
            )
            .add_systems(
                PreUpdate,
                receive_messages.in_set(NegotiatedClientSystems::Receive),
            )
            .add_systems(Update, drive.in_set(NegotiatedClientSystems::Drive));
    }
}

/// Per-connection bookkeeping, and the machine.
#[derive(Resource, Debug, Default)]
struct NegotiatedSession {
    epoch: Duration,
    connected: bool,
    welcomed: bool,
    client_id: Option<PlayerId>,
    clock: NegotiatedClock,
    last_time_request: Option<Duration>,
    machine: Option<NegotiatedMachine>,
    /// A search the game asked for before the relay welcomed us.
    intent: Option<String>,
    outbox: Vec<NegotiatedOutput>,
    /// Errors to report that do not come from the machine.
    errors: Vec<NegotiatedClientError>,
    connected_events: Vec<NegotiatedConnected>,
}

impl NegotiatedSession {
    fn local_now(&self, elapsed: Duration, skew_ms: i64) -> Duration {
        apply_offset(self.epoch + elapsed, skew_ms.saturating_mul(1000))
    }

    fn relay_now(&self, local: Duration) -> Option<Duration> {
        self.clock.relay_time(local)
    }

    /// Brings the machine online once welcomed and synced.
    fn go_online(&mut self, relay_now: Duration) {
        if !self.welcomed {
            return;
        }
        if let Some(machine) = self.machine.as_mut()
            && !machine.is_online()
        {
            let out = machine.online(relay_now);
            self.outbox.extend(out);
        }
    }
}

fn error(kind: NegotiatedErrorKind, message: impl Into<String>) -> NegotiatedClientError {
    NegotiatedClientError {
        kind,
        message: message.into(),
    }
}

fn send(client: &mut RenetClient, channel: &NegotiatedChannel, message: &NegotiatedClientMessage) {
    client.send_message(channel.id, codec::encode(message));
}

fn receive_messages(
    client: Option<ResMut<RenetClient>>,
    channel: Res<NegotiatedChannel>,
    settings: Res<NegotiatedClientSettings>,
    time: Res<Time<Real>>,
    mut session: ResMut<NegotiatedSession>,
) {
    let session = &mut *session;
    let local = session.local_now(time.elapsed(), settings.clock_skew_ms);
    let connected = client.as_ref().is_some_and(|c| c.is_connected());
    if !connected {
        if session.connected {
            session.connected = false;
            session.welcomed = false;
            session.clock.reset();
            session.last_time_request = None;
            if let Some(machine) = session.machine.as_mut() {
                let out = machine.offline();
                session.outbox.extend(out);
            }
            session.errors.push(error(
                NegotiatedErrorKind::Connection,
                "lost the connection to the relay",
            ));
        }
        return;
    }
    let mut client = client.expect("connected");
    if !session.connected {
        session.connected = true;
        send(
            &mut client,
            &channel,
            &NegotiatedClientMessage::Hello {
                protocol_version: NEGOTIATED_PROTOCOL_VERSION,
            },
        );
        send(
            &mut client,
            &channel,
            &NegotiatedClientMessage::TimeRequest {
                client_sent_us: as_us(local),
            },
        );
        session.last_time_request = Some(local);
    }
    while let Some(bytes) = client.receive_message(channel.id) {
        let message = match codec::decode::<NegotiatedRelayMessage>(&bytes) {
            Ok(message) => message,
            Err(err) => {
                let kind = match err {
                    CodecError::TooLarge { .. } => NegotiatedErrorKind::TooLarge,
                    _ => NegotiatedErrorKind::Malformed,
                };
                session.errors.push(error(
                    kind,
                    format!("undecodable message from the relay: {err}"),
                ));
                continue;
            }
        };
        let relay_now = session.relay_now(local);
        match message {
            NegotiatedRelayMessage::Welcome {
                protocol_version,
                client_id,
                frame_duration_us,
            } => {
                if protocol_version != NEGOTIATED_PROTOCOL_VERSION {
                    session.errors.push(error(
                        NegotiatedErrorKind::VersionMismatch,
                        format!("relay speaks negotiated protocol {protocol_version}, we speak {NEGOTIATED_PROTOCOL_VERSION}"),
                    ));
                    continue;
                }
                let frames = NegotiatedFrames::new(Duration::from_micros(frame_duration_us));
                let config = NegotiatedMachineConfig {
                    me: client_id,
                    frames,
                    bid_timeout: settings.bid_timeout,
                    seed: settings.seed.unwrap_or_else(|| fastrand::u64(..)),
                };
                let keep = session
                    .machine
                    .as_ref()
                    .is_some_and(|m| m.config().me == client_id && m.config().frames == frames);
                if !keep {
                    let old = session.machine.take();
                    let mut machine = NegotiatedMachine::new(config);
                    let carried = old
                        .filter(|m| m.is_searching())
                        .and_then(|m| m.category().map(str::to_owned))
                        .or_else(|| session.intent.take());
                    if let Some(category) = carried {
                        let out = machine.search(&category, relay_now.unwrap_or_default());
                        session.outbox.extend(out);
                    }
                    session.machine = Some(machine);
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
            NegotiatedRelayMessage::Time {
                client_sent_us,
                relay_received_us,
                relay_sent_us,
            } => {
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
            NegotiatedRelayMessage::Fact { author, fact } => {
                if let Some(machine) = session.machine.as_mut() {
                    let out = machine.ingest(author, fact);
                    session.outbox.extend(out);
                }
            }
            NegotiatedRelayMessage::Departed { author } => {
                if let Some(machine) = session.machine.as_mut() {
                    let out = machine.ingest_departed(author);
                    session.outbox.extend(out);
                }
            }
            NegotiatedRelayMessage::Synced { category, frame } => {
                if let Some(machine) = session.machine.as_mut() {
                    machine.ingest_synced(&category, frame);
                }
            }
            NegotiatedRelayMessage::Error { kind, message } => {
                warn!("negotiated relay refused a message ({kind:?}): {message}");
                session.errors.push(error(kind, message));
            }
        }
    }
}

/// Where the plugin's reports go.
#[derive(bevy::ecs::system::SystemParam)]
struct ClientOutputs<'w> {
    connected: MessageWriter<'w, NegotiatedConnected>,
    posted: MessageWriter<'w, NegotiatedRequestPosted>,
    bid: MessageWriter<'w, NegotiatedBidPlaced>,
    found: MessageWriter<'w, NegotiatedMatchFound>,
    cancelled: MessageWriter<'w, NegotiatedCancelled>,
    restarted: MessageWriter<'w, NegotiatedRestarted>,
    errors: MessageWriter<'w, NegotiatedClientError>,
}

#[allow(clippy::too_many_arguments)]
fn drive(
    client: Option<ResMut<RenetClient>>,
    channel: Res<NegotiatedChannel>,
    settings: Res<NegotiatedClientSettings>,
    time: Res<Time<Real>>,
    mut session: ResMut<NegotiatedSession>,
    mut status: ResMut<NegotiatedClientStatus>,
    mut searches: MessageReader<NegotiatedSearch>,
    mut cancels: MessageReader<NegotiatedCancelSearch>,
    state: Res<State<NegotiatedClientState>>,
    mut next: ResMut<NextState<NegotiatedClientState>>,
    mut out: ClientOutputs,
) {
    let session = &mut *session;
    let local = session.local_now(time.elapsed(), settings.clock_skew_ms);
    let relay_now = session.relay_now(local);

    for search in searches.read() {
        match session.machine.as_mut() {
            Some(machine) => {
                let o = machine.search(&search.category, relay_now.unwrap_or(machine.now()));
                session.outbox.extend(o);
            }
            None => session.intent = Some(search.category.clone()),
        }
    }
    for _ in cancels.read() {
        match session.machine.as_mut() {
            Some(machine) => {
                let o = machine.cancel(relay_now.unwrap_or(machine.now()));
                session.outbox.extend(o);
            }
            None => match session.intent.take() {
                Some(category) => {
                    session
                        .outbox
                        .push(NegotiatedOutput::Event(NegotiatedEvent::Cancelled {
                            category,
                            request: None,
                        }))
                }
                None => session
                    .errors
                    .push(error(NegotiatedErrorKind::Unexpected, "not searching")),
            },
        }
    }
    if session.connected
        && session.welcomed
        && session
            .last_time_request
            .is_none_or(|at| local.saturating_sub(at) >= settings.time_sync_interval)
        && let Some(client) = client.as_ref()
        && client.is_connected()
    {
        session.last_time_request = Some(local);
        session.outbox.push(NegotiatedOutput::Send(
            NegotiatedClientMessage::TimeRequest {
                client_sent_us: as_us(local),
            },
        ));
    }
    if let (Some(machine), Some(now)) = (session.machine.as_mut(), relay_now)
        && machine.is_online()
    {
        let o = machine.tick(now);
        session.outbox.extend(o);
    }

    // flush
    let mut client = client.filter(|c| c.is_connected());
    let me = session.client_id.unwrap_or_default();
    for e in session.connected_events.drain(..) {
        out.connected.write(e);
    }
    for output in std::mem::take(&mut session.outbox) {
        match output {
            NegotiatedOutput::Send(message) => {
                if let Some(client) = client.as_mut() {
                    send(client, &channel, &message);
                }
            }
            NegotiatedOutput::Event(event) => match event {
                NegotiatedEvent::RequestPosted {
                    request,
                    category,
                    frame,
                } => {
                    status.request = Some(request);
                    status.bid = None;
                    status.category = Some(category.clone());
                    out.posted.write(NegotiatedRequestPosted {
                        request,
                        category,
                        frame,
                    });
                }
                NegotiatedEvent::BidPlaced {
                    bid,
                    request,
                    requester,
                } => {
                    status.request = None;
                    status.bid = Some(bid);
                    out.bid.write(NegotiatedBidPlaced {
                        bid,
                        request,
                        requester,
                    });
                }
                NegotiatedEvent::Matched(m) => {
                    let found = NegotiatedMatchFound::new(me, m);
                    status.request = None;
                    status.bid = None;
                    status.category = Some(found.category.clone());
                    status.found = Some(found.clone());
                    out.found.write(found);
                }
                NegotiatedEvent::Restarted(reason) => {
                    status.request = None;
                    status.bid = None;
                    status.restarts += 1;
                    out.restarted.write(NegotiatedRestarted { reason });
                }
                NegotiatedEvent::Cancelled { category, request } => {
                    status.request = None;
                    status.bid = None;
                    out.cancelled
                        .write(NegotiatedCancelled { category, request });
                }
                NegotiatedEvent::Error { kind, message } => {
                    session.errors.push(error(kind, message));
                }
            },
        }
    }
    for e in session.errors.drain(..) {
        status.last_error = Some(e.clone());
        out.errors.write(e);
    }

    // status and state
    status.client_id = session.client_id;
    status.frame_duration = session
        .machine
        .as_ref()
        .map(|m| m.config().frames.duration());
    let best = session.clock.best();
    status.clock_offset_us = best.map(|s| s.offset_us);
    status.round_trip = best.map(|s| Duration::from_micros(s.round_trip_us));
    status.relay_time = session.relay_now(local);
    let wanted = match session.machine.as_ref() {
        _ if !session.connected => NegotiatedClientState::Disconnected,
        Some(machine) if session.welcomed && machine.is_online() => match machine.phase() {
            NegotiatedPhase::Idle => NegotiatedClientState::Idle,
            NegotiatedPhase::Looking => NegotiatedClientState::Looking,
            NegotiatedPhase::Requesting { .. } => NegotiatedClientState::Requesting,
            NegotiatedPhase::Bidding { .. } => NegotiatedClientState::Bidding,
            NegotiatedPhase::Matched(_) => NegotiatedClientState::Matched,
        },
        _ => NegotiatedClientState::Syncing,
    };
    if *state.get() != wanted {
        next.set(wanted);
    }
}
