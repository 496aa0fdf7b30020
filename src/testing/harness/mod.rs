//! The in-process test harness both modes build on: one server [`App`] (the atomic
//! matchmaking server or the negotiated relay) and any number of client [`App`]s connected
//! with renet's local connections, all driven by manual time.
//!
//! [`TestHarness`] owns the apps, each client's [`LocalLink`] and the clock. Every
//! [`update`](TestHarness::update) advances every app by the same [`step`](TestHarness::step)
//! and exchanges packets before and after the server runs, so a round trip takes one
//! update. A test can stall a link, close a connection, write messages into a client app
//! and speak the wire protocol from a client without a plugin ("raw" clients).
//!
//! # Faults
//!
//! Every link can misbehave ([`TestHarness::set_faults`]: loss, delay, jitter,
//! duplication and reordering per direction, drawn from a seeded random source, see
//! [`TestHarness::seed_links`]), hold its packets for a while
//! ([`TestHarness::stall_link`]) or drop and come back under the same id
//! ([`TestHarness::reconnect`]); the server can take one long frame
//! ([`TestHarness::stall_server`]) or be replaced ([`TestHarness::replace_server`]).
//! Links run on the harness's network clock ([`TestHarness::now`]), which advances by
//! [`step`](TestHarness::step) every update: nothing depends on wall-clock time, so a
//! run is the same for the same seed and the same test.
//!
//! # Determinism
//!
//! Besides the seeded links and manual time, every schedule of every app runs on Bevy's
//! single-threaded executor ([`single_threaded`]), whatever Bevy's features: with the
//! `multi_threaded` feature (which any crate in the build can turn on, as this crate's
//! `gui` feature does) systems that are not ordered against each other run in whatever
//! order the threads happen to take, so the same test could play out differently from run
//! to run. Clients update in creation order. What the harness cannot order is a server
//! that iterates a hash map (renet's `clients_id()` is one): when two clients' messages
//! reach it in the same frame, the server should sort the ids it reads.
//!
//! Each mode adds its plugins and helpers on top, as inherent methods of
//! `TestHarness<ItsMode>`: [`AtomicTestHarness`](crate::testing::atomic::AtomicTestHarness) and
//! [`NegotiatedTestHarness`](crate::testing::negotiated::NegotiatedTestHarness).
//!
//! # Recording
//!
//! [`TestHarness::record`] records every message of a type that an app writes, in every
//! app that has the message (the server, the clients there are and the clients added
//! later), into a [`Recorded`] resource of that app; read it back with
//! [`TestHarness::recorded`] (a client) or [`TestHarness::server_recorded`]. Each message
//! is stamped with the app's [`RecordClock`] if it has one (a mode can keep it at the time
//! that matters to its tests), otherwise with the app's elapsed manual time.

use std::any::type_name;
use std::time::Duration;

use bevy::ecs::message::Messages;
use bevy::ecs::schedule::{Schedules, SingleThreadedExecutor};
use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use bevy_renet::renet::ConnectionConfig;
use bevy_renet::{RenetClient, RenetClientPlugin, RenetServer};

use crate::shared::connection_config::MatchmakingConnectionConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;

mod servers;

use super::local_link::{LinkFaults, LocalLink};
use crate::shared::codec;
use crate::shared::inbox::MatchmakingInbox;
use crate::shared::messages::MatchmakingMessageVisitor;
use crate::shared::player::PlayerId;

/// The manual time step of the harnesses unless they say otherwise.
pub const DEFAULT_STEP: Duration = Duration::from_millis(10);

/// What a mode tells the shared harness: the messages its raw clients speak.
pub trait HarnessMode: Sized + 'static {
    /// What a client sends the server on the mode's channel.
    type AtomicClientMessage: Serialize;
    /// What the server sends a client on the mode's channel.
    type AtomicServerMessage: DeserializeOwned;
}

