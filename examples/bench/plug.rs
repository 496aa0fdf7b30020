//! The pluggable parts, in one place: how the server and relay apps are built and bound,
//! how a bot or client connects, how it leaves, and the server's loop.
//!
//! Today: bevy_renet over renet_netcode (UDP, ChaCha20-Poly1305, connect tokens minted from
//! a key made in memory; the server's socket bound here, like the crate's
//! `insert_secure_netcode_server` does, so that its receive buffer can be sized) and a
//! fixed-rate loop that sleeps until the next frame. To
//! measure another transport or runner, change these functions (and nothing else): every
//! UDP scenario builds its apps and runs its server through them.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::clock::unix_now;
use bevy_atomic_matchmaking::transport::{
    MATCHMAKING_NETCODE_PROTOCOL_ID, MatchmakingAckPolicy, MatchmakingQuietClientTransport,
    MatchmakingQuietServerPlugin, MatchmakingQuietServerTransport, matchmaking_wait_to_wake,
};
use bevy_renet::RenetServer;
use bevy_renet::netcode::{
    NetcodeClientTransport, NetcodeServerPlugin, NetcodeServerTransport, ServerAuthentication,
    ServerConfig,
};
use bevy_renet::renet::{ConnectionConfig, RenetClient};

use crate::bot::{Bot, bot_app};
use crate::identity::Identity;

/// The quiet transports (unless `--netcode`) and `--wake`, set once by `main`.
static CHOICES: OnceLock<(bool, bool)> = OnceLock::new();

/// Records the transport (`quiet`: the crate's quiet transports on both sides, the default;
/// renet_netcode's with `--netcode`) and `--wake` (the server
/// updates when a datagram arrives, at most at its rate, at least every 50 ms).
pub fn choose(quiet: bool, wake: bool) {
    let _ = CHOICES.set((quiet, wake));
}

fn quiet() -> bool {
    CHOICES.get().is_some_and(|c| c.0)
}

fn wake() -> bool {
    CHOICES.get().is_some_and(|c| c.1)
}

/// A key in memory, with the transport chosen.
pub fn identity() -> Identity {
    match Identity::in_memory() {
        Identity::QuietTokens(issuer) if !quiet() => Identity::Tokens(issuer),
        other => other,
    }
}

/// What the transport is, for the report.
pub fn transport() -> &'static str {
    if quiet() {
        "bevy_renet 5 + the crate's quiet netcode transports (renet_netcode's protocol, ack-only packets damped to one per 250 ms when idle; UDP, secure connect tokens)"
    } else {
        "bevy_renet 5 + renet_netcode 2 (UDP, secure connect tokens)"
    }
}

/// What the server loop is, for the report.
pub fn server_loop_name() -> &'static str {
    if wake() {
        "wake: update when a datagram arrives (at most at --server-hz), at least every 50 ms"
    } else {
        "fixed rate: update, then sleep until the next frame"
    }
}

/// Most clients one server accepts: netcode's limit.
pub const MAX_CLIENTS: usize = 1024;

/// The size the server's socket receive buffer was given (what the kernel reports,
/// which is twice what was asked), as a resource of the server app.
#[derive(Resource, Debug, Clone, Copy)]
pub struct ReceiveBuffer(pub usize);

/// A socket option of `socket` (an `int`).
fn get_int_option(socket: &UdpSocket, option: libc::c_int) -> usize {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the fd is a live socket; value and len point to valid memory of the sizes
    // given.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 { value.max(0) as usize } else { 0 }
}

/// A UDP socket on a free loopback port whose receive buffer is `rcvbuf` bytes (0 keeps
/// the system's default; the kernel caps it at `net.core.rmem_max`).
fn server_socket(rcvbuf: usize) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    if rcvbuf > 0 {
        let value = rcvbuf.min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: the fd is a live socket and `value` is a valid int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(socket)
}

/// Binds a netcode server for `max_clients` on loopback that accepts `identity`'s clients
/// (what `Identity::insert_server` does, on a socket with a `rcvbuf`-byte receive buffer).
fn insert_server(
    app: &mut App,
    identity: &Identity,
    max_clients: usize,
    config: ConnectionConfig,
    rcvbuf: usize,
) -> io::Result<SocketAddr> {
    let socket = server_socket(rcvbuf)?;
    let addr = socket.local_addr()?;
    let buffer = get_int_option(&socket, libc::SO_RCVBUF);
    let authentication = match identity {
        Identity::Tokens(issuer) | Identity::QuietTokens(issuer) => ServerAuthentication::Secure {
            private_key: *issuer.key().as_bytes(),
        },
        Identity::Insecure => ServerAuthentication::Unsecure,
    };
    let server_config = ServerConfig {
        current_time: unix_now(),
        max_clients: max_clients.min(MAX_CLIENTS),
        protocol_id: MATCHMAKING_NETCODE_PROTOCOL_ID,
        public_addresses: vec![addr],
        authentication,
    };
    if let Identity::QuietTokens(_) = identity {
        let policy = MatchmakingAckPolicy::default();
        let transport =
            MatchmakingQuietServerTransport::new(server_config, &config, socket, policy)?;
        if !app.is_plugin_added::<MatchmakingQuietServerPlugin>() {
            app.add_plugins(MatchmakingQuietServerPlugin);
        }
        app.insert_resource(transport);
    } else {
        let transport = NetcodeServerTransport::new(server_config, socket)?;
        if !app.is_plugin_added::<NetcodeServerPlugin>() {
            app.add_plugins(NetcodeServerPlugin);
        }
        app.insert_resource(transport);
    }
    app.insert_resource(RenetServer::new(config))
        .insert_resource(ReceiveBuffer(buffer));
    Ok(addr)
}

