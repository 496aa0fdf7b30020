//! Helpers to run matchmaking over renet_netcode's UDP transport, with secure connect tokens
//! (the default everywhere in this crate) or, for local experiments, insecure connections.
//!
//! # Who a player is
//!
//! The plugins of this crate know a player by its netcode client id
//! ([`PlayerId`](crate::shared::player::PlayerId)). With
//! secure authentication that id comes from a *connect token*, so a client cannot choose
//! who it is. The real flow:
//!
//! 1. The game's **backend** (your login or account service) holds the
//!    [`MatchmakingPrivateKey`]; so do the matchmaking servers and relays, and nothing else.
//! 2. A player logs in; the backend authenticates them and mints a token with
//!    [`MatchmakingTokenIssuer`]: their player id, the server addresses they may use, an
//!    expiry and up to 256 bytes of user data (rating, party, region...). It sends the
//!    token's bytes ([`MatchmakingTokenIssuer::issue_bytes`]) to the game, over a channel
//!    it already trusts (HTTPS).
//! 3. The game reads them ([`connect_token_from_bytes`]) and connects with
//!    [`insert_secure_netcode_client`] or [`secure_netcode_client_transport`].
//! 4. The server ([`insert_secure_netcode_server`]) accepts the connection only if the
//!    token was minted with its key, names one of its public addresses, has not expired and
//!    was not already used from another address. The id every plugin then sees is the id
//!    inside the token. netcode also refuses a second connection under an id that is
//!    connected. The server can read the token's user data with
//!    `NetcodeServerTransport::user_data`.
//!
//! A refused client gets no answer (so a scanner learns nothing): its transport gives up
//! after the token's timeout ([`DEFAULT_TOKEN_TIMEOUT_SECONDS`]) with a
//! `NetcodeDisconnectReason` (`ConnectionRequestTimedOut`, or `ConnectTokenExpired`).
//!
//! The examples stand in for the backend: they mint tokens from a key file that the
//! `server`, `bots`, `lobby` and `negotiated` examples share (see `examples/README.md`).
//!
//! # Failover
//!
//! A client that knows several relays (or servers) connects with a [`MatchmakingFailover`]
//! ([`insert_client_with_failover`]): when its connection is lost it connects to the next
//! address of the list on its own (see [`failover`]).
//!
//! # Insecure connections
//!
//! [`insert_insecure_netcode_server`], [`insert_insecure_netcode_client`] and
//! [`insecure_netcode_client_transport`] use netcode's unsecure mode: the client picks its
//! own id and anyone can connect as anyone. Use them for tests and local experiments only.

mod connect;
pub mod failover;
mod key;
pub mod quiet;
mod tokens;

pub use connect::{
    MatchmakingClientAuthentication, MatchmakingClientTransportKind, MatchmakingConnect,
    MatchmakingConnectPlugin, MatchmakingDisconnect, matchmaking_disconnect_now,
};
pub use failover::{
    DEFAULT_FAILOVER_MAX_RETRY_DELAY, DEFAULT_FAILOVER_RETRY_DELAY, MatchmakingFailedOver,
    MatchmakingFailover, MatchmakingFailoverAuthentication, insert_client_with_failover,
    insert_insecure_netcode_client_with_failover, insert_secure_netcode_client_with_failover,
};
pub use key::MatchmakingPrivateKey;
pub use quiet::{
    MatchmakingAckPolicy, MatchmakingQuietClientPlugin, MatchmakingQuietClientTransport,
    MatchmakingQuietServerPlugin, MatchmakingQuietServerTransport, MatchmakingTransportStats,
    matchmaking_wait_to_wake, matchmaking_wake_runner,
};
pub use tokens::{
    DEFAULT_TOKEN_TIMEOUT_SECONDS, DEFAULT_TOKEN_VALIDITY, MAX_TOKEN_SERVER_ADDRESSES,
    MAX_TOKEN_USER_DATA, MatchmakingTokenIssuer, TokenError, connect_token_from_bytes,
    connect_token_to_bytes,
};

use crate::shared::clock::unix_now;
use crate::shared::connect::MatchmakingConnectTarget;
use crate::shared::connection_config::MatchmakingConnectionConfig;
use std::net::{SocketAddr, UdpSocket};

use bevy::prelude::*;
use bevy_renet::netcode::{
    ClientAuthentication, ConnectToken, NetcodeClientPlugin, NetcodeClientTransport,
    NetcodeServerPlugin, NetcodeServerTransport, ServerAuthentication, ServerConfig,
};
use bevy_renet::renet::ConnectionConfig;
use bevy_renet::{RenetClient, RenetServer};

/// The netcode protocol id of the examples (any value; both sides must agree).
pub const MATCHMAKING_NETCODE_PROTOCOL_ID: u64 = 0x6d61_7463_686d_6b31;

