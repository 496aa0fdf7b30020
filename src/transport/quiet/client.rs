//! The client side of the quiet transport: [`MatchmakingQuietClientTransport`].

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bevy::prelude::*;
use bevy_renet::netcode::{ClientAuthentication, NetcodeDisconnectReason, NetcodeError};
use bevy_renet::renet::{self, ClientId};
use renetcode::{NETCODE_MAX_PACKET_BYTES, NetcodeClient};

use super::bundle;
use super::idle::{IdleLink, MatchmakingAckPolicy, MatchmakingTransportStats};

/// A client's quiet netcode transport (a resource; see the [module docs](super)).
#[derive(Resource, Debug)]
pub struct MatchmakingQuietClientTransport {
    socket: UdpSocket,
    netcode: NetcodeClient,
    buffer: Box<[u8; NETCODE_MAX_PACKET_BYTES]>,
    now: Duration,
    policy: MatchmakingAckPolicy,
    link: IdleLink,
    /// netcode's latest keep-alive, sent at the next idle moment if nothing else goes.
    keep_alive: Option<(Vec<u8>, SocketAddr)>,
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
            link: IdleLink::default(),
            keep_alive: None,
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
                let received = bundle::split(payload);
                self.link.received(received.packet);
                if received.from_quiet_peer {
                    self.link.heard_quiet_peer();
                }
                client.process_packet(received.packet);
                if let Some(ack) = received.ack {
                    client.process_packet(ack);
                }
            }
        }
        let connected = self.netcode.is_connected();
        let quiet = !self.policy.idle_interval.is_zero();
        if let Some((packet, addr)) = self.netcode.update(duration) {
            if connected && quiet {
                // a keep-alive: it waits for the idle moment
                if self.keep_alive.replace((packet.to_vec(), addr)).is_some() {
                    self.stats.keep_alives_damped += 1;
                }
            } else if self.socket.send_to(packet, addr).is_ok() {
                self.stats.packets_sent += 1;
            }
        }
        Ok(())
    }

    /// Sends what renet has, ack-only packets damped, and at the idle moment netcode's
    /// keep-alive if nothing else went out.
    pub fn send_packets(&mut self, client: &mut renet::RenetClient) -> io::Result<()> {
        if self.netcode.disconnect_reason().is_some() {
            return Ok(());
        }
        let idle = self.link.idle_due(self.now);
        let mut sent = false;
        let packets = client.get_packets_to_send();
        for packet in self.link.outgoing(packets, idle, &mut self.stats) {
            let (addr, payload) = self
                .netcode
                .generate_payload_packet(&packet)
                .map_err(io::Error::other)?;
            self.socket.send_to(payload, addr)?;
            self.stats.packets_sent += 1;
            sent = true;
        }
        if !idle {
            return Ok(());
        }
        self.link.idled(self.now, self.policy);
        match self.keep_alive.take() {
            Some(_) if sent => self.stats.keep_alives_damped += 1,
            Some((packet, addr)) => {
                self.socket.send_to(&packet, addr)?;
                self.stats.packets_sent += 1;
            }
            None => {}
        }
        Ok(())
    }
}