/// The matchmaking server for `players` clients, bound on loopback with a `rcvbuf`-byte
/// socket receive buffer; returns it and the address clients connect to.
pub fn server_app(
    identity: &Identity,
    players: usize,
    settings: AtomicServerSettings,
    rcvbuf: usize,
) -> io::Result<(App, SocketAddr)> {
    let channel = AtomicChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(AtomicServerPlugin { channel, settings });
    let config = channel.dedicated_connection_config();
    let addr = insert_server(&mut app, identity, players + 8, config, rcvbuf)?;
    app.finish(); // the loop drives it by update(): finish the plugins' set-up as run() would
    app.cleanup();
    Ok((app, addr))
}

/// The negotiated relay for `clients` clients, like [`server_app`].
pub fn relay_app(
    identity: &Identity,
    clients: usize,
    settings: NegotiatedRelaySettings,
    rcvbuf: usize,
) -> io::Result<(App, SocketAddr)> {
    let channel = NegotiatedChannel::default();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(NegotiatedRelayPlugin { channel, settings });
    let config = channel.dedicated_connection_config();
    let addr = insert_server(&mut app, identity, clients + 8, config, rcvbuf)?;
    app.finish(); // the loop drives it by update(): finish the plugins' set-up as run() would
    app.cleanup();
    Ok((app, addr))
}

/// A matchmaking bot (`examples/common/bot.rs`) connected to `server`.
pub fn bot(server: SocketAddr, bot: Bot, identity: &Identity) -> io::Result<App> {
    bot_app(server, bot, identity)
}

/// Closes a client's connection now: the server sees it go at once, not after a timeout.
pub fn disconnect(app: &mut App) {
    crate::identity::close_client(app.world_mut());
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
        let started = Instant::now();
        app.update();
        if after_frame(app).is_break() {
            return;
        }
        if wake() {
            matchmaking_wait_to_wake(app, started, frame, Duration::from_millis(50));
            continue;
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
    transport: RawTransport,
    /// The last update (none yet: the first one starts the connection's clock).
    last: Option<Instant>,
}

/// renet_netcode's client transport or the quiet one.
enum RawTransport {
    Netcode(Box<NetcodeClientTransport>),
    Quiet(Box<MatchmakingQuietClientTransport>),
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
        transport: match identity.quiet_client_transport(server, player)? {
            Some(quiet) => RawTransport::Quiet(Box::new(quiet)),
            None => RawTransport::Netcode(Box::new(identity.client_transport(server, player)?)),
        },
        last: None,
    })
}

impl RawClient {
    /// Advances the connection and takes in the packets that arrived (what bevy_renet does
    /// in `PreUpdate`).
    pub fn receive_packets(&mut self) {
        let now = Instant::now();
        let elapsed = self.last.map_or(Duration::ZERO, |last| now - last);
        self.last = Some(now);
        self.client.update(elapsed);
        let _ = match &mut self.transport {
            RawTransport::Netcode(t) => t.update(elapsed, &mut self.client).is_ok(),
            RawTransport::Quiet(t) => t.update(elapsed, &mut self.client).is_ok(),
        };
    }

    /// Sends what is due (what bevy_renet does in `PostUpdate`).
    pub fn send_packets(&mut self) {
        let _ = match &mut self.transport {
            RawTransport::Netcode(t) => t.send_packets(&mut self.client).is_ok(),
            RawTransport::Quiet(t) => t.send_packets(&mut self.client).is_ok(),
        };
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// Why netcode gave up (refused, timed out, closed), if it did.
    pub fn gave_up(&self) -> Option<String> {
        let reason = match &self.transport {
            RawTransport::Netcode(t) => t.disconnect_reason(),
            RawTransport::Quiet(t) => t.disconnect_reason(),
        };
        reason.map(|r| format!("{r:?}"))
    }

    pub fn send(&mut self, channel: u8, bytes: Vec<u8>) {
        self.client.send_message(channel, bytes);
    }

    pub fn receive(&mut self, channel: u8) -> Option<Vec<u8>> {
        self.client.receive_message(channel).map(|b| b.to_vec())
    }
}
