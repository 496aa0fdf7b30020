//! Quiet netcode transports: renet_netcode's UDP transports with renet's acknowledgement
//! ping-pong damped.
//!
//! renet acknowledges every packet it receives, acknowledgement packets included, and
//! sends an acknowledgement packet on every update while any is pending. Two peers that
//! exchanged one message therefore keep sending each other an ack-only packet every frame
//! for as long as they are connected: a 60 Hz server and 60 Hz clients exchange about 120
//! encrypted packets a second per *waiting* player, which is most of a matchmaking
//! server's CPU.
//!
//! These transports are renet_netcode's (the same netcode protocol, secure or insecure
//! connect tokens, interoperable with its transports) with one change on the sending side:
//! a packet that carries only acknowledgements is sent at once when a packet carrying
//! messages arrived since the last acknowledgement (so reliable messages are acknowledged
//! as fast as before and never resent for want of an ack), and otherwise at most once per
//! [`MatchmakingAckPolicy::idle_ack_interval`]. Acknowledgement ranges are cumulative, so a
//! damped packet loses no information: the next one carries it. Netcode's keep-alives (every
//! 250 ms when nothing else is sent) keep an idle connection alive as before.
//!
//! Use them with [`insert_quiet_secure_server`](super::insert_quiet_secure_server) and
//! [`insert_quiet_secure_client`](super::insert_quiet_secure_client), or build them yourself
//! and add [`MatchmakingQuietServerPlugin`] / [`MatchmakingQuietClientPlugin`] instead of
//! bevy_renet's netcode plugins.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::shared::inbox::{MatchmakingInbox, RENET_ACK_PACKET};
use bevy::ecs::component::Mutable;
use bevy::prelude::*;
use bevy_renet::netcode::{
    ClientAuthentication, NETCODE_USER_DATA_BYTES, NetcodeDisconnectReason, NetcodeError,
    ServerConfig,
};
use bevy_renet::renet::{self, ClientId};
use bevy_renet::{RenetClient, RenetReceive, RenetSend, RenetServer};
use renetcode::{NETCODE_MAX_PACKET_BYTES, NetcodeClient, NetcodeServer, ServerResult};

/// How often a quiet transport sends acknowledgement-only packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchmakingAckPolicy {
    /// Least time between two ack-only packets to one peer when no message arrived from it
    /// since the last one. Default 250 ms (netcode's keep-alive interval); zero sends every
    /// ack-only packet renet makes (renet_netcode's behaviour).
    pub idle_ack_interval: Duration,
}

impl Default for MatchmakingAckPolicy {
    fn default() -> Self {
        Self {
            idle_ack_interval: Duration::from_millis(250),
        }
    }
}

/// Packet counters of a quiet transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchmakingTransportStats {
    /// UDP datagrams received.
    pub packets_received: u64,
    /// UDP datagrams sent (payloads, keep-alives, connection packets).
    pub packets_sent: u64,
    /// Ack-only packets renet made that were not sent.
    pub acks_damped: u64,
}

/// The acknowledgement state of one peer.
#[derive(Debug, Clone, Copy, Default)]
struct AckDamper {
    /// A packet carrying messages arrived since the last ack-only packet went out.
    owes_ack: bool,
    /// When the last ack-only packet went out.
    last_ack: Option<Duration>,
}

impl AckDamper {
    /// A payload arrived from the peer.
    fn received(&mut self, payload: &[u8]) {
        if payload.first() != Some(&RENET_ACK_PACKET) {
            self.owes_ack = true;
        }
    }

    /// Whether to send `payload` at `now`.
    fn admit(&mut self, payload: &[u8], now: Duration, policy: MatchmakingAckPolicy) -> bool {
        if payload.first() != Some(&RENET_ACK_PACKET) {
            return true;
        }
        let due = self
            .last_ack
            .is_none_or(|last| now.saturating_sub(last) >= policy.idle_ack_interval);
        if !(self.owes_ack || due) {
            return false;
        }
        self.owes_ack = false;
        self.last_ack = Some(now);
        true
    }
}

/// A server's quiet netcode transport (a resource; see the [module docs](self)).
#[derive(Resource, Debug)]
pub struct MatchmakingQuietServerTransport {
    socket: UdpSocket,
    netcode: NetcodeServer,
    buffer: Box<[u8; NETCODE_MAX_PACKET_BYTES]>,
    now: Duration,
    policy: MatchmakingAckPolicy,
    peers: HashMap<ClientId, AckDamper>,
    /// Packets renet took in since the inbox last heard of them.
    arrived: MatchmakingInbox,
    stats: MatchmakingTransportStats,
}

