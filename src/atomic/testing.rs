//! An in-process harness: one server [`App`] and N client [`App`]s connected with
//! renet's local clients, all driven by manual time.
//!
//! Every [`MatchmakingTestHarness::update`] advances all apps by the same step and
//! exchanges packets before and after the server runs, so a round trip takes one frame.
//! Everything the plugins report is recorded in [`MatchmakingServerLog`] on the server
//! and [`MatchmakingClientLog`] on each client, so tests can look at it at any time.

use std::time::Duration;

use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use bevy_renet::{RenetClient, RenetServer};

use crate::atomic::MatchmakingChannel;
use crate::atomic::client::*;
use crate::atomic::core::protocol::{ClientMessage, ServerMessage};
use crate::atomic::server::*;
use crate::shared::codec;
use crate::shared::local_link::LocalLink;
use crate::shared::player::PlayerId;

/// Everything the server plugin wrote, in order.
#[derive(Resource, Debug, Default, Clone)]
pub struct MatchmakingServerLog {
    /// Every outcome (commits and rollbacks).
    pub outcomes: Vec<MatchmakingOutcome>,
    /// Every committed match.
    pub committed: Vec<MatchmakingMatchCommitted>,
}

/// Everything a client plugin wrote, in order.
#[derive(Resource, Debug, Default, Clone)]
pub struct MatchmakingClientLog {
    /// Queue joins (including re-queues).
    pub joined: Vec<MatchmakingQueueJoined>,
    /// Queue leaves.
    pub left: Vec<MatchmakingQueueLeft>,
    /// Matches that started forming.
    pub checking: Vec<MatchmakingMatchChecking>,
    /// Proposals received.
    pub proposed: Vec<MatchmakingMatchProposed>,
    /// Committed matches.
    pub found: Vec<MatchmakingMatchFound>,
    /// Cancelled matches.
    pub cancelled: Vec<MatchmakingMatchCancelled>,
    /// Lobbies left.
    pub lobby_left: Vec<MatchmakingLobbyLeft>,
    /// Errors.
    pub errors: Vec<MatchmakingClientError>,
}

fn record_server(
    mut log: ResMut<MatchmakingServerLog>,
    mut outcomes: MessageReader<MatchmakingOutcome>,
    mut committed: MessageReader<MatchmakingMatchCommitted>,
) {
    log.outcomes.extend(outcomes.read().cloned());
    log.committed.extend(committed.read().cloned());
}

#[derive(bevy::ecs::system::SystemParam)]
struct ClientReaders<'w, 's> {
    joined: MessageReader<'w, 's, MatchmakingQueueJoined>,
    left: MessageReader<'w, 's, MatchmakingQueueLeft>,
    checking: MessageReader<'w, 's, MatchmakingMatchChecking>,
    proposed: MessageReader<'w, 's, MatchmakingMatchProposed>,
    found: MessageReader<'w, 's, MatchmakingMatchFound>,
    cancelled: MessageReader<'w, 's, MatchmakingMatchCancelled>,
    lobby_left: MessageReader<'w, 's, MatchmakingLobbyLeft>,
    errors: MessageReader<'w, 's, MatchmakingClientError>,
}

fn record_client(mut log: ResMut<MatchmakingClientLog>, mut r: ClientReaders) {
    log.joined.extend(r.joined.read().cloned());
    log.left.extend(r.left.read().cloned());
    log.checking.extend(r.checking.read().cloned());
    log.proposed.extend(r.proposed.read().cloned());
    log.found.extend(r.found.read().cloned());
    log.cancelled.extend(r.cancelled.read().cloned());
    log.lobby_left.extend(r.lobby_left.read().cloned());
    log.errors.extend(r.errors.read().cloned());
}

/// One client of the harness.
pub struct MatchmakingTestClient {
    /// Its player id (the renet client id).
    pub player: PlayerId,
    /// Its app.
    pub app: App,
    /// Its connection as the harness drives it.
    pub link: LocalLink,
}

/// A server app and client apps in one process.
pub struct MatchmakingTestHarness {
    /// The server app.
    pub server: App,
    /// The clients, in creation order.
    pub clients: Vec<MatchmakingTestClient>,
    /// Manual time step of every app.
    pub step: Duration,
    /// The channel both sides use.
    pub channel: MatchmakingChannel,
    next_player: PlayerId,
}

