//! Helpers to run matchmaking over renet_netcode's UDP transport with unsecure
//! authentication: what the examples and the UDP tests use. A shipped game would issue
//! secure connect tokens from its backend instead.

use super::clock::unix_now;
use std::net::{SocketAddr, UdpSocket};

use bevy::prelude::*;
use bevy_renet::netcode::{
    ClientAuthentication, NetcodeClientPlugin, NetcodeClientTransport, NetcodeServerPlugin,
    NetcodeServerTransport, ServerAuthentication, ServerConfig,
};
use bevy_renet::renet::ConnectionConfig;
use bevy_renet::{RenetClient, RenetServer};

/// The netcode protocol id of the examples (any value; both sides must agree).
pub const MATCHMAKING_NETCODE_PROTOCOL_ID: u64 = 0x6d61_7463_686d_6b31;

/// Largest number of clients one netcode server accepts (netcode's own limit).
pub const NETCODE_MAX_CLIENTS: usize = 1024;

/// Binds a UDP server on `addr` (port 0 picks a free port) and inserts the [`RenetServer`]
/// and [`NetcodeServerTransport`] resources (adding [`NetcodeServerPlugin`] if needed).
/// Returns the bound address.
pub fn insert_netcode_server(
    app: &mut App,
    addr: SocketAddr,
    max_clients: usize,
    connection_config: ConnectionConfig,
) -> std::io::Result<SocketAddr> {
    let socket = UdpSocket::bind(addr)?;
    let local = socket.local_addr()?;
    let config = ServerConfig {
        current_time: unix_now(),
        max_clients: max_clients.min(NETCODE_MAX_CLIENTS),
        protocol_id: MATCHMAKING_NETCODE_PROTOCOL_ID,
        public_addresses: vec![local],
        authentication: ServerAuthentication::Unsecure,
    };
    let transport = NetcodeServerTransport::new(config, socket)?;
    if !app.is_plugin_added::<NetcodeServerPlugin>() {
        app.add_plugins(NetcodeServerPlugin);
    }
    app.insert_resource(RenetServer::new(connection_config))
        .insert_resource(transport);
    Ok(local)
}

/// Connects a UDP client with this id to `server` and inserts the [`RenetClient`] and
/// [`NetcodeClientTransport`] resources (adding [`NetcodeClientPlugin`] if needed).
pub fn insert_netcode_client(
    app: &mut App,
    server: SocketAddr,
    client_id: u64,
    connection_config: ConnectionConfig,
) -> std::io::Result<()> {
    let transport = netcode_client_transport(server, client_id)?;
    if !app.is_plugin_added::<NetcodeClientPlugin>() {
        app.add_plugins(NetcodeClientPlugin);
    }
    app.insert_resource(RenetClient::new(connection_config))
        .insert_resource(transport);
    Ok(())
}

/// Builds the UDP client transport that [`insert_netcode_client`] inserts (a socket on a
/// free local port, unsecure authentication with this id), without inserting anything:
/// for an app that connects, or reconnects with a new id, from a running system. Insert it
/// with a [`RenetClient`] (through `Commands`); the app needs [`NetcodeClientPlugin`].
pub fn netcode_client_transport(
    server: SocketAddr,
    client_id: u64,
) -> std::io::Result<NetcodeClientTransport> {
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().expect("valid")
    } else {
        "0.0.0.0:0".parse().expect("valid")
    };
    let socket = UdpSocket::bind(bind)?;
    let authentication = ClientAuthentication::Unsecure {
        protocol_id: MATCHMAKING_NETCODE_PROTOCOL_ID,
        client_id,
        server_addr: server,
        user_data: None,
    };
    NetcodeClientTransport::new(unix_now(), authentication, socket)
        .map_err(|e| std::io::Error::other(e.to_string()))
}