/// One client of a [`TestHarness`].
pub struct HarnessClient {
    /// Its id (the renet client id the server sees).
    pub id: PlayerId,
    /// Its app.
    pub app: App,
    /// Its connection as the harness drives it.
    pub link: LocalLink,
    /// Connections it had before this one (a reconnection starts a new one).
    generation: u64,
    /// When a dropped connection opens again ([`TestHarness::reconnect`]).
    reconnect_at: Option<Duration>,
    /// The server it is connected to: 0 is [`TestHarness::server`], 1.. the ones
    /// [`TestHarness::add_server`] added.
    on: usize,
}

/// Every message of type `M` an app wrote, in order, with the time each was recorded at.
#[derive(Resource, Debug, Clone)]
pub struct Recorded<M: Message> {
    messages: Vec<M>,
    times: Vec<Duration>,
}

impl<M: Message> Default for Recorded<M> {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            times: Vec::new(),
        }
    }
}

impl<M: Message> Recorded<M> {
    /// The messages, oldest first.
    pub fn messages(&self) -> &[M] {
        &self.messages
    }

    /// When each message was recorded (same order as [`messages`](Self::messages)): the
    /// app's [`RecordClock`] at the time, or its elapsed manual time without one.
    pub fn times(&self) -> &[Duration] {
        &self.times
    }
}

/// The time recorders stamp messages with, when an app has this resource; a mode keeps
/// it current in [`Last`], before [`HarnessSystems::Record`].
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordClock(pub Duration);

/// The harness's own systems.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HarnessSystems {
    /// The recorders, in [`Last`].
    Record,
}

fn record<M: Message + Clone>(
    mut recorded: ResMut<Recorded<M>>,
    mut messages: MessageReader<M>,
    clock: Option<Res<RecordClock>>,
    time: Res<Time<Real>>,
) {
    let now = clock.map_or_else(|| time.elapsed(), |c| c.0);
    for message in messages.read() {
        recorded.messages.push(message.clone());
        recorded.times.push(now);
    }
}

/// Records every `M` the app writes from now on into its [`Recorded<M>`] resource (in
/// [`Last`]), for an app a test drives without the harness. The app must have the message
/// already (add the plugin first); recording it twice records once.
pub fn record_messages<M: Message + Clone>(app: &mut App) {
    install_recorder::<M>(app);
}

/// Adds the recorder of `M` to an app that has the message and no recorder for it yet.
fn install_recorder<M: Message + Clone>(app: &mut App) {
    let world = app.world();
    if world.contains_resource::<Messages<M>>() && !world.contains_resource::<Recorded<M>>() {
        app.init_resource::<Recorded<M>>()
            .add_systems(Last, record::<M>.in_set(HarnessSystems::Record));
    }
}

/// How many schedules [`single_threaded`] last saw in an app.
#[derive(Resource)]
struct SingleThreaded(usize);

/// Makes every schedule of `app` run on Bevy's single-threaded executor (in its
/// topological order, the same every run), unless it already did and no schedule was
/// added since. The harness calls it before every update of every app.
pub fn single_threaded(app: &mut App) {
    let world = app.world_mut();
    let count = world.resource::<Schedules>().iter().count();
    if world
        .get_resource::<SingleThreaded>()
        .is_some_and(|s| s.0 == count)
    {
        return;
    }
    for (_, schedule) in world.resource_mut::<Schedules>().iter_mut() {
        schedule.set_executor(SingleThreadedExecutor::new());
    }
    world.insert_resource(SingleThreaded(count));
}

/// An app with the minimal plugins on manual time: every update advances it by `step`.
pub fn manual_app(step: Duration) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(step));
    app
}

/// Finishes an app's plugins as `App::run` would ([`Plugin::finish`], then
/// [`Plugin::cleanup`]), for an app the caller drives with `App::update`. The crate's plugins
/// add what they need from bevy_renet and Bevy there, if the app has not. Does nothing to an
/// app already finished.
pub fn finish_plugins(app: &mut App) {
    use bevy::app::PluginsState;
    if app.plugins_state() == PluginsState::Cleaned {
        return;
    }
    while app.plugins_state() == PluginsState::Adding {
        std::thread::yield_now();
    }
    if app.plugins_state() == PluginsState::Ready {
        app.finish();
    }
    app.cleanup();
}

