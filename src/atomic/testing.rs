//! An in-process harness for atomic matchmaking: one server [`App`] and N client [`App`]s
//! connected with renet's local clients, all driven by manual time.
//!
//! [`MatchmakingTestHarness`] is the shared [`TestHarness`] (updates, links, raw clients,
//! recording) with the server and client plugins and helpers for this mode. Everything the
//! plugins report is recorded: read it with
//! [`server_recorded`](TestHarness::server_recorded) (for example
//! [`MatchmakingOutcome`]) and [`recorded`](TestHarness::recorded) (for example
//! [`MatchmakingMatchFound`] of a client).

use bevy::prelude::*;

use crate::atomic::MatchmakingChannel;
use crate::atomic::client::*;
use crate::atomic::core::protocol::{ClientMessage, ServerMessage};
use crate::atomic::server::*;
use crate::shared::harness::{DEFAULT_STEP, HarnessMode, TestHarness, server_app};
use crate::shared::player::PlayerId;

/// The atomic mode of the shared harness.
#[derive(Debug, Clone, Copy)]
pub struct AtomicMode {
    /// The channel both sides use.
    pub channel: MatchmakingChannel,
}

impl HarnessMode for AtomicMode {
    type ClientMessage = ClientMessage;
    type ServerMessage = ServerMessage;
}

/// A matchmaking server app and client apps in one process.
pub type MatchmakingTestHarness = TestHarness<AtomicMode>;

impl TestHarness<AtomicMode> {
    /// A server with these settings, stepping 10 ms per frame, recording every message
    /// the server and client plugins write.
    pub fn new(settings: MatchmakingServerSettings) -> Self {
        let channel = MatchmakingChannel::default();
        let mut server = server_app(DEFAULT_STEP, channel.connection_config());
        server
            .insert_resource(settings)
            .add_plugins(MatchmakingServerPlugin {
                channel,
                ..default()
            });
        server
            .world_mut()
            .resource_mut::<MatchmakingServerState>()
            .seed(7);
        let mut h = Self::from_server(AtomicMode { channel }, server, channel.id, DEFAULT_STEP);
        h.record::<MatchmakingOutcome>()
            .record::<MatchmakingMatchCommitted>();
        visit_client_messages(&mut h.recorder());
        // the first update only starts the clock
        h.server.update();
        h
    }

    /// Adds a connected client with the client plugin; returns its player id.
    pub fn add_client(&mut self) -> PlayerId {
        let channel = self.mode.channel;
        self.add_local_client(|app, _| {
            app.add_plugins(MatchmakingClientPlugin { channel });
        })
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

    /// A client's state.
    pub fn client_state(&self, player: PlayerId) -> MatchmakingClientState {
        *self.resource::<State<MatchmakingClientState>>(player).get()
    }

    /// A client's faults, to make it misbehave.
    pub fn faults(&mut self, player: PlayerId) -> Mut<'_, MatchmakingClientFaults> {
        self.client(player)
            .world_mut()
            .resource_mut::<MatchmakingClientFaults>()
    }

    /// The server's stats.
    pub fn stats(&self) -> &MatchmakingServerStats {
        self.server_resource::<MatchmakingServerStats>()
    }

    /// The server's state.
    pub fn server_state(&self) -> &MatchmakingServerState {
        self.server_resource::<MatchmakingServerState>()
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
}