impl MatchmakingQuietServerTransport {
    /// A transport serving `config` on `socket` (made non-blocking).
    pub fn new(
        config: ServerConfig,
        socket: UdpSocket,
        policy: MatchmakingAckPolicy,
    ) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            netcode: NetcodeServer::new(config),
            buffer: Box::new([0; NETCODE_MAX_PACKET_BYTES]),
            now: Duration::ZERO,
            policy,
            peers: HashMap::new(),
            arrived: MatchmakingInbox::default(),
            stats: MatchmakingTransportStats::default(),
        })
    }

    /// The addresses clients' tokens must name.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.netcode.addresses()
    }

    /// Connected clients.
    pub fn connected_clients(&self) -> usize {
        self.netcode.connected_clients()
    }

    /// The user data of a connected client's token.
    pub fn user_data(&self, client: ClientId) -> Option<[u8; NETCODE_USER_DATA_BYTES]> {
        self.netcode.user_data(client)
    }

    /// Packet counters since the transport was made.
    pub fn stats(&self) -> MatchmakingTransportStats {
        self.stats
    }

    /// The acknowledgement policy.
    pub fn policy(&self) -> MatchmakingAckPolicy {
        self.policy
    }

    /// Changes the acknowledgement policy.
    pub fn set_policy(&mut self, policy: MatchmakingAckPolicy) {
        self.policy = policy;
    }

    fn send_to(&mut self, packet: &[u8], addr: SocketAddr) {
        if self.socket.send_to(packet, addr).is_ok() {
            self.stats.packets_sent += 1;
        }
    }

    /// Advances by `duration`, receives every waiting datagram and updates connections.
    pub fn update(
        &mut self,
        duration: Duration,
        server: &mut renet::RenetServer,
    ) -> io::Result<()> {
        self.now += duration;
        self.netcode.update(duration);
        loop {
            let (len, addr) = match self.socket.recv_from(&mut self.buffer[..]) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
                Err(e) => return Err(e),
            };
            self.stats.packets_received += 1;
            let result = detach(self.netcode.process_packet(addr, &mut self.buffer[..len]));
            self.handle(result, server);
        }
        for client in self.netcode.clients_id() {
            let result = detach(self.netcode.update_client(client));
            self.handle(result, server);
        }
        for client in server.disconnections_id() {
            let result = detach(self.netcode.disconnect(client));
            self.handle(result, server);
        }
        Ok(())
    }

    /// Acts on what netcode made of a datagram or an update.
    fn handle(&mut self, result: OwnedServerResult, server: &mut renet::RenetServer) {
        match result {
            OwnedServerResult::None => {}
            OwnedServerResult::Send(packet, addr) => self.send_to(&packet, addr),
            OwnedServerResult::Payload(client_id, payload) => {
                self.peers.entry(client_id).or_default().received(&payload);
                if server.process_packet_from(&payload, client_id).is_ok() {
                    self.arrived.packet_arrived(client_id, &payload);
                }
            }
            OwnedServerResult::Connected(client_id, addr, packet) => {
                self.peers.insert(client_id, AckDamper::default());
                server.add_connection(client_id);
                self.send_to(&packet, addr);
            }
            OwnedServerResult::Disconnected(client_id, addr, packet) => {
                self.peers.remove(&client_id);
                server.remove_connection(client_id);
                if let Some(packet) = packet {
                    self.send_to(&packet, addr);
                }
            }
        }
    }

    /// Waits until a datagram can be read or `timeout` passed; true if one can be read.
    pub fn wait_readable(&self, timeout: Duration) -> bool {
        wait_readable(&self.socket, timeout)
    }

    /// Sends what renet has for every client, ack-only packets damped.
    pub fn send_packets(&mut self, server: &mut renet::RenetServer) {
        for client in server.clients_id() {
            let Ok(packets) = server.get_packets_to_send(client) else {
                continue;
            };
            let damper = self.peers.entry(client).or_default();
            for packet in packets {
                if !damper.admit(&packet, self.now, self.policy) {
                    self.stats.acks_damped += 1;
                    continue;
                }
                let Ok((addr, payload)) = self.netcode.generate_payload_packet(client, &packet)
                else {
                    break;
                };
                if self.socket.send_to(payload, addr).is_ok() {
                    self.stats.packets_sent += 1;
                }
            }
        }
    }
}

