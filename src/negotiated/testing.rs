//! An in-process harness for negotiated matchmaking: one relay [`App`] and N client
//! [`App`]s connected with renet's local clients, all driven by manual time.
//!
//! Every [`NegotiatedTestHarness::update`] advances all apps by the same step and
//! exchanges packets before and after the relay runs, so a round trip through the relay
//! takes one update. Everything a client plugin reports is recorded in its
//! [`NegotiatedClientLog`]. Raw clients (no plugin) send and read protocol messages
//! directly, for hostile-input and forgery tests.

use std::time::Duration;

use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use bevy_renet::{RenetClient, RenetClientPlugin, RenetServer};

use crate::shared::codec;
use crate::shared::local_link::LocalLink;
use crate::shared::player::PlayerId;

use super::channel::NegotiatedChannel;
use super::client::*;
use super::core::protocol::{NegotiatedClientMessage, NegotiatedRelayMessage};
use super::relay::{NegotiatedRelayPlugin, NegotiatedRelaySettings, NegotiatedRelayState};

/// The relay epoch the harness uses unless the settings name one (any fixed value).
pub const NEGOTIATED_TEST_EPOCH: Duration = Duration::from_secs(1_000_000);

/// Everything a client plugin wrote, in order.
#[derive(Resource, Debug, Default, Clone)]
pub struct NegotiatedClientLog {
    /// Welcomes.
    pub connected: Vec<NegotiatedConnected>,
    /// Requests posted.
    pub posted: Vec<NegotiatedRequestPosted>,
    /// Bids placed.
    pub bids: Vec<NegotiatedBidPlaced>,
    /// Matches.
    pub found: Vec<NegotiatedMatchFound>,
    /// Abandoned searches.
    pub cancelled: Vec<NegotiatedCancelled>,
    /// Restarts.
    pub restarted: Vec<NegotiatedRestarted>,
    /// Errors.
    pub errors: Vec<NegotiatedClientError>,
    /// Relay time (as the client estimates it) of each entry above, by kind, for timing
    /// assertions on manual time: (what, relay time).
    pub timeline: Vec<(&'static str, Duration)>,
}

#[derive(bevy::ecs::system::SystemParam)]
struct LogReaders<'w, 's> {
    connected: MessageReader<'w, 's, NegotiatedConnected>,
    posted: MessageReader<'w, 's, NegotiatedRequestPosted>,
    bids: MessageReader<'w, 's, NegotiatedBidPlaced>,
    found: MessageReader<'w, 's, NegotiatedMatchFound>,
    cancelled: MessageReader<'w, 's, NegotiatedCancelled>,
    restarted: MessageReader<'w, 's, NegotiatedRestarted>,
    errors: MessageReader<'w, 's, NegotiatedClientError>,
}

fn record(
    mut log: ResMut<NegotiatedClientLog>,
    status: Res<NegotiatedClientStatus>,
    mut r: LogReaders,
) {
    let now = status.relay_time.unwrap_or_default();
    let log = &mut *log;
    for (what, n) in [
        ("connected", r.connected.len()),
        ("posted", r.posted.len()),
        ("bid", r.bids.len()),
        ("found", r.found.len()),
        ("cancelled", r.cancelled.len()),
        ("restarted", r.restarted.len()),
        ("error", r.errors.len()),
    ] {
        log.timeline.extend(std::iter::repeat_n((what, now), n));
    }
    log.connected.extend(r.connected.read().cloned());
    log.posted.extend(r.posted.read().cloned());
    log.bids.extend(r.bids.read().cloned());
    log.found.extend(r.found.read().cloned());
    log.cancelled.extend(r.cancelled.read().cloned());
    log.restarted.extend(r.restarted.read().copied());
    log.errors.extend(r.errors.read().cloned());
}

/// One client of the harness.
pub struct NegotiatedTestClient {
    /// Its id (the renet client id the relay stamps).
    pub id: PlayerId,
    /// Its app.
    pub app: App,
    /// Its connection as the harness drives it.
    pub link: LocalLink,
    /// Whether it runs without the plugin.
    pub raw: bool,
}

/// A relay app and client apps in one process.
pub struct NegotiatedTestHarness {
    /// The relay app.
    pub relay: App,
    /// The clients, in creation order.
    pub clients: Vec<NegotiatedTestClient>,
    /// Manual time step of every app.
    pub step: Duration,
    /// The channel both sides use.
    pub channel: NegotiatedChannel,
    /// Settings of the relay (its epoch is set).
    pub relay_settings: NegotiatedRelaySettings,
    /// Settings new clients start from.
    pub client_settings: NegotiatedClientSettings,
    next_id: PlayerId,
}

impl NegotiatedTestHarness {
    /// A relay with these settings (epoch [`NEGOTIATED_TEST_EPOCH`] unless set) and
    /// clients with these, stepping 10 ms per update.
    pub fn new(
        mut relay_settings: NegotiatedRelaySettings,
        client_settings: NegotiatedClientSettings,
    ) -> Self {
        relay_settings.epoch.get_or_insert(NEGOTIATED_TEST_EPOCH);
        let step = Duration::from_millis(10);
        let channel = NegotiatedChannel::default();
        let relay = Self::make_relay(channel, step, relay_settings.clone());
        Self {
            relay,
            clients: Vec::new(),
            step,
            channel,
            relay_settings,
            client_settings,
            next_id: 1,
        }
    }