impl MatchmakingTestHarness {
    /// A server with these settings, stepping 10 ms per frame.
    pub fn new(settings: MatchmakingServerSettings) -> Self {
        let step = Duration::from_millis(10);
        let channel = MatchmakingChannel::default();
        let mut server = App::new();
        server
            .add_plugins(MinimalPlugins)
            .insert_resource(TimeUpdateStrategy::ManualDuration(step))
            .insert_resource(RenetServer::new(channel.connection_config()))
            .insert_resource(settings)
            .add_plugins(MatchmakingServerPlugin {
                channel,
                ..default()
            })
            .init_resource::<MatchmakingServerLog>()
            .add_systems(Last, record_server);
        server
            .world_mut()
            .resource_mut::<MatchmakingServerState>()
            .seed(7);
        // the first update only starts the clock
        server.update();
        Self {
            server,
            clients: Vec::new(),
            step,
            channel,
            next_player: 1,
        }
    }

    /// Adds a connected client; returns its player id.
    pub fn add_client(&mut self) -> PlayerId {
        let channel = self.channel;
        self.add_local_client(|app| {
            app.add_plugins(MatchmakingClientPlugin { channel })
                .init_resource::<MatchmakingClientLog>()
                .add_systems(Last, record_client);
        })
    }

    /// Adds a connected client *without* the client plugin: it sends only what the test
    /// writes with [`Self::send_raw`] and [`Self::send_client_message`], and the test reads
    /// what the server sent with [`Self::receive_raw`]. For hostile-input tests.
    pub fn add_raw_client(&mut self) -> PlayerId {
        self.add_local_client(|app| {
            app.add_plugins(bevy_renet::RenetClientPlugin);
        })
    }

    /// A client app on a new local connection, finished by `setup`.
    fn add_local_client(&mut self, setup: impl FnOnce(&mut App)) -> PlayerId {
        let player = self.next_player;
        self.next_player += 1;
        let app = self.local_client_app(player, setup);
        self.clients.push(MatchmakingTestClient {
            player,
            app,
            link: LocalLink::default(),
        });
        player
    }

    /// A client app on a new local connection under `player`, finished by `setup`.
    fn local_client_app(&mut self, player: PlayerId, setup: impl FnOnce(&mut App)) -> App {
        let client = self
            .server
            .world_mut()
            .resource_mut::<RenetServer>()
            .new_local_client(player);
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .insert_resource(TimeUpdateStrategy::ManualDuration(self.step))
            .insert_resource(RenetClient(client));
        setup(&mut app);
        app
    }

    /// Closes a client's connection and opens a new one under the same player id, as a
    /// game that lost its connection and reconnected would (netcode allows the id again
    /// once the old connection is gone). The server sees a new session; the client is a
    /// fresh app with the client plugin (its log starts empty).
    pub fn reconnect(&mut self, player: PlayerId) {
        self.disconnect(player);
        let channel = self.channel;
        let app = self.local_client_app(player, |app| {
            app.add_plugins(MatchmakingClientPlugin { channel })
                .init_resource::<MatchmakingClientLog>()
                .add_systems(Last, record_client);
        });
        let i = self.index(player);
        self.clients[i].app = app;
        self.clients[i].link = LocalLink::default();
    }

    /// Runs one frame that starts `gap` after the server's previous one (a server frame
    /// that took that long: a stall), while the clients step as usual.
    pub fn stall_server(&mut self, gap: Duration) {
        self.server
            .insert_resource(TimeUpdateStrategy::ManualDuration(gap));
        self.update();
        self.server
            .insert_resource(TimeUpdateStrategy::ManualDuration(self.step));
    }

    /// Encodes and sends a protocol message from a (raw) client.
    pub fn send_client_message(&mut self, player: PlayerId, message: &ClientMessage) {
        self.send_raw(player, codec::encode(message));
    }

    /// Decodes everything the server sent a raw client since the last call.
    pub fn receive_raw(&mut self, player: PlayerId) -> Vec<ServerMessage> {
        let channel = self.channel.id;
        let mut renet = self
            .client(player)
            .world_mut()
            .resource_mut::<RenetClient>();
        let mut messages = Vec::new();
        while let Some(bytes) = renet.receive_message(channel) {
            messages.push(codec::decode(&bytes).expect("the server sends valid messages"));
        }
        messages
    }

    /// Whether a client's connection is still open on both sides.
    pub fn is_connected(&self, player: PlayerId) -> bool {
        let i = self.index(player);
        !self.clients[i].link.is_closed()
            && self
                .server
                .world()
                .resource::<RenetServer>()
                .is_connected(player)
    }