/// Largest number of clients one netcode server accepts (netcode's own limit).
pub const NETCODE_MAX_CLIENTS: usize = 1024;

/// Binds a UDP server on `addr` (port 0 picks a free port) that only accepts connect tokens
/// minted with `key` ([`MatchmakingTokenIssuer`]) naming its bound address, and inserts the
/// [`RenetServer`] and [`NetcodeServerTransport`] resources (adding [`NetcodeServerPlugin`]
/// if needed). Returns the bound address: the one to put in tokens.
///
/// Clients reaching the server through another address (a proxy, NAT, a public IP while
/// bound to `0.0.0.0`) need [`insert_secure_netcode_server_with_addresses`].
pub fn insert_secure_netcode_server(
    app: &mut App,
    addr: SocketAddr,
    max_clients: usize,
    connection_config: ConnectionConfig,
    key: &MatchmakingPrivateKey,
) -> std::io::Result<SocketAddr> {
    insert_secure_netcode_server_with_addresses(app, addr, &[], max_clients, connection_config, key)
}

/// [`insert_secure_netcode_server`] that also accepts tokens naming one of
/// `public_addresses`: the addresses clients send to, when they differ from the bound one.
/// The bound address is always accepted too.
pub fn insert_secure_netcode_server_with_addresses(
    app: &mut App,
    addr: SocketAddr,
    public_addresses: &[SocketAddr],
    max_clients: usize,
    connection_config: ConnectionConfig,
    key: &MatchmakingPrivateKey,
) -> std::io::Result<SocketAddr> {
    let authentication = secure(key);
    insert_server(
        app,
        addr,
        public_addresses,
        max_clients,
        connection_config,
        authentication,
    )
}

/// Binds a UDP server on `addr` (port 0 picks a free port) with netcode's **insecure**
/// authentication (every client picks its own id: tests and local experiments only) and
/// inserts the [`RenetServer`] and [`NetcodeServerTransport`] resources (adding
/// [`NetcodeServerPlugin`] if needed). Returns the bound address.
pub fn insert_insecure_netcode_server(
    app: &mut App,
    addr: SocketAddr,
    max_clients: usize,
    connection_config: ConnectionConfig,
) -> std::io::Result<SocketAddr> {
    insert_server(
        app,
        addr,
        &[],
        max_clients,
        connection_config,
        ServerAuthentication::Unsecure,
    )
}

fn insert_server(
    app: &mut App,
    addr: SocketAddr,
    public_addresses: &[SocketAddr],
    max_clients: usize,
    connection_config: ConnectionConfig,
    authentication: ServerAuthentication,
) -> std::io::Result<SocketAddr> {
    record_config(app, &connection_config)?;
    let (socket, local, config) = bind_server(addr, public_addresses, max_clients, authentication)?;
    let transport = NetcodeServerTransport::new(config, socket)?;
    add_transport_plugin(app, NetcodeServerPlugin)?;
    app.insert_resource(RenetServer::new(connection_config))
        .insert_resource(transport);
    Ok(local)
}

/// Checks that `config` carries the channel of every matchmaking plugin the app has
/// (added before this call), then records it beside the server or client
/// ([`MatchmakingConnectionConfig`]): the plugins check it again, and a client sends its
/// fingerprint in the hello. A config that cannot carry a plugin's messages is an error
/// naming both, before anything is bound or inserted.
fn record_config(app: &mut App, config: &ConnectionConfig) -> std::io::Result<()> {
    record_config_in(app.world_mut(), config)
}

/// [`record_config`] on a world (a running app).
fn record_config_in(world: &mut World, config: &ConnectionConfig) -> std::io::Result<()> {
    let record = MatchmakingConnectionConfig::new(config);
    let mut problems = Vec::new();
    if let Some(channel) = world.get_resource::<crate::atomic::AtomicChannel>()
        && let Err(e) = record.check(channel.id, "the atomic matchmaking plugin")
    {
        problems.push(e.message);
    }
    #[cfg(feature = "negotiated")]
    if let Some(channel) = world.get_resource::<crate::negotiated::NegotiatedChannel>()
        && let Err(e) = record.check(channel.id, "the negotiated matchmaking plugin")
    {
        problems.push(e.message);
    }
    if !problems.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            problems.join("; "),
        ));
    }
    world.insert_resource(record);
    Ok(())
}