/// Blocks on the socket until a datagram can be read or `timeout` passed: the socket is
/// blocking with a read timeout for the wait only (std's safe calls), then non-blocking
/// again for the transport.
fn wait_readable(socket: &UdpSocket, timeout: Duration) -> bool {
    if timeout.is_zero() || socket.set_nonblocking(false).is_err() {
        return true;
    }
    let _ = socket.set_read_timeout(Some(timeout));
    let mut byte = [0u8; 1];
    let ready = match socket.peek_from(&mut byte) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    };
    let _ = socket.set_nonblocking(true);
    ready
}

/// The wait between two updates of [`matchmaking_wake_runner`], for a loop of your own:
/// `started` is when the last update began; returns once `min_frame` has passed since then
/// and a datagram can be read from the app's [`MatchmakingQuietServerTransport`], or once
/// `max_frame` has passed (an app without that transport just waits `max_frame` out).
pub fn matchmaking_wait_to_wake(
    app: &App,
    started: std::time::Instant,
    min_frame: Duration,
    max_frame: Duration,
) {
    if let Some(rest) = min_frame.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let wait = max_frame.saturating_sub(started.elapsed());
    match app
        .world()
        .get_resource::<MatchmakingQuietServerTransport>()
    {
        Some(transport) => {
            transport.wait_readable(wait);
        }
        None => std::thread::sleep(wait),
    }
}

/// A runner for a dedicated server on a [`MatchmakingQuietServerTransport`]: instead of
/// updating at a fixed rate whether or not anything happened, it updates when a datagram
/// arrives (but at most once per `min_frame`, so a busy server batches packets as a fixed
/// rate would) and at least once per `max_frame` (renet's resends, netcode's keep-alives
/// and timeouts, and the matchmaking deadlines run on updates). An idle server sleeps in
/// the kernel; a client's message is handled as soon as it arrives instead of waiting for
/// the next tick.
///
/// `app.set_runner(matchmaking_wake_runner(Duration::from_millis(16), Duration::from_millis(50)))`
/// (after `MinimalPlugins`, whose `ScheduleRunnerPlugin` sets its own runner).
pub fn matchmaking_wake_runner(
    min_frame: Duration,
    max_frame: Duration,
) -> impl FnOnce(App) -> AppExit + 'static {
    move |mut app: App| {
        while app.plugins_state() == bevy::app::PluginsState::Adding {
            std::thread::yield_now();
        }
        app.finish();
        app.cleanup();
        loop {
            let started = std::time::Instant::now();
            app.update();
            if let Some(exit) = app.should_exit() {
                return exit;
            }
            matchmaking_wait_to_wake(&app, started, min_frame, max_frame);
        }
    }
}

/// A [`ServerResult`] that borrows nothing.
enum OwnedServerResult {
    None,
    Send(Vec<u8>, SocketAddr),
    Payload(ClientId, Vec<u8>),
    Connected(ClientId, SocketAddr, Vec<u8>),
    Disconnected(ClientId, SocketAddr, Option<Vec<u8>>),
}

fn detach(result: ServerResult<'_, '_>) -> OwnedServerResult {
    match result {
        ServerResult::None => OwnedServerResult::None,
        ServerResult::PacketToSend { payload, addr } => {
            OwnedServerResult::Send(payload.to_vec(), addr)
        }
        ServerResult::Payload { client_id, payload } => {
            OwnedServerResult::Payload(client_id, payload.to_vec())
        }
        ServerResult::ClientConnected {
            client_id,
            addr,
            payload,
            ..
        } => OwnedServerResult::Connected(client_id, addr, payload.to_vec()),
        ServerResult::ClientDisconnected {
            client_id,
            addr,
            payload,
        } => OwnedServerResult::Disconnected(client_id, addr, payload.map(|p| p.to_vec())),
    }
}

/// A client's quiet netcode transport (a resource; see the [module docs](self)).
#[derive(Resource, Debug)]
pub struct MatchmakingQuietClientTransport {
    socket: UdpSocket,
    netcode: NetcodeClient,
    buffer: Box<[u8; NETCODE_MAX_PACKET_BYTES]>,
    now: Duration,
    policy: MatchmakingAckPolicy,
    damper: AckDamper,
    stats: MatchmakingTransportStats,
}