    /// Adds `n` clients and runs frames until all are welcomed.
    pub fn add_clients(&mut self, n: usize) -> Vec<PlayerId> {
        let players: Vec<PlayerId> = (0..n).map(|_| self.add_client()).collect();
        self.run_until(100, |h| {
            players
                .iter()
                .all(|p| h.client_state(*p) != MatchmakingClientState::Disconnected)
        });
        players
    }

    fn index(&self, player: PlayerId) -> usize {
        self.clients
            .iter()
            .position(|c| c.player == player)
            .expect("no such client")
    }

    /// A client's app.
    pub fn client(&mut self, player: PlayerId) -> &mut App {
        let i = self.index(player);
        &mut self.clients[i].app
    }

    /// A client's log.
    pub fn client_log(&self, player: PlayerId) -> &MatchmakingClientLog {
        self.clients[self.index(player)]
            .app
            .world()
            .resource::<MatchmakingClientLog>()
    }

    /// A client's state.
    pub fn client_state(&self, player: PlayerId) -> MatchmakingClientState {
        *self.clients[self.index(player)]
            .app
            .world()
            .resource::<State<MatchmakingClientState>>()
            .get()
    }

    /// The server's log.
    pub fn server_log(&self) -> &MatchmakingServerLog {
        self.server.world().resource::<MatchmakingServerLog>()
    }

    /// The server's stats.
    pub fn stats(&self) -> &MatchmakingServerStats {
        self.server.world().resource::<MatchmakingServerStats>()
    }

    /// The server's state.
    pub fn server_state(&self) -> &MatchmakingServerState {
        self.server.world().resource::<MatchmakingServerState>()
    }

    /// Writes a message into a client app (for example [`MatchmakingJoinQueue`]).
    pub fn send<M: Message>(&mut self, player: PlayerId, message: M) {
        self.client(player).world_mut().write_message(message);
    }

    /// Makes a client join a category's queue.
    pub fn join(&mut self, player: PlayerId, category: &str) {
        self.send(
            player,
            MatchmakingJoinQueue {
                category: category.into(),
            },
        );
    }

    /// Sends raw bytes from a client on the matchmaking channel (for hostile-input tests).
    pub fn send_raw(&mut self, player: PlayerId, bytes: Vec<u8>) {
        let channel = self.channel.id;
        self.client(player)
            .world_mut()
            .resource_mut::<RenetClient>()
            .send_message(channel, bytes);
    }

    /// Closes a client's connection, as a player quitting the game would.
    pub fn disconnect(&mut self, player: PlayerId) {
        let i = self.index(player);
        let client = &mut self.clients[i];
        let mut renet = client.app.world_mut().resource_mut::<RenetClient>();
        let mut server = self.server.world_mut().resource_mut::<RenetServer>();
        client.link.close(&mut server, player, &mut renet);
    }

    /// Stops exchanging a client's packets without closing the connection (a stalled
    /// network), or resumes it.
    pub fn set_link(&mut self, player: PlayerId, up: bool) {
        let i = self.index(player);
        self.clients[i].link.set_up(up);
    }

    fn exchange(&mut self) {
        let mut server = self.server.world_mut().resource_mut::<RenetServer>();
        for client in &mut self.clients {
            let mut renet = client.app.world_mut().resource_mut::<RenetClient>();
            client.link.exchange(&mut server, client.player, &mut renet);
        }
    }

    /// Runs one frame of every app.
    pub fn update(&mut self) {
        self.exchange();
        self.server.update();
        self.exchange();
        for client in &mut self.clients {
            client.app.update();
        }
    }

    /// Runs `frames` frames.
    pub fn run(&mut self, frames: usize) {
        for _ in 0..frames {
            self.update();
        }
    }

    /// Runs for (at least) this much manual time.
    pub fn run_for(&mut self, duration: Duration) {
        let frames = duration.as_nanos().div_ceil(self.step.as_nanos()) as usize;
        self.run(frames);
    }

    /// Runs frames until `done` holds; panics after `max_frames`.
    pub fn run_until(&mut self, max_frames: usize, done: impl Fn(&Self) -> bool) -> usize {
        for frame in 0..max_frames {
            if done(self) {
                return frame;
            }
            self.update();
        }
        assert!(done(self), "condition not reached in {max_frames} frames");
        max_frames
    }
}
