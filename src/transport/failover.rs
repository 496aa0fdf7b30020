//! Failover between relays (or servers): the client knows a list of addresses, and when its
//! connection is lost it connects to the next one, round the list, on its own.
//!
//! ```
//! use std::time::Duration;
//! use bevy::prelude::*;
//! use bevy_atomic_matchmaking::prelude::*;
//! use bevy_atomic_matchmaking::transport::{
//!     MatchmakingFailover, MatchmakingPrivateKey, MatchmakingTokenIssuer,
//!     insert_client_with_failover,
//! };
//!
//! // the backend mints one token that names every relay, valid for the whole session
//! let relays = ["127.0.0.1:5001".parse()?, "127.0.0.1:5002".parse()?];
//! let backend = MatchmakingTokenIssuer::new(MatchmakingPrivateKey::generate())
//!     .with_timeout(Duration::from_secs(5)); // a relay silent for 5 s is given up
//! let token = backend.issue(42, Duration::from_secs(3600), &relays, &[])?;
//!
//! let mut game = App::new();
//! game.add_plugins(MinimalPlugins)
//!     .add_plugins(NegotiatedClientPlugin::default());
//! let config = NegotiatedChannel::default().connection_config();
//! insert_client_with_failover(&mut game, MatchmakingFailover::secure(token, config))?;
//! let failover = game.world().resource::<MatchmakingFailover>();
//! assert_eq!(failover.current_server(), Some(relays[0]));
//! assert_eq!(failover.failovers(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # When a relay counts as gone
//!
//! The client fails over when its transport (renet_netcode's or the
//! [quiet one](super::quiet)) reports the connection closed, whatever the cause:
//!
//! - **Silent**: no packet arrived for the connect token's timeout (netcode's
//!   `ConnectionTimedOut`). The backend sets it with
//!   [`MatchmakingTokenIssuer::with_timeout`](super::MatchmakingTokenIssuer::with_timeout)
//!   (default [`DEFAULT_TOKEN_TIMEOUT_SECONDS`](super::DEFAULT_TOKEN_TIMEOUT_SECONDS), 15 s);
//!   insecure connections always use netcode's fixed 15 s. A shorter timeout fails over
//!   sooner, and also closes a connection whose packets are held up that long. Over the
//!   quiet transport, which sends one packet a second on an idle connection
//!   ([`MatchmakingAckPolicy::idle_interval`](super::MatchmakingAckPolicy::idle_interval)),
//!   keep it at 3 s or more.
//! - **Never answered**: a connection request got no answer for the timeout (no relay at
//!   that address, or it refused the token), or the client plugin gave the attempt up after
//!   its `connect_timeout` (5 s by default), whichever comes first.
//! - **Closed by the relay**: it shut down or drained (`NegotiatedRelayClosing` comes first,
//!   then the relay closes the connection), refused the client for abuse, was full, or an id
//!   was already connected there.
//!
//! It then waits [`MatchmakingFailover::retry_delay`] (250 ms by default) and connects to
//! the next address of the list, wrapping round, with a new transport and a new
//! `RenetClient`. After a whole round of the list without a connection opening, the delay
//! doubles with every further round, up to [`MatchmakingFailover::max_retry_delay`] (4 s),
//! so a client whose relays are all down does not hammer them; a connection that opens
//! starts the delay over. A game that wants to move on at once (say on
//! `NegotiatedRelayClosing`, before the relay closes the connection) calls
//! [`MatchmakingFailover::fail_over_now`].
//!
//! Each attempt sends only to its own address: the token's public list of addresses is
//! rotated to start at that address and cut to it, so the failover (not netcode, which
//! would otherwise try a token's addresses in order) decides where the client goes, and
//! [`MatchmakingConnectTarget`], [`MatchmakingFailover::current_server`] and the errors name
//! the right relay. The relay checks the token's encrypted list, which still names every
//! relay. Every attempt sends from the same local UDP port, because netcode refuses a token
//! seen from another address: a client coming back to a relay it used before must come from
//! where it came then.
//!
//! Each failover is counted ([`MatchmakingFailover::failovers`]), logged at info and
//! written as a [`MatchmakingFailedOver`] message.
//!
//! # What the client plugins do meanwhile
//!
//! They see a lost connection and then a new one, as after any reconnect. The negotiated
//! client reports a `Connection` error and its machine goes offline: it forgets what the
//! relay told it and keeps its search and what awaits a verdict (an accept, a withdrawal);
//! an open request of its own is given up (its author left that relay) and a bid that waited
//! for an answer will be withdrawn. Once the next relay welcomed it and the clock is
//! estimated again, the machine goes online: it subscribes again to the current and prior
//! frames of its category, posts again what awaited a verdict, and goes on with its search
//! (a fresh request if it was requesting). Facts are content-addressed, so an accept or a
//! withdrawal posted again to relays that share their facts is the same fact, which the
//! store already holds and settles (a duplicate, never a second accept). The atomic client,
//! likewise, reports the lost connection and is `Disconnected` until the next server
//! welcomed it.
//!
//! A negotiated bidder away for longer than the relay's frame duration minus its bid
//! timeout may come back to a store that dropped its request's frame, with an accept of its
//! bid in it: keep the frame duration above the token's timeout plus the bid timeout plus a
//! connect (the relay cluster test runs 6 s frames for a 3 s timeout and a 1 s bid timeout).
//!
//! # The token must stay valid
//!
//! A connect token can be used to open a connection only until it expires (the `valid_for`
//! it was minted with, 60 s by default); netcode refuses an expired token, so a failover
//! after that never connects. Mint it for the length of a session (or longer than any
//! failover may come), or give the failover a fresh one from the backend
//! ([`MatchmakingFailover::set_token`]) before the old one expires. The token must list every
//! relay the client may go to (at most [`MAX_TOKEN_SERVER_ADDRESSES`]): a relay accepts only
//! tokens naming its address.
//!
//! # The game's own requests win
//!
//! A [`MatchmakingConnect`](super::MatchmakingConnect) the game writes replaces the failover
//! (the resource is removed; the new connection does not fail over), and a
//! [`MatchmakingDisconnect`](super::MatchmakingDisconnect) or
//! [`matchmaking_disconnect_now`](super::matchmaking_disconnect_now) stops it (removed
//! too: no reconnection). Removing the resource stops it as well, leaving the connection as
//! it is. A connection closed any other way (say `RenetClient::disconnect`) counts as lost,
//! and the client fails over. Inserting a `MatchmakingFailover` from a running system
//! (through `Commands`) connects to its first address at the next [`First`], replacing the
//! app's connection.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::RenetClient;
use bevy_renet::netcode::{
    ClientAuthentication, ConnectToken, NetcodeClientPlugin, NetcodeClientTransport,
};
use bevy_renet::renet::ConnectionConfig;

