//! The pluggable parts, in one place: how the server and relay apps are built and bound,
//! how a bot or client connects, how it leaves, and the server's loop.
//!
//! Today: bevy_renet over renet_netcode (UDP, ChaCha20-Poly1305, connect tokens minted from
//! a key made in memory) and a fixed-rate loop that sleeps until the next frame. To
//! measure another transport or runner, change these functions (and nothing else): every
//! UDP scenario builds its apps and runs its server through them.

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_renet::netcode::NetcodeClientTransport;
use bevy_renet::renet::{ConnectionConfig, RenetClient};

use crate::bot::{Bot, bot_app};
use crate::identity::Identity;

/// What the transport is, for the report.
pub const TRANSPORT: &str = "bevy_renet 5 + renet_netcode 2 (UDP, secure connect tokens)";

/// What the server loop is, for the report.
pub const SERVER_LOOP: &str = "fixed rate: update, then sleep until the next frame";

/// Most clients one server accepts: netcode's limit.
pub const MAX_CLIENTS: usize = 1024;

/// Every server and relay binds a free port on loopback.
fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid")
}

/// The matchmaking server for `players` clients, bound on loopback; returns it and the
/// address clients connect to.
pub fn server_app(
    identity: &Identity,
    players: usize,
    settings: MatchmakingServerSettings,
) -> io::Result<(App, SocketAddr)> {
    let channel = MatchmakingChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(MatchmakingServerPlugin { channel, settings });
    let max_clients = (players + 8).min(MAX_CLIENTS);
    let config = channel.connection_config();
    let addr = identity.insert_server(&mut app, loopback(), &[], max_clients, config)?;
    Ok((app, addr))
}

/// The negotiated relay for `clients` clients, bound on loopback.
pub fn relay_app(
    identity: &Identity,
    clients: usize,
    settings: NegotiatedRelaySettings,
) -> io::Result<(App, SocketAddr)> {
    let channel = NegotiatedChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(NegotiatedRelayPlugin { channel, settings });
    let max_clients = (clients + 8).min(MAX_CLIENTS);
    let config = channel.connection_config();
    let addr = identity.insert_server(&mut app, loopback(), &[], max_clients, config)?;
    Ok((app, addr))
}

/// A matchmaking bot (`examples/common/bot.rs`) connected to `server`.
pub fn bot(server: SocketAddr, bot: Bot, identity: &Identity) -> io::Result<App> {
    bot_app(server, bot, identity)
}

/// Closes a client's connection now: the server sees it go at once, not after a timeout.
pub fn disconnect(app: &mut App) {
    if let Some(mut transport) = app.world_mut().get_resource_mut::<NetcodeClientTransport>() {
        transport.disconnect();
    }
}

/// The server loop: updates `app` at `hz` frames a second until `after_frame` (called
/// after every frame) breaks. A frame that runs late does not make the next ones
/// catch up.
pub fn server_loop(
    app: &mut App,
    hz: f64,
    mut after_frame: impl FnMut(&mut App) -> ControlFlow<()>,
) {
    let frame = Duration::from_secs_f64(1.0 / hz.max(1.0));
    let mut next = Instant::now();
    loop {
        app.update();
        if after_frame(app).is_break() {
            return;
        }
        next += frame;
        let now = Instant::now();
        match next.checked_duration_since(now) {
            Some(rest) => std::thread::sleep(rest),
            None => next = now,
        }
    }
}

/// A bare client: renet and netcode without a Bevy app, driven by hand, cheap enough for
/// a thousand of them to keep `--client-hz` in one thread (the `idle` scenarios).
pub struct RawClient {
    client: RenetClient,
    transport: NetcodeClientTransport,
    last: Instant,
}

/// A bare client of `server` as `player`, on a connection with `config`.
pub fn raw_client(
    server: SocketAddr,
    player: u64,
    identity: &Identity,
    config: ConnectionConfig,
) -> io::Result<RawClient> {
    Ok(RawClient {
        client: RenetClient::new(config),
        transport: identity.client_transport(server, player)?,
        last: Instant::now(),
    })
}

impl RawClient {
    /// Advances the connection and takes in the packets that arrived (what bevy_renet does
    /// in `PreUpdate`).
    pub fn receive_packets(&mut self) {
        let now = Instant::now();
        let elapsed = now - self.last;
        self.last = now;
        self.client.update(elapsed);
        let _ = self.transport.update(elapsed, &mut self.client);
    }

    /// Sends what is due (what bevy_renet does in `PostUpdate`).
    pub fn send_packets(&mut self) {
        let _ = self.transport.send_packets(&mut self.client);
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Why netcode gave up (refused, timed out, closed), if it did.
    pub fn gave_up(&self) -> Option<String> {
        self.transport.disconnect_reason().map(|r| format!("{r:?}"))
    }

    pub fn send(&mut self, channel: u8, bytes: Vec<u8>) {
        self.client.send_message(channel, bytes);
    }

    pub fn receive(&mut self, channel: u8) -> Option<Vec<u8>> {
        self.client.receive_message(channel).map(|b| b.to_vec())
    }
}