impl MatchmakingQuietClientTransport {
    /// A transport connecting with `authentication` over `socket` (made non-blocking).
    pub fn new(
        current_time: Duration,
        authentication: ClientAuthentication,
        socket: UdpSocket,
        policy: MatchmakingAckPolicy,
    ) -> Result<Self, NetcodeError> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            netcode: NetcodeClient::new(current_time, authentication)?,
            buffer: Box::new([0; NETCODE_MAX_PACKET_BYTES]),
            now: Duration::ZERO,
            policy,
            damper: AckDamper::default(),
            stats: MatchmakingTransportStats::default(),
        })
    }

    /// The client id (the one in the connect token).
    pub fn client_id(&self) -> ClientId {
        self.netcode.client_id()
    }

    /// Why the connection ended, if it did.
    pub fn disconnect_reason(&self) -> Option<NetcodeDisconnectReason> {
        self.netcode.disconnect_reason()
    }

    /// Packet counters since the transport was made.
    pub fn stats(&self) -> MatchmakingTransportStats {
        self.stats
    }

    /// Disconnects, telling the server.
    pub fn disconnect(&mut self) {
        if self.netcode.is_disconnected() {
            return;
        }
        if let Ok((addr, packet)) = self.netcode.disconnect()
            && self.socket.send_to(packet, addr).is_ok()
        {
            self.stats.packets_sent += 1;
        }
    }

    /// Advances by `duration` and receives every waiting datagram.
    pub fn update(
        &mut self,
        duration: Duration,
        client: &mut renet::RenetClient,
    ) -> io::Result<()> {
        self.now += duration;
        if self.netcode.disconnect_reason().is_some() {
            client.disconnect_due_to_transport();
            return Ok(());
        }
        if client.disconnect_reason().is_some() {
            self.disconnect();
            return Ok(());
        }
        if self.netcode.is_connected() {
            client.set_connected();
        } else if self.netcode.is_connecting() {
            client.set_connecting();
        }
        loop {
            let (len, addr) = match self.socket.recv_from(&mut self.buffer[..]) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) => return Err(e),
            };
            self.stats.packets_received += 1;
            if addr != self.netcode.server_addr() {
                continue;
            }
            if let Some(payload) = self.netcode.process_packet(&mut self.buffer[..len]) {
                self.damper.received(payload);
                client.process_packet(payload);
            }
        }
        if let Some((packet, addr)) = self.netcode.update(duration)
            && self.socket.send_to(packet, addr).is_ok()
        {
            self.stats.packets_sent += 1;
        }
        Ok(())
    }

    /// Sends what renet has, ack-only packets damped.
    pub fn send_packets(&mut self, client: &mut renet::RenetClient) -> io::Result<()> {
        if self.netcode.disconnect_reason().is_some() {
            return Ok(());
        }
        for packet in client.get_packets_to_send() {
            if !self.damper.admit(&packet, self.now, self.policy) {
                self.stats.acks_damped += 1;
                continue;
            }
            let (addr, payload) = self
                .netcode
                .generate_payload_packet(&packet)
                .map_err(io::Error::other)?;
            self.socket.send_to(payload, addr)?;
            self.stats.packets_sent += 1;
        }
        Ok(())
    }
}

/// A quiet transport and the renet side it serves, as the plugins drive them.
trait QuietTransport: Resource<Mutability = Mutable> {
    /// [`RenetServer`] or [`RenetClient`].
    type Renet: Resource<Mutability = Mutable>;
    /// Receives (in `PreUpdate`, after renet's own update).
    fn receive(&mut self, elapsed: Duration, renet: &mut Self::Renet);
    /// Sends (in `PostUpdate`).
    fn send(&mut self, renet: &mut Self::Renet);
    /// Hands the connections that received messages to the app's inbox (dropped when it
    /// has none).
    fn report(&mut self, _inbox: Option<&mut MatchmakingInbox>) {}
}