use super::connect::{MatchmakingClientTransportKind, MatchmakingConnectPlugin};
use super::quiet::{
    MatchmakingAckPolicy, MatchmakingQuietClientPlugin, MatchmakingQuietClientTransport,
};
use super::{MATCHMAKING_NETCODE_PROTOCOL_ID, MAX_TOKEN_SERVER_ADDRESSES};
use crate::shared::clock::unix_now;
use crate::shared::connect::{ClosedByGame, MatchmakingConnectTarget};

/// How long a client waits after its connection was lost before it connects to the next
/// address, unless [`MatchmakingFailover::with_retry_delay`] says otherwise.
pub const DEFAULT_FAILOVER_RETRY_DELAY: Duration = Duration::from_millis(250);

/// The longest wait between two attempts when every address keeps failing, unless
/// [`MatchmakingFailover::with_max_retry_delay`] says otherwise.
pub const DEFAULT_FAILOVER_MAX_RETRY_DELAY: Duration = Duration::from_secs(4);

/// Who a failing-over client is, and the addresses it goes round.
#[derive(Debug, Clone)]
pub enum MatchmakingFailoverAuthentication {
    /// A connect token from the game's backend; its server addresses are the list, in
    /// order (boxed: a token is 2 KiB).
    Secure(Box<ConnectToken>),
    /// netcode's insecure mode (tests and local experiments): the client picks its id.
    Insecure {
        /// The addresses, in order.
        servers: Vec<SocketAddr>,
        /// The id to connect as.
        client_id: u64,
    },
}

