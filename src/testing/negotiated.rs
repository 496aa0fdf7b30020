//! An in-process harness for negotiated matchmaking: one relay [`App`] and N client
//! [`App`]s connected with renet's local clients, all driven by manual time.
//!
//! [`NegotiatedTestHarness`] is the shared [`TestHarness`] (updates, links, raw clients,
//! recording) with the relay and client plugins and helpers for this mode; its `server`
//! is the relay. Everything a client plugin reports is recorded: read it with
//! [`recorded`](TestHarness::recorded), and with [`recording`](TestHarness::recording)
//! the relay time (as that client estimated it) each message was written at. Raw
//! clients (no plugin) send and read protocol messages directly, for hostile-input and
//! forgery tests.

use std::time::Duration;

use bevy::prelude::*;

use crate::shared::player::PlayerId;
use crate::testing::harness::{
    DEFAULT_STEP, HarnessMode, HarnessSystems, RecordClock, TestHarness, finish_plugins, server_app,
};

use crate::negotiated::channel::NegotiatedChannel;
/// The clock skew [`NegotiatedTestHarness::add_skewed_client`] sets, here beside it.
pub use crate::negotiated::client::NegotiatedClockSkew;
use crate::negotiated::client::*;
use crate::negotiated::core::frame::NegotiatedFrames;
use crate::negotiated::core::protocol::{NegotiatedClientMessage, NegotiatedRelayMessage};
use crate::negotiated::core::shared::NegotiatedMemorySharedStore;
use crate::negotiated::relay::{
    NegotiatedRelayPlugin, NegotiatedRelaySettings, NegotiatedRelayState, NegotiatedSharedFacts,
};

/// The relay epoch the harness uses unless the settings name one (any fixed value).
pub const NEGOTIATED_TEST_EPOCH: Duration = Duration::from_secs(1_000_000);

/// The negotiated mode of the shared harness.
#[derive(Debug, Clone)]
pub struct NegotiatedHarnessMode {
    /// The channel both sides use.
    pub channel: NegotiatedChannel,
    /// Settings of the relay (its epoch is set).
    pub relay_settings: NegotiatedRelaySettings,
    /// Settings new clients start from.
    pub client_settings: NegotiatedClientSettings,
}

impl HarnessMode for NegotiatedHarnessMode {
    type AtomicClientMessage = NegotiatedClientMessage;
    type AtomicServerMessage = NegotiatedRelayMessage;
}

/// A relay app and client apps in one process.
pub type NegotiatedTestHarness = TestHarness<NegotiatedHarnessMode>;

/// A started relay app.
fn relay_app(channel: NegotiatedChannel, step: Duration, settings: NegotiatedRelaySettings) -> App {
    let mut relay = server_app(step, channel.connection_config());
    relay.add_plugins(NegotiatedRelayPlugin { channel, settings });
    finish_plugins(&mut relay);
    // the first update only starts the clock
    relay.update();
    relay
}

/// Keeps a client's [`RecordClock`] at its estimate of relay time, so recorded messages
/// carry the relay time they were written at.
fn stamp_relay_time(status: Res<NegotiatedClientStatus>, mut clock: ResMut<RecordClock>) {
    clock.0 = status.relay_time.unwrap_or_default();
}

impl TestHarness<NegotiatedHarnessMode> {
    /// A relay with these settings (epoch [`NEGOTIATED_TEST_EPOCH`] unless set) and
    /// clients with these, stepping 10 ms per update, recording every message the client
    /// plugins write.
    pub fn new(
        mut relay_settings: NegotiatedRelaySettings,
        client_settings: NegotiatedClientSettings,
    ) -> Self {
        relay_settings.epoch.get_or_insert(NEGOTIATED_TEST_EPOCH);
        let channel = NegotiatedChannel::default();
        let relay = relay_app(channel, DEFAULT_STEP, relay_settings.clone());
        let mode = NegotiatedHarnessMode {
            channel,
            relay_settings,
            client_settings,
        };
        let mut h = Self::from_server(mode, relay, channel.id, DEFAULT_STEP);
        visit_client_messages(&mut h.recorder());
        h
    }

