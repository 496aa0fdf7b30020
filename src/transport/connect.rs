//! Connecting and disconnecting from a running system: the game writes
//! [`MatchmakingConnect`] (say, when the player clicks Find match) and
//! [`MatchmakingDisconnect`], and never names bevy_renet. Both client plugins add
//! [`MatchmakingConnectPlugin`], which carries them out.
//!
//! ```
//! use std::time::Duration;
//! use bevy::prelude::*;
//! use bevy_atomic_matchmaking::prelude::*;
//! use bevy_atomic_matchmaking::transport::{MatchmakingConnect, MatchmakingDisconnect};
//!
//! /// Find match: connect with the token the backend sent, and join the queue (the plugin
//! /// sends the join once the server welcomed us).
//! fn find_match(
//!     mut connect: MessageWriter<MatchmakingConnect>,
//!     mut join: MessageWriter<AtomicJoinQueue>,
//! ) {
//!     let server = "127.0.0.1:5000".parse().unwrap();
//!     let config = AtomicChannel::default().connection_config();
//!     // a real game: MatchmakingConnect::secure(token_from_the_backend, config)
//!     connect.write(MatchmakingConnect::insecure(server, 7, config));
//!     join.write(AtomicJoinQueue { category: "duel".into() });
//! }
//!
//! /// Quit to the menu: close the connection (the server hears of it at once).
//! fn quit(mut disconnect: MessageWriter<MatchmakingDisconnect>) {
//!     disconnect.write(MatchmakingDisconnect);
//! }
//!
//! let mut game = App::new();
//! game.add_plugins(MinimalPlugins)
//!     .add_plugins(AtomicClientPlugin::default())
//!     .add_systems(Startup, find_match);
//! game.finish();
//! game.cleanup();
//! game.update();
//! assert!(game.world().contains_resource::<MatchmakingConnectTarget>());
//! ```

use std::net::SocketAddr;

use bevy::prelude::*;
use bevy_renet::RenetClient;
use bevy_renet::netcode::{ConnectToken, NetcodeClientPlugin, NetcodeClientTransport};
use bevy_renet::renet::ConnectionConfig;

use super::failover::{MatchmakingFailedOver, MatchmakingFailover, run_failover};
use super::quiet::{
    MatchmakingAckPolicy, MatchmakingQuietClientPlugin, MatchmakingQuietClientTransport,
};
use crate::shared::connect::{ClosedByGame, MatchmakingConnectTarget};

/// Opens the client's connection, replacing the one it had: what
/// [`insert_secure_netcode_client`](super::insert_secure_netcode_client) and its twins do
/// before the app runs, from a running system. A request that cannot be carried out (a token
/// with no address, a config that lacks the plugin's channel, no socket) is reported as the
/// client plugins' `ConnectFailed` error; a connection that does not open is reported as
/// usual.
///
/// It also ends a [`MatchmakingFailover`] the app had (the resource is removed, even if the
/// request fails): the new connection does not fail over. To fail over, insert a new
/// `MatchmakingFailover` instead, which connects itself.
#[derive(Message, Debug, Clone)]
pub struct MatchmakingConnect {
    /// Who the client is.
    pub authentication: MatchmakingClientAuthentication,
    /// The connection config: the one the server runs on, built from the plugin's channel.
    pub connection_config: ConnectionConfig,
    /// Which UDP transport carries it.
    pub transport: MatchmakingClientTransportKind,
}

/// How a client proves who it is.
#[derive(Debug, Clone)]
pub enum MatchmakingClientAuthentication {
    /// A connect token from the game's backend (the server addresses are in it; boxed,
    /// a token is 2 KiB).
    Secure(Box<ConnectToken>),
    /// netcode's insecure mode: the client picks its id (tests and local experiments).
    Insecure {
        /// The server (or relay) address.
        server: SocketAddr,
        /// The id to connect as.
        client_id: u64,
    },
}

/// The UDP transport of a client connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MatchmakingClientTransportKind {
    /// renet_netcode's.
    #[default]
    Netcode,
    /// The crate's [quiet transport](super::quiet) (secure only).
    Quiet,
}

impl MatchmakingConnect {
    /// Connects with a connect token, over renet_netcode's transport.
    pub fn secure(token: ConnectToken, connection_config: ConnectionConfig) -> Self {
        Self {
            authentication: MatchmakingClientAuthentication::Secure(Box::new(token)),
            connection_config,
            transport: MatchmakingClientTransportKind::Netcode,
        }
    }

    /// Connects insecurely as `client_id` (tests and local experiments only).
    pub fn insecure(
        server: SocketAddr,
        client_id: u64,
        connection_config: ConnectionConfig,
    ) -> Self {
        Self {
            authentication: MatchmakingClientAuthentication::Insecure { server, client_id },
            connection_config,
            transport: MatchmakingClientTransportKind::Netcode,
        }
    }

    /// The same request over the quiet transport.
    pub fn quiet(self) -> Self {
        Self {
            transport: MatchmakingClientTransportKind::Quiet,
            ..self
        }
    }
}

/// Closes the client's connection (the server hears of it at once). The client plugins go
/// back to `Disconnected` without a `Connection` error: the game asked for it. It also stops
/// a [`MatchmakingFailover`] (removed: no reconnection).
#[derive(Message, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchmakingDisconnect;

