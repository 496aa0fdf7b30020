//! The server side of the quiet transport: [`MatchmakingQuietServerTransport`].

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bevy::prelude::*;
use bevy_renet::netcode::{NETCODE_USER_DATA_BYTES, ServerConfig};
use bevy_renet::renet::{self, ClientId, ConnectionConfig};
use renetcode::{NETCODE_MAX_PACKET_BYTES, NetcodeServer, ServerResult};

use super::bundle;
use super::idle::{IdleLink, MatchmakingAckPolicy, MatchmakingTransportStats};
use super::wait_readable;
use crate::shared::inbox::MatchmakingInbox;

/// A server's quiet netcode transport (a resource; see the [module docs](super)).
#[derive(Resource, Debug)]
pub struct MatchmakingQuietServerTransport {
    socket: UdpSocket,
    netcode: NetcodeServer,
    buffer: Box<[u8; NETCODE_MAX_PACKET_BYTES]>,
    now: Duration,
    policy: MatchmakingAckPolicy,
    peers: HashMap<ClientId, IdleLink>,
    /// The server's send channels and their memory: a connection whose channels all have
    /// their whole memory free has nothing queued or awaiting acknowledgement.
    channels: Vec<(u8, usize)>,
    /// Packets renet took in since the inbox last heard of them.
    pub(super) arrived: MatchmakingInbox,
    stats: MatchmakingTransportStats,
}

impl MatchmakingQuietServerTransport {
    /// A transport serving `config` on `socket` (made non-blocking) for a [`RenetServer`]
    /// made with `connection` (whose send channels it watches).
    ///
    /// [`RenetServer`]: renet::RenetServer
    pub fn new(
        config: ServerConfig,
        connection: &ConnectionConfig,
        socket: UdpSocket,
        policy: MatchmakingAckPolicy,
    ) -> io::Result<Self> {
        let channels = connection
            .server_channels_config
            .iter()
            .map(|c| (c.channel_id, c.max_memory_usage_bytes))
            .collect();
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            netcode: NetcodeServer::new(config),
            buffer: Box::new([0; NETCODE_MAX_PACKET_BYTES]),
            now: Duration::ZERO,
            policy,
            peers: HashMap::new(),
            channels,
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

    /// Whether acknowledgements ride along with messages to `client`: it is a quiet
    /// transport too (it sent a datagram with the trailer). Never for a renet_netcode
    /// client, which reads only the first packet of a datagram.
    pub fn bundles_acks_to(&self, client: ClientId) -> bool {
        self.peers.get(&client).is_some_and(IdleLink::is_quiet_peer)
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
                let received = bundle::split(&payload);
                let link = self.peers.entry(client_id).or_default();
                link.received(received.packet);
                if received.from_quiet_peer {
                    link.heard_quiet_peer();
                }
                if server
                    .process_packet_from(received.packet, client_id)
                    .is_ok()
                {
                    self.arrived.packet_arrived(client_id, received.packet);
                }
                if let Some(ack) = received.ack {
                    let _ = server.process_packet_from(ack, client_id);
                }
            }
            OwnedServerResult::Connected(client_id, addr, packet) => {
                self.peers.insert(client_id, IdleLink::default());
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

    /// Sends what renet has for every client, ack-only packets damped; once an idle
    /// interval per client, lets netcode check the connection's timeout and send its
    /// keep-alive if nothing went out for 250 ms.
    ///
    /// A connection with nothing queued, nothing awaiting acknowledgement, no
    /// acknowledgement owed and no idle packet due is skipped: renet would only make an
    /// ack-only packet for it, to be damped.
    pub fn send_packets(&mut self, server: &mut renet::RenetServer) {
        for client in server.clients_id() {
            let mut link = self.peers.get(&client).copied().unwrap_or_default();
            let idle = link.idle_due(self.now);
            if !idle && !link.owes_ack() && self.nothing_queued(server, client) {
                continue;
            }
            let Ok(packets) = server.get_packets_to_send(client) else {
                continue;
            };
            for packet in link.outgoing(packets, idle, &mut self.stats) {
                let Ok((addr, payload)) = self.netcode.generate_payload_packet(client, &packet)
                else {
                    break;
                };
                if self.socket.send_to(payload, addr).is_ok() {
                    self.stats.packets_sent += 1;
                }
            }
            if idle {
                link.idled(self.now, self.policy);
            }
            self.peers.insert(client, link);
            if idle {
                let result = detach(self.netcode.update_client(client));
                self.handle(result, server);
            }
        }
    }

    /// Whether every send channel of `client` has its whole memory free.
    fn nothing_queued(&self, server: &renet::RenetServer, client: ClientId) -> bool {
        self.channels
            .iter()
            .all(|&(channel, max)| server.channel_available_memory(client, channel) >= max)
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