/// Adds a transport's plugin unless the app has it. An app already finished (running)
/// cannot take plugins any more: that is an error naming the plugin, not a panic.
fn add_transport_plugin<P: Plugin>(app: &mut App, plugin: P) -> std::io::Result<()> {
    if app.is_plugin_added::<P>() {
        return Ok(());
    }
    if matches!(
        app.plugins_state(),
        bevy::app::PluginsState::Finished | bevy::app::PluginsState::Cleaned
    ) {
        return Err(std::io::Error::other(format!(
            "the app is already finished, so {} cannot be added now: add it before \
             App::finish() or App::run() (or insert the transport earlier)",
            std::any::type_name::<P>()
        )));
    }
    app.add_plugins(plugin);
    Ok(())
}

/// netcode's secure authentication with `key`.
fn secure(key: &MatchmakingPrivateKey) -> ServerAuthentication {
    ServerAuthentication::Secure {
        private_key: *key.as_bytes(),
    }
}

/// Binds the server's socket on `addr`; returns it, its address and the netcode config
/// accepting tokens that name it or one of `public_addresses`.
fn bind_server(
    addr: SocketAddr,
    public_addresses: &[SocketAddr],
    max_clients: usize,
    authentication: ServerAuthentication,
) -> std::io::Result<(UdpSocket, SocketAddr, ServerConfig)> {
    let socket = UdpSocket::bind(addr)?;
    let local = socket.local_addr()?;
    let mut addresses = vec![local];
    addresses.extend(public_addresses.iter().filter(|a| **a != local));
    let config = ServerConfig {
        current_time: unix_now(),
        max_clients: max_clients.min(NETCODE_MAX_CLIENTS),
        protocol_id: MATCHMAKING_NETCODE_PROTOCOL_ID,
        public_addresses: addresses,
        authentication,
    };
    Ok((socket, local, config))
}

/// [`insert_secure_netcode_server`] with the [quiet transport](quiet) instead of
/// renet_netcode's: the same arguments, so either is a drop-in for the other. Inserts the
/// [`RenetServer`] and [`MatchmakingQuietServerTransport`] resources (adding
/// [`MatchmakingQuietServerPlugin`] if needed), acknowledging by the app's
/// [`MatchmakingAckPolicy`] resource if it has one (insert it first), else the default.
/// Returns the bound address.
pub fn insert_quiet_secure_server(
    app: &mut App,
    addr: SocketAddr,
    max_clients: usize,
    connection_config: ConnectionConfig,
    key: &MatchmakingPrivateKey,
) -> std::io::Result<SocketAddr> {
    insert_quiet_secure_server_with_addresses(app, addr, &[], max_clients, connection_config, key)
}

/// [`insert_secure_netcode_server_with_addresses`] with the [quiet transport](quiet), as
/// [`insert_quiet_secure_server`] is [`insert_secure_netcode_server`]'s.
pub fn insert_quiet_secure_server_with_addresses(
    app: &mut App,
    addr: SocketAddr,
    public_addresses: &[SocketAddr],
    max_clients: usize,
    connection_config: ConnectionConfig,
    key: &MatchmakingPrivateKey,
) -> std::io::Result<SocketAddr> {
    record_config(app, &connection_config)?;
    let authentication = secure(key);
    let (socket, local, config) = bind_server(addr, public_addresses, max_clients, authentication)?;
    let policy = ack_policy(app);
    let transport =
        MatchmakingQuietServerTransport::new(config, &connection_config, socket, policy)?;
    add_transport_plugin(app, MatchmakingQuietServerPlugin)?;
    app.insert_resource(RenetServer::new(connection_config))
        .insert_resource(transport);
    Ok(local)
}

/// The app's acknowledgement policy for a quiet transport, or the default.
fn ack_policy(app: &App) -> MatchmakingAckPolicy {
    app.world()
        .get_resource::<MatchmakingAckPolicy>()
        .copied()
        .unwrap_or_default()
}

/// [`insert_secure_netcode_client`] with the [quiet transport](quiet): the same
/// arguments. Inserts the [`RenetClient`] and [`MatchmakingQuietClientTransport`] resources
/// (adding [`MatchmakingQuietClientPlugin`] if needed), acknowledging by the app's
/// [`MatchmakingAckPolicy`] resource if it has one, else the default.
pub fn insert_quiet_secure_client(
    app: &mut App,
    token: ConnectToken,
    connection_config: ConnectionConfig,
) -> std::io::Result<()> {
    let target = token_target(&token)?;
    record_config(app, &connection_config)?;
    let transport = quiet_secure_client_transport(token, ack_policy(app))?;
    add_transport_plugin(app, MatchmakingQuietClientPlugin)?;
    remove_client(app.world_mut());
    app.insert_resource(RenetClient::new(connection_config))
        .insert_resource(transport)
        .insert_resource(target);
    Ok(())
}

/// The quiet client transport over a socket on a free local port, connecting with `token`.
fn quiet_secure_client_transport(
    token: ConnectToken,
    policy: MatchmakingAckPolicy,
) -> std::io::Result<MatchmakingQuietClientTransport> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    let authentication = ClientAuthentication::Secure {
        connect_token: token,
    };
    MatchmakingQuietClientTransport::new(unix_now(), authentication, socket, policy)
        .map_err(std::io::Error::other)
}