    /// A relay with `frame_duration` frames and clients with `bid_timeout`.
    pub fn with_frames(frame_duration: Duration, bid_timeout: Duration) -> Self {
        Self::new(
            NegotiatedRelaySettings {
                frame_duration,
                ..default()
            },
            NegotiatedClientSettings {
                bid_timeout,
                time_sync_interval: Duration::from_secs(1),
                ..default()
            },
        )
    }

    fn make_relay(
        channel: NegotiatedChannel,
        step: Duration,
        settings: NegotiatedRelaySettings,
    ) -> App {
        let mut relay = App::new();
        relay
            .add_plugins(MinimalPlugins)
            .insert_resource(TimeUpdateStrategy::ManualDuration(step))
            .insert_resource(RenetServer::new(channel.connection_config()))
            .add_plugins(NegotiatedRelayPlugin { channel, settings });
        // the first update only starts the clock
        relay.update();
        relay
    }

    /// Relay time now.
    pub fn relay_now(&self) -> Duration {
        let elapsed = self.relay.world().resource::<Time<Real>>().elapsed();
        self.relay_state().relay_time(elapsed)
    }

    /// The relay's state.
    pub fn relay_state(&self) -> &NegotiatedRelayState {
        self.relay.world().resource::<NegotiatedRelayState>()
    }

    fn connect(&mut self, id: PlayerId) -> RenetClient {
        RenetClient(
            self.relay
                .world_mut()
                .resource_mut::<RenetServer>()
                .new_local_client(id),
        )
    }

    /// Adds a client with the harness's client settings; returns its id.
    pub fn add_client(&mut self) -> PlayerId {
        self.add_client_with(|_| {})
    }

    /// Adds a client whose settings `tweak` changes (for example a clock skew). Its clock
    /// epoch is the relay's time now (so it reads relay time plus its skew) and its seed
    /// its id, unless the tweak sets them.
    pub fn add_client_with(
        &mut self,
        tweak: impl FnOnce(&mut NegotiatedClientSettings),
    ) -> PlayerId {
        let id = self.next_id;
        self.next_id += 1;
        let mut settings = self.client_settings.clone();
        settings.epoch = Some(self.relay_now());
        settings.seed = Some(id);
        tweak(&mut settings);
        let client = self.connect(id);
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .insert_resource(TimeUpdateStrategy::ManualDuration(self.step))
            .insert_resource(client)
            .add_plugins(NegotiatedClientPlugin {
                channel: self.channel,
                settings,
            })
            .init_resource::<NegotiatedClientLog>()
            .add_systems(Last, record);
        self.clients.push(NegotiatedTestClient {
            id,
            app,
            link: LocalLink::default(),
            raw: false,
        });
        id
    }

    /// Adds `n` clients and runs until all are synced and idle.
    pub fn add_clients(&mut self, n: usize) -> Vec<PlayerId> {
        let ids: Vec<PlayerId> = (0..n).map(|_| self.add_client()).collect();
        self.run_until(100, |h| {
            ids.iter()
                .all(|id| h.state(*id) == NegotiatedClientState::Idle)
        });
        ids
    }

    /// Adds a client without the plugin: the test speaks the protocol itself with
    /// [`send_message`](Self::send_message), [`send_raw`](Self::send_raw) and
    /// [`take_messages`](Self::take_messages).
    pub fn add_raw_client(&mut self) -> PlayerId {
        let id = self.next_id;
        self.next_id += 1;
        let client = self.connect(id);
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .add_plugins(RenetClientPlugin)
            .insert_resource(TimeUpdateStrategy::ManualDuration(self.step))
            .insert_resource(client);
        self.clients.push(NegotiatedTestClient {
            id,
            app,
            link: LocalLink::default(),
            raw: true,
        });
        id
    }

    fn index(&self, id: PlayerId) -> usize {
        self.clients
            .iter()
            .position(|c| c.id == id)
            .expect("no such client")
    }

    /// A client's app.
    pub fn client(&mut self, id: PlayerId) -> &mut App {
        let i = self.index(id);
        &mut self.clients[i].app
    }

    /// A client's log.
    pub fn log(&self, id: PlayerId) -> &NegotiatedClientLog {
        self.clients[self.index(id)]
            .app
            .world()
            .resource::<NegotiatedClientLog>()
    }

    /// A client's status.
    pub fn status(&self, id: PlayerId) -> &NegotiatedClientStatus {
        self.clients[self.index(id)]
            .app
            .world()
            .resource::<NegotiatedClientStatus>()
    }

    /// A client's state.
    pub fn state(&self, id: PlayerId) -> NegotiatedClientState {
        *self.clients[self.index(id)]
            .app
            .world()
            .resource::<State<NegotiatedClientState>>()
            .get()
    }