/// A client connection that fails over between several relays (or servers): when the
/// connection is lost, the client connects to the next address of the list (see the
/// [module docs](self) for when, how, and what the client plugins do meanwhile).
///
/// Insert it with [`insert_client_with_failover`] (or its twins) before the app runs, or
/// through `Commands` from a running system (it connects at the next [`First`]); either
/// replaces the connection the app had. The client plugins' [`MatchmakingConnectPlugin`]
/// runs it.
#[derive(Resource, Debug, Clone)]
pub struct MatchmakingFailover {
    /// Who the client is, and the addresses. A game may replace the token (a fresh one
    /// from the backend, [`MatchmakingFailover::set_token`]); it is used from the next
    /// attempt on.
    pub authentication: MatchmakingFailoverAuthentication,
    /// The connection config: the one the relays run on, built from the plugin's channel.
    pub connection_config: ConnectionConfig,
    /// Which UDP transport carries each connection (the quiet one is secure only).
    pub transport: MatchmakingClientTransportKind,
    /// How long to wait after a loss before connecting to the next address.
    pub retry_delay: Duration,
    /// The longest wait between attempts while every address fails (the delay doubles
    /// after each whole round of the list without a connection).
    pub max_retry_delay: Duration,
    /// Index in the list of the address of the current attempt.
    current: usize,
    /// Whether the current attempt was opened (inserted with a helper, or by the system).
    started: bool,
    /// Whether the current attempt's connection opened.
    opened: bool,
    /// Attempts in a row whose connection never opened.
    streak: u32,
    /// When the current connection was seen lost (real time).
    lost_at: Option<Duration>,
    /// The local UDP port every attempt sends from, once bound.
    local_port: Option<u16>,
    /// The game asked to move on at once.
    move_on: bool,
    /// Failovers so far.
    failovers: u32,
}

/// A client failed over: its connection to `from` was lost and it now connects to `to`.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct MatchmakingFailedOver {
    /// The address the lost connection went to.
    pub from: SocketAddr,
    /// The address the client connects to now.
    pub to: SocketAddr,
    /// Why the connection ended, in netcode's words.
    pub reason: String,
    /// Failovers so far, this one included ([`MatchmakingFailover::failovers`]).
    pub failovers: u32,
}

impl MatchmakingFailover {
    fn new(
        authentication: MatchmakingFailoverAuthentication,
        connection_config: ConnectionConfig,
    ) -> Self {
        Self {
            authentication,
            connection_config,
            transport: MatchmakingClientTransportKind::Netcode,
            retry_delay: DEFAULT_FAILOVER_RETRY_DELAY,
            max_retry_delay: DEFAULT_FAILOVER_MAX_RETRY_DELAY,
            current: 0,
            started: false,
            opened: false,
            streak: 0,
            lost_at: None,
            local_port: None,
            move_on: false,
            failovers: 0,
        }
    }

    /// Fails over between the server addresses of `token`, in its order, over
    /// renet_netcode's transport.
    pub fn secure(token: ConnectToken, connection_config: ConnectionConfig) -> Self {
        let authentication = MatchmakingFailoverAuthentication::Secure(Box::new(token));
        Self::new(authentication, connection_config)
    }

    /// Fails over between `servers`, in order, connecting insecurely as `client_id` (tests
    /// and local experiments only).
    pub fn insecure(
        servers: &[SocketAddr],
        client_id: u64,
        connection_config: ConnectionConfig,
    ) -> Self {
        let authentication = MatchmakingFailoverAuthentication::Insecure {
            servers: servers.to_vec(),
            client_id,
        };
        Self::new(authentication, connection_config)
    }

    /// The same failover over the [quiet transport](super::quiet) (secure only).
    pub fn quiet(self) -> Self {
        Self {
            transport: MatchmakingClientTransportKind::Quiet,
            ..self
        }
    }

