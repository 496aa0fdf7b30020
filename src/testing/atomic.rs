//! An in-process harness for atomic matchmaking: one server [`App`] and N client [`App`]s
//! connected with renet's local clients, all driven by manual time.
//!
//! [`AtomicTestHarness`] is the shared [`TestHarness`] (updates, links, raw clients,
//! recording) with the server and client plugins and helpers for this mode. Everything the
//! plugins report is recorded: read it with
//! [`server_recorded`](TestHarness::server_recorded) (for example
//! [`AtomicMatchOutcome`]) and [`recorded`](TestHarness::recorded) (for example
//! [`AtomicMatchFound`] of a client).

use bevy::prelude::*;
use bevy_renet::{RenetClient, RenetServer};

use crate::atomic::AtomicChannel;
/// The client faults the harness drives, here beside it.
pub use crate::atomic::client::AtomicClientFaults;
use crate::atomic::client::*;
use crate::atomic::core::protocol::{AtomicClientMessage, AtomicServerMessage};
use crate::atomic::server::*;
use crate::shared::player::PlayerId;
use crate::testing::harness::{
    DEFAULT_STEP, HarnessMode, TestHarness, finish_plugins, manual_app, server_app,
};
use crate::testing::local_link::LocalLink;

/// The atomic mode of the shared harness.
#[derive(Debug, Clone, Copy)]
pub struct AtomicHarnessMode {
    /// The channel both sides use.
    pub channel: AtomicChannel,
}

impl HarnessMode for AtomicHarnessMode {
    type AtomicClientMessage = AtomicClientMessage;
    type AtomicServerMessage = AtomicServerMessage;
}

/// A matchmaking server app and client apps in one process.
pub type AtomicTestHarness = TestHarness<AtomicHarnessMode>;

impl TestHarness<AtomicHarnessMode> {
    /// A server with these settings, stepping 10 ms per frame, recording every message
    /// the server and client plugins write.
    pub fn new(settings: AtomicServerSettings) -> Self {
        let channel = AtomicChannel::default();
        let mut server = server_app(DEFAULT_STEP, channel.connection_config());
        server
            .insert_resource(settings)
            .add_plugins(AtomicServerPlugin {
                channel,
                ..default()
            });
        server
            .world_mut()
            .resource_mut::<AtomicServerState>()
            .seed(7);
        let mut h = Self::from_server(
            AtomicHarnessMode { channel },
            server,
            channel.id,
            DEFAULT_STEP,
        );
        h.record_all();
        // the first update only starts the clock
        h.server.update();
        h
    }

    /// A server that is the node `node` of a cluster on `backend` (clone one
    /// [`AtomicClusterBackend::memory`](crate::atomic::cluster::AtomicClusterBackend::memory)
    /// into every node), its clients' player ids from
    /// `first_id` on, recording every message the client plugin writes.
    pub fn cluster_node(
        backend: crate::atomic::cluster::AtomicClusterBackend,
        node: &str,
        first_id: PlayerId,
    ) -> Self {
        use crate::atomic::cluster::AtomicClusterServerPlugin;
        use crate::atomic::core::cluster::AtomicClusterSettings;
        let channel = AtomicChannel::default();
        let mut server = server_app(DEFAULT_STEP, channel.connection_config());
        server.add_plugins(AtomicClusterServerPlugin {
            channel,
            node: AtomicClusterSettings::new(node),
            backend,
            gate: default(),
            seed: first_id,
        });
        let mode = AtomicHarnessMode { channel };
        let mut h = Self::from_server(mode, server, channel.id, DEFAULT_STEP);
        h.set_next_id(first_id);
        visit_client_messages(&mut h.recorder());
        h.server.update();
        h
    }

    /// Records every message of the server and client plugins (in every app that has it
    /// and has no recorder for it yet).
    fn record_all(&mut self) {
        self.record::<AtomicMatchOutcome>()
            .record::<AtomicMatchCommitted>();
        visit_client_messages(&mut self.recorder());
    }

    /// Closes a client's connection and opens a new one under the same player id from a
    /// fresh game (a restarted game, netcode allows the id again once the old connection
    /// is gone). The server sees a new session; the client is a new app with the client
    /// plugin, whose recordings start empty. [`reconnect`](TestHarness::reconnect) keeps
    /// the app instead.
    pub fn reconnect_fresh(&mut self, player: PlayerId) {
        self.disconnect(player);
        let channel = self.mode.channel;
        let renet = self
            .server
            .world_mut()
            .resource_mut::<RenetServer>()
            .new_local_client(player);
        let mut app = manual_app(self.step);
        app.insert_resource(RenetClient(renet))
            .add_plugins(AtomicClientPlugin { channel });
        finish_plugins(&mut app);
        let client = self
            .clients
            .iter_mut()
            .find(|c| c.id == player)
            .expect("no such client");
        client.app = app;
        client.link = LocalLink::default();
        self.record_all();
    }

    /// Adds a connected client with the client plugin; returns its player id.
    pub fn add_client(&mut self) -> PlayerId {
        let channel = self.mode.channel;
        self.add_local_client(|app, _| {
            app.add_plugins(AtomicClientPlugin { channel });
        })
    }

    /// Adds `n` clients and runs frames until all are welcomed.
    pub fn add_clients(&mut self, n: usize) -> Vec<PlayerId> {
        let players: Vec<PlayerId> = (0..n).map(|_| self.add_client()).collect();
        self.run_until(100, |h| {
            players
                .iter()
                .all(|p| h.client_state(*p) != AtomicClientState::Disconnected)
        });
        players
    }

    /// A client's state.
    pub fn client_state(&self, player: PlayerId) -> AtomicClientState {
        *self.resource::<State<AtomicClientState>>(player).get()
    }

    /// A client's faults, to make it misbehave.
    pub fn faults(&mut self, player: PlayerId) -> Mut<'_, AtomicClientFaults> {
        self.client(player)
            .world_mut()
            .resource_mut::<AtomicClientFaults>()
    }

    /// The server's stats.
    pub fn stats(&self) -> &AtomicServerStats {
        self.server_resource::<AtomicServerStats>()
    }

    /// The server's state.
    pub fn server_state(&self) -> &AtomicServerState {
        self.server_resource::<AtomicServerState>()
    }

    /// Makes a client join a category's queue.
    pub fn join(&mut self, player: PlayerId, category: &str) {
        self.send(
            player,
            AtomicJoinQueue {
                category: category.into(),
            },
        );
    }
}