/// Connects a UDP client with a connect token (from the game's backend, or a
/// [`MatchmakingTokenIssuer`]) and inserts the [`RenetClient`] and
/// [`NetcodeClientTransport`] resources (adding [`NetcodeClientPlugin`] if needed). The
/// client tries the token's server addresses in order; its player id is the token's.
pub fn insert_secure_netcode_client(
    app: &mut App,
    token: ConnectToken,
    connection_config: ConnectionConfig,
) -> std::io::Result<()> {
    let target = token_target(&token)?;
    let transport = secure_netcode_client_transport(token)?;
    insert_client(app, transport, connection_config, target)
}

/// Builds the UDP client transport that [`insert_secure_netcode_client`] inserts (a socket
/// on a free local port, connecting with `token`), without inserting anything: for an app
/// that connects, or reconnects with a new token, from a running system. Insert it with a
/// [`RenetClient`] (through `Commands`); the app needs [`NetcodeClientPlugin`].
pub fn secure_netcode_client_transport(
    token: ConnectToken,
) -> std::io::Result<NetcodeClientTransport> {
    client_transport(
        token_target(&token)?.server,
        ClientAuthentication::Secure {
            connect_token: token,
        },
    )
}

/// Connects a UDP client with this id to `server` with netcode's **insecure**
/// authentication (the server believes the id: tests and local experiments only) and
/// inserts the [`RenetClient`] and [`NetcodeClientTransport`] resources (adding
/// [`NetcodeClientPlugin`] if needed).
pub fn insert_insecure_netcode_client(
    app: &mut App,
    server: SocketAddr,
    client_id: u64,
    connection_config: ConnectionConfig,
) -> std::io::Result<()> {
    let transport = insecure_netcode_client_transport(server, client_id)?;
    let target = MatchmakingConnectTarget {
        server,
        secure: false,
    };
    insert_client(app, transport, connection_config, target)
}

/// Builds the UDP client transport that [`insert_insecure_netcode_client`] inserts (a
/// socket on a free local port, insecure authentication with this id), without inserting
/// anything: for an app that connects, or reconnects with a new id, from a running system.
/// Insert it with a [`RenetClient`] (through `Commands`); the app needs
/// [`NetcodeClientPlugin`].
pub fn insecure_netcode_client_transport(
    server: SocketAddr,
    client_id: u64,
) -> std::io::Result<NetcodeClientTransport> {
    client_transport(
        server,
        ClientAuthentication::Unsecure {
            protocol_id: MATCHMAKING_NETCODE_PROTOCOL_ID,
            client_id,
            server_addr: server,
            user_data: None,
        },
    )
}

/// Takes out a client connection the app had (closing it, so the server hears of it), so the
/// one inserted next is a new one: the client plugins see a new attempt.
fn remove_client(world: &mut World) {
    world.remove_resource::<crate::shared::connect::ClosedByGame>();
    if let Some(mut transport) = world.remove_resource::<NetcodeClientTransport>() {
        transport.disconnect();
    }
    if let Some(mut transport) = world.remove_resource::<MatchmakingQuietClientTransport>() {
        transport.disconnect();
    }
    world.remove_resource::<RenetClient>();
    world.remove_resource::<MatchmakingConnectTarget>();
}

/// The first server address of a token: where a client connects first.
fn token_target(token: &ConnectToken) -> std::io::Result<MatchmakingConnectTarget> {
    let server = token.server_addresses[0].ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the connect token lists no server address",
        )
    })?;
    Ok(MatchmakingConnectTarget {
        server,
        secure: true,
    })
}

fn insert_client(
    app: &mut App,
    transport: NetcodeClientTransport,
    connection_config: ConnectionConfig,
    target: MatchmakingConnectTarget,
) -> std::io::Result<()> {
    record_config(app, &connection_config)?;
    add_transport_plugin(app, NetcodeClientPlugin)?;
    remove_client(app.world_mut());
    app.insert_resource(RenetClient::new(connection_config))
        .insert_resource(transport)
        .insert_resource(target);
    Ok(())
}

/// A socket on a free local port of `server`'s address family, and the transport over it.
fn client_transport(
    server: SocketAddr,
    authentication: ClientAuthentication,
) -> std::io::Result<NetcodeClientTransport> {
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0".parse().expect("valid")
    } else {
        "0.0.0.0:0".parse().expect("valid")
    };
    let socket = UdpSocket::bind(bind)?;
    NetcodeClientTransport::new(unix_now(), authentication, socket)
        .map_err(|e| std::io::Error::other(e.to_string()))
}