    /// The same failover with another [`retry_delay`](Self::retry_delay).
    pub fn with_retry_delay(self, retry_delay: Duration) -> Self {
        Self {
            retry_delay,
            ..self
        }
    }

    /// The same failover with another [`max_retry_delay`](Self::max_retry_delay).
    pub fn with_max_retry_delay(self, max_retry_delay: Duration) -> Self {
        Self {
            max_retry_delay,
            ..self
        }
    }

    /// The addresses the client goes round, in order.
    pub fn servers(&self) -> Vec<SocketAddr> {
        match &self.authentication {
            MatchmakingFailoverAuthentication::Secure(token) => {
                token.server_addresses.iter().flatten().copied().collect()
            }
            MatchmakingFailoverAuthentication::Insecure { servers, .. } => servers.clone(),
        }
    }

    /// The address the client is connected to, or connecting to (`None` with no address).
    pub fn current_server(&self) -> Option<SocketAddr> {
        let servers = self.servers();
        servers.get(self.current % servers.len().max(1)).copied()
    }

    /// How many times the client failed over so far.
    pub fn failovers(&self) -> u32 {
        self.failovers
    }

    /// Replaces the connect token (a fresh one from the backend, before the old one
    /// expires); the next attempt uses it, going on from the next address of its list.
    pub fn set_token(&mut self, token: ConnectToken) {
        self.authentication = MatchmakingFailoverAuthentication::Secure(Box::new(token));
    }

    /// Closes the current connection (telling the relay) and connects to the next address
    /// at the next [`First`], without waiting for the relay to close it or go silent: for a
    /// relay that said it is closing.
    pub fn fail_over_now(&mut self) {
        self.move_on = true;
    }

    /// How long a connection may stay silent before this failover moves on: the connect
    /// token's timeout (netcode's fixed 15 s for insecure connections; none for a token
    /// whose timeout is disabled).
    pub fn silence_timeout(&self) -> Option<Duration> {
        match &self.authentication {
            MatchmakingFailoverAuthentication::Secure(token) => {
                u64::try_from(token.timeout_seconds)
                    .ok()
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs)
            }
            MatchmakingFailoverAuthentication::Insecure { .. } => Some(Duration::from_secs(15)),
        }
    }

    /// The client authentication of an attempt on `server`.
    fn client_authentication(&self, server: SocketAddr) -> ClientAuthentication {
        match &self.authentication {
            MatchmakingFailoverAuthentication::Secure(token) => {
                let mut token = (**token).clone();
                // the relay checks the encrypted list, which stays whole
                token.server_addresses = [None; MAX_TOKEN_SERVER_ADDRESSES];
                token.server_addresses[0] = Some(server);
                ClientAuthentication::Secure {
                    connect_token: token,
                }
            }
            MatchmakingFailoverAuthentication::Insecure { client_id, .. } => {
                ClientAuthentication::Unsecure {
                    protocol_id: MATCHMAKING_NETCODE_PROTOCOL_ID,
                    client_id: *client_id,
                    server_addr: server,
                    user_data: None,
                }
            }
        }
    }

    /// How long to wait before the next attempt when the current one ends now, and the
    /// streak of attempts that never opened it makes.
    fn next_delay(&self) -> (Duration, u32) {
        let streak = if self.opened { 0 } else { self.streak + 1 };
        let rounds = streak / self.servers().len().max(1) as u32;
        let delay = self
            .retry_delay
            .saturating_mul(1 << rounds.min(16))
            .min(self.max_retry_delay.max(self.retry_delay));
        (delay, streak)
    }
}