    /// `relays` relays sharing one fact store in memory (see
    /// [`NegotiatedSharedFacts`]), with these settings, and clients with these. Clients
    /// start on relay 0; [`move_client`](TestHarness::move_client) moves them and
    /// [`kill_server`](TestHarness::kill_server) kills a relay.
    pub fn with_shared_relays(
        relays: usize,
        mut relay_settings: NegotiatedRelaySettings,
        client_settings: NegotiatedClientSettings,
    ) -> (Self, NegotiatedMemorySharedStore) {
        relay_settings.epoch.get_or_insert(NEGOTIATED_TEST_EPOCH);
        let store = NegotiatedMemorySharedStore::new(
            NegotiatedFrames::new(relay_settings.frame_duration),
            relay_settings.limits,
        );
        let named = |k: usize| NegotiatedRelaySettings {
            shared: Some(NegotiatedSharedFacts::memory(
                store.clone(),
                format!("relay-{k}"),
            )),
            ..relay_settings.clone()
        };
        let mut h = Self::new(named(0), client_settings);
        for k in 1..relays.max(1) {
            let relay = relay_app(
                h.mode.channel,
                h.step,
                NegotiatedRelaySettings {
                    epoch: Some(h.relay_now()),
                    ..named(k)
                },
            );
            h.add_server(relay);
        }
        (h, store)
    }

    /// Relay `on`'s state, unless it was killed.
    pub fn relay_state_of(&self, on: usize) -> Option<&NegotiatedRelayState> {
        self.server_app(on)
            .map(|app| app.world().resource::<NegotiatedRelayState>())
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

    /// Relay time now.
    pub fn relay_now(&self) -> Duration {
        let elapsed = self.server_resource::<Time<Real>>().elapsed();
        self.relay_state().relay_time(elapsed)
    }

    /// The relay's state.
    pub fn relay_state(&self) -> &NegotiatedRelayState {
        self.server_resource::<NegotiatedRelayState>()
    }

    /// Adds a client with the harness's client settings; returns its id.
    pub fn add_client(&mut self) -> PlayerId {
        self.add_client_with(|_| {})
    }

    /// Adds a client whose settings `tweak` changes (for example its bid timeout). Its clock
    /// epoch is the relay's time now (so it reads relay time plus its skew) and its seed
    /// its id, unless the tweak sets them.
    pub fn add_client_with(
        &mut self,
        tweak: impl FnOnce(&mut NegotiatedClientSettings),
    ) -> PlayerId {
        self.add_client_to(tweak, None)
    }

    /// Adds a client with tweaked settings and, if given, a skewed clock from its first frame.
    fn add_client_to(
        &mut self,
        tweak: impl FnOnce(&mut NegotiatedClientSettings),
        skew: Option<NegotiatedClockSkew>,
    ) -> PlayerId {
        let mut settings = self.mode.client_settings.clone();
        settings.epoch = Some(self.relay_now());
        let channel = self.mode.channel;
        self.add_local_client(|app, id| {
            settings.seed = Some(id);
            tweak(&mut settings);
            if let Some(skew) = skew {
                app.insert_resource(skew);
            }
            app.add_plugins(NegotiatedClientPlugin { channel, settings })
                .init_resource::<RecordClock>()
                .add_systems(Last, stamp_relay_time.before(HarnessSystems::Record));
        })
    }

    /// Adds a client whose local clock is `millis` ahead of the relay's (behind when
    /// negative): a badly set clock.
    pub fn add_skewed_client(&mut self, millis: i64) -> PlayerId {
        self.add_client_to(|_| {}, Some(NegotiatedClockSkew { millis }))
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

    /// A client's status.
    pub fn status(&self, id: PlayerId) -> &NegotiatedClientStatus {
        self.resource::<NegotiatedClientStatus>(id)
    }

    /// A client's state.
    pub fn state(&self, id: PlayerId) -> NegotiatedClientState {
        *self.resource::<State<NegotiatedClientState>>(id).get()
    }

    /// The match a client found, if any.
    pub fn found(&self, id: PlayerId) -> Option<&NegotiatedMatchFound> {
        self.status(id).found.as_ref()
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

    /// Replaces the relay with a fresh one (all facts lost; its clock carries on, as a
    /// wall clock would) and reconnects every client that was not closed. The clients see
    /// their connection drop for one update first.
    pub fn restart_relay(&mut self) {
        let settings = NegotiatedRelaySettings {
            epoch: Some(self.relay_now() + self.step),
            ..self.mode.relay_settings.clone()
        };
        let relay = relay_app(self.mode.channel, self.step, settings);
        self.replace_server(relay);
    }

    /// Runs until every listed client found a match; returns how many updates ran.
    pub fn run_until_matched(&mut self, ids: &[PlayerId], max_updates: usize) -> usize {
        self.run_until(max_updates, |h| ids.iter().all(|id| h.found(*id).is_some()))
    }
}