    /// The match a client found, if any.
    pub fn found(&self, id: PlayerId) -> Option<&NegotiatedMatchFound> {
        self.status(id).found.as_ref()
    }

    /// Writes a message into a client app.
    pub fn send<M: Message>(&mut self, id: PlayerId, message: M) {
        self.client(id).world_mut().write_message(message);
    }

    /// Makes a client search in a category.
    pub fn search(&mut self, id: PlayerId, category: &str) {
        self.send(
            id,
            NegotiatedSearch {
                category: category.into(),
            },
        );
    }

    /// Makes a client abandon its search.
    pub fn cancel(&mut self, id: PlayerId) {
        self.send(id, NegotiatedCancelSearch);
    }

    /// Sends raw bytes from a client on the negotiated channel.
    pub fn send_raw(&mut self, id: PlayerId, bytes: Vec<u8>) {
        let channel = self.channel.id;
        self.client(id)
            .world_mut()
            .resource_mut::<RenetClient>()
            .send_message(channel, bytes);
    }

    /// Sends a protocol message from a (raw) client.
    pub fn send_message(&mut self, id: PlayerId, message: &NegotiatedClientMessage) {
        self.send_raw(id, codec::encode(message));
    }

    /// Takes the messages a raw client received.
    ///
    /// # Panics
    /// If the relay sent undecodable bytes.
    pub fn take_messages(&mut self, id: PlayerId) -> Vec<NegotiatedRelayMessage> {
        let channel = self.channel.id;
        let mut client = self.client(id).world_mut().resource_mut::<RenetClient>();
        let mut out = Vec::new();
        while let Some(bytes) = client.receive_message(channel) {
            out.push(codec::decode(&bytes).expect("the relay sends valid messages"));
        }
        out
    }

    /// Whether a client's connection is still open on the relay.
    pub fn is_connected(&self, id: PlayerId) -> bool {
        self.relay
            .world()
            .resource::<RenetServer>()
            .is_connected(id)
    }

    /// Closes a client's connection for good.
    pub fn disconnect(&mut self, id: PlayerId) {
        let i = self.index(id);
        let client = &mut self.clients[i];
        let mut renet = client.app.world_mut().resource_mut::<RenetClient>();
        let mut relay = self.relay.world_mut().resource_mut::<RenetServer>();
        client.link.close(&mut relay, id, &mut renet);
    }

    /// Stops exchanging a client's packets without closing the connection (a stalled
    /// network), or resumes it.
    pub fn set_link(&mut self, id: PlayerId, up: bool) {
        let i = self.index(id);
        self.clients[i].link.set_up(up);
    }

    /// Replaces the relay with a fresh one (all facts lost; its clock carries on, as a
    /// wall clock would) and reconnects every client that was not closed. The clients see
    /// their connection drop for one update first.
    pub fn restart_relay(&mut self) {
        let now = self.relay_now();
        for client in &mut self.clients {
            if client.link.is_closed() {
                continue;
            }
            let mut renet = client.app.world_mut().resource_mut::<RenetClient>();
            self.relay
                .world_mut()
                .resource_mut::<RenetServer>()
                .disconnect_local_client(client.id, &mut renet);
        }
        for client in &mut self.clients {
            client.app.update();
        }
        let settings = NegotiatedRelaySettings {
            epoch: Some(now + self.step),
            ..self.relay_settings.clone()
        };
        self.relay = Self::make_relay(self.channel, self.step, settings);
        for i in 0..self.clients.len() {
            if self.clients[i].link.is_closed() {
                continue;
            }
            let renet = self.connect(self.clients[i].id);
            self.clients[i].app.insert_resource(renet);
        }
    }

    fn exchange(&mut self) {
        let mut relay = self.relay.world_mut().resource_mut::<RenetServer>();
        for client in &mut self.clients {
            let mut renet = client.app.world_mut().resource_mut::<RenetClient>();
            client.link.exchange(&mut relay, client.id, &mut renet);
        }
    }

    /// Runs one update of every app.
    pub fn update(&mut self) {
        self.exchange();
        self.relay.update();
        self.exchange();
        for client in &mut self.clients {
            client.app.update();
        }
    }

    /// Runs `updates` updates.
    pub fn run(&mut self, updates: usize) {
        for _ in 0..updates {
            self.update();
        }
    }

    /// Runs for (at least) this much manual time.
    pub fn run_for(&mut self, duration: Duration) {
        let updates = duration.as_nanos().div_ceil(self.step.as_nanos()) as usize;
        self.run(updates);
    }

    /// Runs updates until `done` holds; returns how many ran. Panics after `max_updates`.
    pub fn run_until(&mut self, max_updates: usize, done: impl Fn(&Self) -> bool) -> usize {
        for update in 0..max_updates {
            if done(self) {
                return update;
            }
            self.update();
        }
        assert!(done(self), "condition not reached in {max_updates} updates");
        max_updates
    }

    /// Runs until every listed client found a match; returns how many updates ran.
    pub fn run_until_matched(&mut self, ids: &[PlayerId], max_updates: usize) -> usize {
        self.run_until(max_updates, |h| ids.iter().all(|id| h.found(*id).is_some()))
    }
}