/// A [`manual_app`] with a renet server for local clients: what a mode adds its server
/// plugin to.
pub fn server_app(step: Duration, config: ConnectionConfig) -> App {
    let mut app = manual_app(step);
    app.insert_resource(MatchmakingConnectionConfig::new(&config))
        .insert_resource(RenetServer::new(config))
        .init_resource::<MatchmakingInbox>();
    app
}

/// A server app and client apps in one process, on manual time. See the
/// [module documentation](self).
pub struct TestHarness<M: HarnessMode> {
    /// The server app (the matchmaking server or the relay).
    pub server: App,
    /// The clients, in creation order.
    pub clients: Vec<HarnessClient>,
    /// Manual time step of every app.
    pub step: Duration,
    /// The renet channel the mode's messages travel on.
    pub channel_id: u8,
    /// The mode's own settings and state.
    pub mode: M,
    next_id: PlayerId,
    recorders: Vec<fn(&mut App)>,
    now: Duration,
    link_seed: u64,
    /// Servers 1.. ([`add_server`](Self::add_server)); `None` once killed.
    others: Vec<Option<App>>,
}

/// The seed of one connection's faults: the harness's seed, the client and which of its
/// connections it is.
fn link_seed(seed: u64, id: PlayerId, generation: u64) -> u64 {
    seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ generation.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Server `on` of a harness (0: `server`, 1..: `others`), unless it was killed.
fn servers_mut<'a>(
    server: &'a mut App,
    others: &'a mut [Option<App>],
    on: usize,
) -> Option<&'a mut App> {
    match on {
        0 => Some(server),
        k => others.get_mut(k - 1).and_then(Option::as_mut),
    }
}

/// Records every message type it visits: pass it to a plugin's `visit_client_messages`.
pub struct HarnessRecorder<'a, M: HarnessMode>(&'a mut TestHarness<M>);

impl<M: HarnessMode> MatchmakingMessageVisitor for HarnessRecorder<'_, M> {
    fn visit<Msg: Message + Clone>(&mut self) {
        self.0.record::<Msg>();
    }
}