/// Connects `app` with `failover`: at once to its first address (replacing the app's
/// connection, as [`insert_secure_netcode_client`](super::insert_secure_netcode_client)
/// does), then to the next one each time the connection is lost. Adds the transport's
/// plugin and [`MatchmakingConnectPlugin`] if the app has not (the client plugins add the
/// latter). A config that lacks a plugin's channel, an insecure failover over the quiet
/// transport, no address or no socket is an error, and nothing is inserted.
pub fn insert_client_with_failover(app: &mut App, failover: MatchmakingFailover) -> io::Result<()> {
    check(&failover)?;
    super::record_config(app, &failover.connection_config)?;
    match failover.transport {
        MatchmakingClientTransportKind::Netcode => {
            super::add_transport_plugin(app, NetcodeClientPlugin)?
        }
        MatchmakingClientTransportKind::Quiet => {
            super::add_transport_plugin(app, MatchmakingQuietClientPlugin)?
        }
    }
    super::add_transport_plugin(app, MatchmakingConnectPlugin)?;
    let world = app.world_mut();
    let first = failover.current;
    world.insert_resource(failover);
    if let Err(e) = open_attempt(world, first) {
        world.remove_resource::<MatchmakingFailover>();
        return Err(e);
    }
    Ok(())
}

/// [`insert_client_with_failover`] between the server addresses of `token`, over
/// renet_netcode's transport, with the default delays.
pub fn insert_secure_netcode_client_with_failover(
    app: &mut App,
    token: ConnectToken,
    connection_config: ConnectionConfig,
) -> io::Result<()> {
    insert_client_with_failover(app, MatchmakingFailover::secure(token, connection_config))
}

/// [`insert_client_with_failover`] between `servers`, insecurely as `client_id` (tests and
/// local experiments only), with the default delays.
pub fn insert_insecure_netcode_client_with_failover(
    app: &mut App,
    servers: &[SocketAddr],
    client_id: u64,
    connection_config: ConnectionConfig,
) -> io::Result<()> {
    let failover = MatchmakingFailover::insecure(servers, client_id, connection_config);
    insert_client_with_failover(app, failover)
}

/// What cannot work whatever the network does.
fn check(failover: &MatchmakingFailover) -> io::Result<()> {
    let invalid = |message: &str| io::Error::new(io::ErrorKind::InvalidInput, message.to_owned());
    if failover.servers().is_empty() {
        return Err(invalid("the failover lists no server address"));
    }
    let insecure = matches!(
        failover.authentication,
        MatchmakingFailoverAuthentication::Insecure { .. }
    );
    if insecure && failover.transport == MatchmakingClientTransportKind::Quiet {
        return Err(invalid(
            "the quiet transport connects with connect tokens only",
        ));
    }
    Ok(())
}

/// Opens the attempt on the address at `index` (round the list) of the app's failover,
/// replacing the app's connection; returns the address.
fn open_attempt(world: &mut World, index: usize) -> io::Result<SocketAddr> {
    let policy = world
        .get_resource::<MatchmakingAckPolicy>()
        .copied()
        .unwrap_or_default();
    let mut failover = world
        .get_resource_mut::<MatchmakingFailover>()
        .ok_or_else(|| io::Error::other("no failover"))?;
    let servers = failover.servers();
    let index = index % servers.len().max(1);
    failover.current = index;
    failover.started = true;
    failover.opened = false;
    failover.lost_at = None;
    failover.move_on = false;
    check(&failover)?;
    let server = servers[index];
    let authentication = failover.client_authentication(server);
    let (config, kind, port) = (
        failover.connection_config.clone(),
        failover.transport,
        failover.local_port,
    );
    super::record_config_in(world, &config)?;
    super::remove_client(world);
    let socket = bind_socket(server, port)?;
    let bound = socket.local_addr()?.port();
    let secure = matches!(authentication, ClientAuthentication::Secure { .. });
    match kind {
        MatchmakingClientTransportKind::Netcode => {
            let transport = NetcodeClientTransport::new(unix_now(), authentication, socket)
                .map_err(|e| io::Error::other(e.to_string()))?;
            world.insert_resource(transport);
        }
        MatchmakingClientTransportKind::Quiet => {
            let transport =
                MatchmakingQuietClientTransport::new(unix_now(), authentication, socket, policy)
                    .map_err(io::Error::other)?;
            world.insert_resource(transport);
        }
    }
    world.insert_resource(RenetClient::new(config));
    world.insert_resource(MatchmakingConnectTarget { server, secure });
    world.resource_mut::<MatchmakingFailover>().local_port = Some(bound);
    Ok(server)
}