/// Carries out [`MatchmakingConnect`] and [`MatchmakingDisconnect`] in [`First`], then runs
/// the app's [`MatchmakingFailover`], if it has one (see [`super::failover`]). Added by both
/// client plugins; adds renet_netcode's and the quiet client plugins (in
/// [`Plugin::finish`], unless the game added them).
pub struct MatchmakingConnectPlugin;

impl Plugin for MatchmakingConnectPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<MatchmakingConnect>()
            .add_message::<MatchmakingDisconnect>()
            .add_message::<MatchmakingFailedOver>()
            .add_systems(
                First,
                (
                    apply_connection_requests,
                    run_failover
                        .after(apply_connection_requests)
                        .after(bevy::time::TimeSystems),
                ),
            );
    }

    fn finish(&self, app: &mut App) {
        if !app.is_plugin_added::<NetcodeClientPlugin>() {
            app.add_plugins(NetcodeClientPlugin);
        }
        if !app.is_plugin_added::<MatchmakingQuietClientPlugin>() {
            app.add_plugins(MatchmakingQuietClientPlugin);
        }
    }
}

/// Queues the requests of this frame, in order, for the end of [`First`].
fn apply_connection_requests(
    mut connects: MessageReader<MatchmakingConnect>,
    mut disconnects: MessageReader<MatchmakingDisconnect>,
    mut commands: Commands,
) {
    if disconnects.read().count() > 0 {
        commands.queue(close_client);
    }
    for request in connects.read() {
        let request = request.clone();
        commands.queue(move |world: &mut World| {
            if let Err(e) = connect(world, request) {
                report_connect_failure(world, format!("cannot connect: {e}"));
            }
        });
    }
}

/// Opens the connection `request` asks for, replacing the app's.
fn connect(world: &mut World, request: MatchmakingConnect) -> std::io::Result<()> {
    world.remove_resource::<MatchmakingFailover>();
    let config = request.connection_config;
    super::record_config_in(world, &config)?;
    world.remove_resource::<ClosedByGame>();
    let policy = world
        .get_resource::<MatchmakingAckPolicy>()
        .copied()
        .unwrap_or_default();
    match (request.authentication, request.transport) {
        (MatchmakingClientAuthentication::Secure(token), kind) => {
            let token = *token;
            let target = super::token_target(&token)?;
            if kind == MatchmakingClientTransportKind::Quiet {
                let transport = super::quiet_secure_client_transport(token, policy)?;
                super::remove_client(world);
                world.insert_resource(transport);
            } else {
                let transport = super::secure_netcode_client_transport(token)?;
                super::remove_client(world);
                world.insert_resource(transport);
            }
            world.insert_resource(target);
        }
        (
            MatchmakingClientAuthentication::Insecure { .. },
            MatchmakingClientTransportKind::Quiet,
        ) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the quiet transport connects with connect tokens only",
            ));
        }
        (MatchmakingClientAuthentication::Insecure { server, client_id }, _) => {
            let transport = super::insecure_netcode_client_transport(server, client_id)?;
            super::remove_client(world);
            world.insert_resource(transport);
            world.insert_resource(MatchmakingConnectTarget {
                server,
                secure: false,
            });
        }
    }
    world.insert_resource(RenetClient::new(config));
    Ok(())
}

/// Closes the client's connection at once, as [`MatchmakingDisconnect`] does at the next
/// frame: for the frame the app exits in (a system in `Last` after the window closed), where a
/// message would come too late. The resources stay, so the client plugins see a connection
/// the client closed, not a lost one; a [`MatchmakingFailover`] is removed.
pub fn matchmaking_disconnect_now(world: &mut World) {
    close_client(world);
}

/// Closes the connection the app has, keeping its resources.
fn close_client(world: &mut World) {
    world.insert_resource(ClosedByGame);
    world.remove_resource::<MatchmakingFailover>();
    if let Some(mut transport) = world.get_resource_mut::<NetcodeClientTransport>() {
        transport.disconnect();
    }
    if let Some(mut transport) = world.get_resource_mut::<MatchmakingQuietClientTransport>() {
        transport.disconnect();
    }
    if let Some(mut client) = world.get_resource_mut::<RenetClient>() {
        client.disconnect();
    }
}

/// Tells the client plugins' games that a connect request failed.
pub(super) fn report_connect_failure(world: &mut World, message: String) {
    warn!("matchmaking: {message}");
    #[cfg(feature = "client")]
    if world.contains_resource::<Messages<crate::atomic::client::AtomicClientError>>() {
        world.write_message(crate::atomic::client::AtomicClientError {
            kind: crate::atomic::core::protocol::AtomicErrorKind::ConnectFailed,
            message: message.clone(),
        });
    }
    #[cfg(feature = "negotiated")]
    if world.contains_resource::<Messages<crate::negotiated::client::NegotiatedClientError>>() {
        world.write_message(crate::negotiated::client::NegotiatedClientError::new(
            crate::negotiated::core::protocol::NegotiatedErrorKind::ConnectFailed,
            message,
        ));
    }
    #[cfg(not(any(feature = "client", feature = "negotiated")))]
    let _ = (world, message);
}