impl<M: HarnessMode> TestHarness<M> {
    /// A visitor that [`record`](Self::record)s every message type a plugin lists.
    pub fn recorder(&mut self) -> HarnessRecorder<'_, M> {
        HarnessRecorder(self)
    }

    /// A harness around `server` (made with [`server_app`] and the mode's plugin), with
    /// no clients yet. The server is not updated: the mode runs its first update (which
    /// only starts the clock) once it registered what it records.
    pub fn from_server(mode: M, mut server: App, channel_id: u8, step: Duration) -> Self {
        finish_plugins(&mut server);
        Self {
            server,
            clients: Vec::new(),
            step,
            channel_id,
            mode,
            next_id: 1,
            recorders: Vec::new(),
            now: Duration::ZERO,
            link_seed: 0,
            others: Vec::new(),
        }
    }

    /// Clients added from now on get player ids from `id` on (harnesses whose servers are
    /// nodes of one cluster need ids of their own).
    pub fn set_next_id(&mut self, id: PlayerId) {
        self.next_id = id;
    }

    /// Records every `Msg` written in every app that has the message, from now on and in
    /// every client added later. Calling it twice for a type records once.
    pub fn record<Msg: Message + Clone>(&mut self) -> &mut Self {
        self.recorders.push(install_recorder::<Msg>);
        install_recorder::<Msg>(&mut self.server);
        for client in &mut self.clients {
            install_recorder::<Msg>(&mut client.app);
        }
        self
    }

    /// What a client recorded of `Msg` (with the times, see [`Recorded`]).
    ///
    /// # Panics
    /// If the client does not record `Msg` (not [`record`](Self::record)ed, or the app does
    /// not have the message: a raw client, or a message of the other side).
    pub fn recording<Msg: Message>(&self, id: PlayerId) -> &Recorded<Msg> {
        self.client_world(id)
            .get_resource::<Recorded<Msg>>()
            .unwrap_or_else(|| panic!("client {id} does not record {}", type_name::<Msg>()))
    }

    /// Every `Msg` a client's app wrote, oldest first. Panics as [`recording`](Self::recording).
    pub fn recorded<Msg: Message>(&self, id: PlayerId) -> &[Msg] {
        self.recording::<Msg>(id).messages()
    }

    /// Every `Msg` the server app wrote, oldest first.
    ///
    /// # Panics
    /// If the server does not record `Msg`.
    pub fn server_recorded<Msg: Message>(&self) -> &[Msg] {
        self.server
            .world()
            .get_resource::<Recorded<Msg>>()
            .unwrap_or_else(|| panic!("the server does not record {}", type_name::<Msg>()))
            .messages()
    }

    /// Adds a client app on a new local connection: a [`manual_app`] with the connection,
    /// finished by `setup` (given the new id), then the recorders. Returns its id.
    pub fn add_local_client(&mut self, setup: impl FnOnce(&mut App, PlayerId)) -> PlayerId {
        let id = self.next_id;
        self.next_id += 1;
        let mut app = manual_app(self.step);
        app.insert_resource(self.connect_to(id, 0));
        if let Some(config) = self
            .server
            .world()
            .get_resource::<MatchmakingConnectionConfig>()
        {
            // the local client runs on the server's config
            app.insert_resource(config.clone());
        }
        setup(&mut app, id);
        finish_plugins(&mut app);
        for install in &self.recorders {
            install(&mut app);
        }
        self.clients.push(HarnessClient {
            id,
            app,
            link: LocalLink::seeded(link_seed(self.link_seed, id, 0)),
            generation: 0,
            reconnect_at: None,
            on: 0,
        });
        id
    }

    /// Adds a connected client *without* the mode's plugin: it sends only what the test
    /// writes with [`send_message`](Self::send_message) and [`send_raw`](Self::send_raw),
    /// and the test reads what the server sent with [`take_messages`](Self::take_messages).
    /// For hostile-input and forgery tests.
    pub fn add_raw_client(&mut self) -> PlayerId {
        self.add_local_client(|app, _| {
            app.add_plugins(RenetClientPlugin);
        })
    }

    /// A new local connection to server `on`, as the client's resource.
    fn connect_to(&mut self, id: PlayerId, on: usize) -> RenetClient {
        let mut server = self
            .server_app_mut(on)
            .expect("connect to a live server")
            .world_mut()
            .resource_mut::<RenetServer>();
        RenetClient(server.new_local_client(id))
    }

    fn index(&self, id: PlayerId) -> usize {
        self.clients
            .iter()
            .position(|c| c.id == id)
            .unwrap_or_else(|| panic!("no client {id}"))
    }

    /// A client's app.
    pub fn client(&mut self, id: PlayerId) -> &mut App {
        let i = self.index(id);
        &mut self.clients[i].app
    }

    /// A client's world, to read.
    pub fn client_world(&self, id: PlayerId) -> &World {
        self.clients[self.index(id)].app.world()
    }

    /// A resource of a client's app.
    pub fn resource<R: Resource>(&self, id: PlayerId) -> &R {
        self.client_world(id).resource::<R>()
    }

    /// A resource of the server app.
    pub fn server_resource<R: Resource>(&self) -> &R {
        self.server.world().resource::<R>()
    }

    /// Writes a message into a client app (what the game would write).
    pub fn send<Msg: Message>(&mut self, id: PlayerId, message: Msg) {
        self.client(id).world_mut().write_message(message);
    }

    /// Sends raw bytes from a client on the mode's channel.
    pub fn send_raw(&mut self, id: PlayerId, bytes: Vec<u8>) {
        let channel = self.channel_id;
        let mut renet = self.client(id).world_mut().resource_mut::<RenetClient>();
        renet.send_message(channel, bytes);
    }

    /// Encodes and sends a protocol message from a (raw) client.
    pub fn send_message(&mut self, id: PlayerId, message: &M::AtomicClientMessage) {
        self.send_raw(id, codec::encode(message));
    }

    /// Decodes everything the server sent a raw client since the last call.
    ///
    /// # Panics
    /// If the server sent undecodable bytes.
    pub fn take_messages(&mut self, id: PlayerId) -> Vec<M::AtomicServerMessage> {
        let channel = self.channel_id;
        let mut renet = self.client(id).world_mut().resource_mut::<RenetClient>();
        let mut messages = Vec::new();
        while let Some(bytes) = renet.receive_message(channel) {
            messages.push(codec::decode(&bytes).expect("the server sends valid messages"));
        }
        messages
    }

    /// Whether a client's connection is still open on both sides.
    pub fn is_connected(&self, id: PlayerId) -> bool {
        let client = &self.clients[self.index(id)];
        !client.link.is_closed()
            && self
                .server_app(client.on)
                .is_some_and(|s| s.world().resource::<RenetServer>().is_connected(id))
    }

    /// Closes a client's connection for good, as a player quitting the game would (and
    /// cancels a [`reconnect`](Self::reconnect) under way).
    pub fn disconnect(&mut self, id: PlayerId) {
        let i = self.index(id);
        let on = self.clients[i].on;
        self.clients[i].reconnect_at = None;
        let Some(server) = servers_mut(&mut self.server, &mut self.others, on) else {
            // its server is gone: nobody hears of it
            return;
        };
        let client = &mut self.clients[i];
        let mut renet = client.app.world_mut().resource_mut::<RenetClient>();
        let mut server = server.world_mut().resource_mut::<RenetServer>();
        client.link.close(&mut server, id, &mut renet);
    }

    /// Stops exchanging a client's packets without closing the connection (a stalled
    /// network: renet keeps them until the link is up again), or resumes it.
    pub fn set_link(&mut self, id: PlayerId, up: bool) {
        let i = self.index(id);
        self.clients[i].link.set_up(up);
    }

    /// The network clock the links run on: [`step`](Self::step) per update since the
    /// harness was made.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Seeds the random source of every link's faults, now and for every link made later
    /// (each link draws from this seed, its client id and its connection number).
    pub fn seed_links(&mut self, seed: u64) {
        self.link_seed = seed;
        for client in &mut self.clients {
            client
                .link
                .reseed(link_seed(seed, client.id, client.generation));
        }
    }

    /// Makes a client's link misbehave (or behave again, with the default faults).
    pub fn set_faults(&mut self, id: PlayerId, faults: LinkFaults) {
        let i = self.index(id);
        self.clients[i].link.set_faults(faults);
    }

    /// A client's link faults.
    pub fn link_faults(&self, id: PlayerId) -> LinkFaults {
        self.clients[self.index(id)].link.faults()
    }

    /// Holds every packet of a client's link, both ways, for `duration` of network time;
    /// then they arrive in order (renet's resends with them).
    pub fn stall_link(&mut self, id: PlayerId, duration: Duration) {
        let until = self.now + duration;
        let i = self.index(id);
        self.clients[i].link.stall_until(until);
    }

    /// Drops a client's connection now and opens a new one under the same id once its
    /// app ran one update without it (it sees the loss), as a game that lost its
    /// connection and reconnected would. The app keeps its state; the server sees a
    /// disconnection, then a new connection. Packets in flight are lost; the new link has
    /// the old one's faults. Works on a closed connection too (a player coming back).
    pub fn reconnect(&mut self, id: PlayerId) {
        self.disconnect(id);
        let at = self.now + self.step * 2;
        let i = self.index(id);
        self.clients[i].reconnect_at = Some(at);
    }

    /// Whether a client waits to reconnect.
    pub fn is_reconnecting(&self, id: PlayerId) -> bool {
        self.clients[self.index(id)].reconnect_at.is_some()
    }

    /// Opens the connections whose reconnection is due.
    fn reconnect_due(&mut self) {
        for i in 0..self.clients.len() {
            if self.clients[i].reconnect_at.is_none_or(|at| at > self.now) {
                continue;
            }
            let (id, on) = (self.clients[i].id, self.clients[i].on);
            let renet = self.connect_to(id, on);
            self.renew_link(i);
            let client = &mut self.clients[i];
            client.reconnect_at = None;
            client.app.insert_resource(renet);
        }
    }

    /// Gives a client a fresh link (a new connection) with the old one's faults.
    fn renew_link(&mut self, i: usize) {
        let client = &mut self.clients[i];
        client.generation += 1;
        let faults = client.link.faults();
        client.link = LocalLink::seeded(link_seed(self.link_seed, client.id, client.generation));
        client.link.set_faults(faults);
    }

    /// Runs one update in which the server's frame starts `gap` after its previous one
    /// (a server frame that took that long: a stall), while the clients and the network
    /// step as usual.
    pub fn stall_server(&mut self, gap: Duration) {
        self.server
            .insert_resource(TimeUpdateStrategy::ManualDuration(gap));
        self.update();
        self.server
            .insert_resource(TimeUpdateStrategy::ManualDuration(self.step));
    }

    /// Replaces the server app with `server` (already started), as a server restart
    /// would: every client that was not closed sees its connection drop for one update,
    /// then gets a new connection (and link: packets in flight are lost) to the new server.
    pub fn replace_server(&mut self, server: App) {
        let mut old = self.server.world_mut().resource_mut::<RenetServer>();
        for client in self
            .clients
            .iter_mut()
            .filter(|c| !c.link.is_closed() && c.on == 0)
        {
            let mut renet = client.app.world_mut().resource_mut::<RenetClient>();
            old.disconnect_local_client(client.id, &mut renet);
        }
        for client in &mut self.clients {
            single_threaded(&mut client.app);
            client.app.update();
        }
        self.server = server;
        for install in &self.recorders {
            install(&mut self.server);
        }
        for i in 0..self.clients.len() {
            if !self.clients[i].link.is_closed() && self.clients[i].on == 0 {
                let renet = self.connect_to(self.clients[i].id, 0);
                self.renew_link(i);
                self.clients[i].app.insert_resource(renet);
            }
        }
    }

    fn exchange(&mut self) {
        for on in 0..=self.others.len() {
            self.exchange_with(on);
        }
    }

    /// Packets both ways between server `on` and its clients.
    fn exchange_with(&mut self, on: usize) {
        let now = self.now;
        let clients = &mut self.clients;
        let Some(server) = servers_mut(&mut self.server, &mut self.others, on) else {
            return;
        };
        let world = server.world_mut();
        world.resource_scope(|world, mut server: Mut<RenetServer>| {
            let mut inbox = world.get_resource_mut::<MatchmakingInbox>();
            for client in clients.iter_mut().filter(|c| c.on == on) {
                let mut renet = client.app.world_mut().resource_mut::<RenetClient>();
                let inbox = inbox.as_deref_mut();
                client
                    .link
                    .exchange(&mut server, inbox, client.id, &mut renet, now);
            }
        });
    }

    /// Runs one update of every app: the network clock advances, due reconnections
    /// open, packets both ways, the server, packets both ways, every client (in creation
    /// order).
    pub fn update(&mut self) {
        self.now += self.step;
        self.reconnect_due();
        self.exchange();
        single_threaded(&mut self.server);
        self.server.update();
        for server in self.others.iter_mut().flatten() {
            single_threaded(server);
            server.update();
        }
        self.exchange();
        for client in &mut self.clients {
            single_threaded(&mut client.app);
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

    /// Runs updates until `done` holds; returns how many ran.
    ///
    /// # Panics
    /// If `done` does not hold after `max_updates`.
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
}