/// A UDP socket of `server`'s address family on local `port` (the one earlier attempts sent
/// from, so a relay that saw the token before sees it from the same address), or on a free
/// port if there is none yet or it is taken.
fn bind_socket(server: SocketAddr, port: Option<u16>) -> io::Result<UdpSocket> {
    let any = |port| -> SocketAddr {
        match server {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, port).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, port).into(),
        }
    };
    match port.map(|p| UdpSocket::bind(any(p))) {
        Some(Ok(socket)) => Ok(socket),
        Some(Err(e)) => {
            warn!(
                "matchmaking failover: cannot send from local port {} again ({e}); a relay \
                 that saw this token from there will refuse it from another port",
                port.unwrap_or_default()
            );
            UdpSocket::bind(any(0))
        }
        None => UdpSocket::bind(any(0)),
    }
}

/// What the failover reads of the connection, whichever netcode transport carries it.
#[derive(SystemParam)]
pub(super) struct FailoverLink<'w> {
    client: Option<Res<'w, RenetClient>>,
    netcode: Option<Res<'w, NetcodeClientTransport>>,
    quiet: Option<Res<'w, MatchmakingQuietClientTransport>>,
    closed_by_game: Option<Res<'w, ClosedByGame>>,
    time: Res<'w, Time<Real>>,
}

impl FailoverLink<'_> {
    fn connected(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.is_connected())
    }

    /// Why the connection ended, if it did (no transport at all counts as ended: an attempt
    /// that could not be opened).
    fn ended(&self) -> Option<String> {
        match (&self.netcode, &self.quiet) {
            (Some(t), _) => t.disconnect_reason().map(|r| r.to_string()),
            (_, Some(t)) => t.disconnect_reason().map(|r| r.to_string()),
            (None, None) => Some("no connection could be opened".to_owned()),
        }
    }
}

/// Runs the app's [`MatchmakingFailover`] (in [`First`], after the game's connection
/// requests): opens its first attempt once inserted, and after a loss (not closed by the
/// game) and the retry delay, the next one.
pub(super) fn run_failover(
    failover: Option<ResMut<MatchmakingFailover>>,
    link: FailoverLink,
    mut failed_over: MessageWriter<MatchmakingFailedOver>,
    mut commands: Commands,
) {
    let Some(mut failover) = failover else {
        return;
    };
    if link.closed_by_game.is_some() {
        return;
    }
    if !failover.started {
        failover.started = true;
        let first = failover.current;
        commands.queue(move |world: &mut World| attempt(world, first));
        return;
    }
    failover.opened |= link.connected();
    let reason = match failover.move_on {
        true => Some("the game asked to fail over".to_owned()),
        false => link.ended(),
    };
    let Some(reason) = reason else {
        failover.lost_at = None;
        return;
    };
    let now = link.time.elapsed();
    let lost_at = *failover.lost_at.get_or_insert(now);
    let (delay, streak) = failover.next_delay();
    if !failover.move_on && now.saturating_sub(lost_at) < delay {
        return;
    }
    let servers = failover.servers();
    let Some(from) = failover.current_server() else {
        return;
    };
    let next = (failover.current + 1) % servers.len();
    failover.streak = streak;
    failover.failovers += 1;
    failover.lost_at = None;
    let to = servers[next];
    info!(
        "matchmaking: failover {}: the connection to {from} ended ({reason}); connecting to {to}",
        failover.failovers
    );
    failed_over.write(MatchmakingFailedOver {
        from,
        to,
        reason,
        failovers: failover.failovers,
    });
    commands.queue(move |world: &mut World| attempt(world, next));
}

/// Opens the attempt at `index`, reporting a failure to the client plugins (the failover
/// then moves on after its delay).
fn attempt(world: &mut World, index: usize) {
    if let Err(e) = open_attempt(world, index) {
        super::connect::report_connect_failure(world, format!("cannot fail over: {e}"));
    }
}