impl QuietTransport for MatchmakingQuietServerTransport {
    type Renet = RenetServer;
    fn receive(&mut self, elapsed: Duration, server: &mut RenetServer) {
        if let Err(e) = self.update(elapsed, server) {
            error!("quiet netcode server transport: {e}");
        }
    }
    fn send(&mut self, server: &mut RenetServer) {
        self.send_packets(server);
    }
    fn report(&mut self, inbox: Option<&mut MatchmakingInbox>) {
        match inbox {
            Some(inbox) => inbox.append(&mut self.arrived),
            None => {
                self.arrived.take();
            }
        }
    }
}

impl QuietTransport for MatchmakingQuietClientTransport {
    type Renet = RenetClient;
    fn receive(&mut self, elapsed: Duration, client: &mut RenetClient) {
        if let Err(e) = self.update(elapsed, client) {
            debug!("quiet netcode client transport: {e}");
        }
    }
    fn send(&mut self, client: &mut RenetClient) {
        if let Err(e) = self.send_packets(client) {
            debug!("quiet netcode client transport: {e}");
        }
    }
}

/// Adds the receive and send systems of transport `T`, receiving after `after`.
fn add_quiet_systems<T: QuietTransport, M>(app: &mut App, after: impl IntoSystemSet<M>) {
    let ready = resource_exists::<T>.and_then(resource_exists::<T::Renet>);
    app.add_systems(
        PreUpdate,
        receive_quiet::<T>
            .in_set(RenetReceive)
            .after(after)
            .run_if(ready.clone()),
    )
    .add_systems(PostUpdate, send_quiet::<T>.in_set(RenetSend).run_if(ready));
}

fn receive_quiet<T: QuietTransport>(
    mut transport: ResMut<T>,
    mut renet: ResMut<T::Renet>,
    inbox: Option<ResMut<MatchmakingInbox>>,
    time: Res<Time<Real>>,
) {
    transport.receive(time.delta(), &mut renet);
    transport.report(inbox.map(ResMut::into_inner));
}

fn send_quiet<T: QuietTransport>(mut transport: ResMut<T>, mut renet: ResMut<T::Renet>) {
    transport.send(&mut renet);
}

/// Runs a [`MatchmakingQuietServerTransport`] resource with a [`RenetServer`] (instead of
/// bevy_renet's `NetcodeServerPlugin`), and adds a [`MatchmakingInbox`] that it reports
/// every packet to, so that the server reads only the connections that received messages
/// (mind the inbox's contract if the app also drives local clients).
pub struct MatchmakingQuietServerPlugin;

impl Plugin for MatchmakingQuietServerPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<MatchmakingInbox>();
        add_quiet_systems::<MatchmakingQuietServerTransport, _>(
            app,
            bevy_renet::RenetServerPlugin::update_system,
        );
    }
}

/// Runs a [`MatchmakingQuietClientTransport`] resource with a [`RenetClient`] (instead of
/// bevy_renet's `NetcodeClientPlugin`).
pub struct MatchmakingQuietClientPlugin;

impl Plugin for MatchmakingQuietClientPlugin {
    fn build(&self, app: &mut App) {
        add_quiet_systems::<MatchmakingQuietClientTransport, _>(
            app,
            bevy_renet::RenetClientPlugin::update_system,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn acks_go_out_at_once_after_a_message_and_at_the_interval_otherwise() {
        let policy = MatchmakingAckPolicy::default();
        let mut damper = AckDamper::default();
        let ack = [RENET_ACK_PACKET, 1, 2];
        let data = [0u8, 7, 7];
        // data always goes
        assert!(damper.admit(&data, MS(0), policy));
        // the first ack goes, the next ones wait for the interval
        assert!(damper.admit(&ack, MS(0), policy));
        assert!(!damper.admit(&ack, MS(16), policy));
        assert!(!damper.admit(&ack, MS(249), policy));
        assert!(damper.admit(&ack, MS(250), policy));
        // an ack-only packet from the peer owes nothing
        damper.received(&ack);
        assert!(!damper.admit(&ack, MS(260), policy));
        // a message from the peer is acknowledged at once, once
        damper.received(&data);
        assert!(damper.admit(&ack, MS(270), policy));
        assert!(!damper.admit(&ack, MS(280), policy));
    }

    #[test]
    fn a_zero_interval_sends_every_ack() {
        let policy = MatchmakingAckPolicy {
            idle_ack_interval: Duration::ZERO,
        };
        let mut damper = AckDamper::default();
        for ms in 0..10 {
            assert!(damper.admit(&[RENET_ACK_PACKET], MS(ms), policy));
        }
    }
}
