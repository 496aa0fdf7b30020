//! Who the example players are. Secure by default: servers and relays check netcode connect
//! tokens against a private key, and the example clients mint their own tokens from the same
//! key file, standing in for a game's backend (which would authenticate the player first).
//! `--insecure` falls back to netcode's unsecure mode, where each client picks its own id.
//!
//! Shared by the `server`, `bots`, `demo`, `lobby` and `negotiated` examples.

// each example that includes this module uses a different part of it
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use bevy::prelude::*;
use bevy_atomic_matchmaking::transport::{
    DEFAULT_TOKEN_VALIDITY, MatchmakingFailover, MatchmakingPrivateKey, MatchmakingTokenIssuer,
    insecure_netcode_client_transport, insert_insecure_netcode_client,
    insert_insecure_netcode_server, insert_secure_netcode_client,
    insert_secure_netcode_server_with_addresses, secure_netcode_client_transport,
};
use bevy_atomic_matchmaking::transport::{
    MatchmakingAckPolicy, MatchmakingQuietClientTransport, insert_quiet_secure_client,
    insert_quiet_secure_server_with_addresses,
};
use bevy_renet::netcode::{NetcodeClientTransport, NetcodeDisconnectReason};
use bevy_renet::renet::ConnectionConfig;

/// The key file every example uses unless given `--key-file`: `target/matchmaking-dev.key`
/// in this crate's directory (an absolute path compiled in, so `server` and `bots` started
/// from anywhere share it). Created with owner-only permissions on first use.
pub const DEFAULT_KEY_FILE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/target/matchmaking-dev.key");

/// `--netcode` and `--quiet`: which UDP transport the example's server and clients use.
#[derive(clap::Args, Debug, Clone)]
pub struct TransportArgs {
    /// Use renet_netcode's transport instead of the crate's quiet one (the benchmarks' baseline)
    #[arg(long, overrides_with = "quiet")]
    pub netcode: bool,
    /// Use the crate's quiet transport (the default; accepted for older command lines)
    #[arg(long, overrides_with = "netcode")]
    quiet: bool,
}

impl TransportArgs {
    /// The crate's quiet transports (the default; secure only), or renet_netcode's with
    /// `--netcode` (every ack and keep-alive sent: the baseline the benchmarks compare with).
    pub fn quiet(&self) -> bool {
        !self.netcode
    }
}

/// `--key-file PATH`, `--insecure`, and the transport flags (`--netcode`, `--quiet`).
#[derive(clap::Args, Debug, Clone)]
pub struct IdentityArgs {
    /// The private key file that checks or mints connect tokens (`server` creates a missing
    /// one only with --create-key, or for this development default)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_KEY_FILE)]
    pub key_file: PathBuf,
    /// netcode's unsecure mode: every client picks its own player id (local experiments only)
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub transport: TransportArgs,
}

impl IdentityArgs {
    /// The identity these flags ask for: the key file's key (read or created), or insecure
    /// (with a warning on stderr, prefixed with `who`).
    pub fn load(&self, who: &str) -> Result<Identity, String> {
        if self.insecure {
            eprintln!(
                "{who}: WARNING: --insecure: every client picks its own player id, so anyone can \
                 connect as anyone; for local experiments only"
            );
            return Ok(Identity::Insecure);
        }
        let key = MatchmakingPrivateKey::load_or_create(&self.key_file)
            .map_err(|e| format!("key file {}: {e}", self.key_file.display()))?;
        let issuer = MatchmakingTokenIssuer::new(key);
        Ok(if self.transport.quiet() {
            Identity::QuietTokens(issuer)
        } else {
            Identity::Tokens(issuer)
        })
    }
}

/// Reads the key file at `path` for a server. A missing file is created only when `create`
/// (the operator asked) or when `path` is [`DEFAULT_KEY_FILE`] (the development key, so
/// `cargo run --example server` works on a fresh clone), with a note on stderr; otherwise it
/// is an error, so that a typo in the path is not a fresh key that refuses every client. A
/// file readable by group or others gets a warning on stderr (unix).
pub fn load_server_key(
    path: &std::path::Path,
    create: bool,
    who: &str,
) -> Result<MatchmakingPrivateKey, String> {
    let development = path == std::path::Path::new(DEFAULT_KEY_FILE);
    let key = match MatchmakingPrivateKey::load(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && (create || development) => {
            let key = MatchmakingPrivateKey::load_or_create(path)
                .map_err(|e| format!("cannot create key file {}: {e}", path.display()))?;
            let what = if development {
                "the development key file"
            } else {
                "the key file"
            };
            eprintln!(
                "{who}: note: created {what} {} (owner-only); clients mint their tokens \
                 from the same file",
                path.display()
            );
            key
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "key file {} does not exist (a typo?); give --create-key to create it",
                path.display()
            ));
        }
        Err(e) => return Err(format!("key file {}: {e}", path.display())),
        Ok(key) => key,
    };
    warn_if_readable_by_others(path, who);
    Ok(key)
}

/// A warning on stderr when the key file at `path` is readable by group or others (unix).
fn warn_if_readable_by_others(path: &std::path::Path, who: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "{who}: WARNING: key file {} is readable by group or others (mode {:o}): anyone \
                 who reads it can mint tokens as any player; chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, who);
}

/// How an example's clients connect, and how its server checks them.
#[derive(Clone, Debug)]
pub enum Identity {
    /// Connect tokens minted from this key (the issuer holds it).
    Tokens(MatchmakingTokenIssuer),
    /// Connect tokens minted from this key, over the quiet transports.
    QuietTokens(MatchmakingTokenIssuer),
    /// netcode's unsecure mode.
    Insecure,
}

impl Identity {
    /// Secure, with a fresh key that lives only in this process (an embedded server and its
    /// clients), over the quiet transports.
    pub fn in_memory() -> Self {
        Identity::QuietTokens(MatchmakingTokenIssuer::new(
            MatchmakingPrivateKey::generate(),
        ))
    }

    /// Secure, with `key`, over the quiet transports or (`quiet` false) renet_netcode's.
    pub fn secure(key: MatchmakingPrivateKey, quiet: bool) -> Self {
        let issuer = MatchmakingTokenIssuer::new(key);
        match quiet {
            true => Identity::QuietTokens(issuer),
            false => Identity::Tokens(issuer),
        }
    }

    /// The same identity, the tokens it mints carrying this connection timeout (whole
    /// seconds, at least 1): how long a server may stay silent before the client gives it
    /// up.
    pub fn with_token_timeout(self, timeout: std::time::Duration) -> Self {
        match self {
            Identity::Tokens(issuer) => Identity::Tokens(issuer.with_timeout(timeout)),
            Identity::QuietTokens(issuer) => Identity::QuietTokens(issuer.with_timeout(timeout)),
            Identity::Insecure => Identity::Insecure,
        }
    }

    /// A connection for `player` that fails over between `servers` (in order): when
    /// secure, one token naming every server, usable to connect for `valid_for`.
    pub fn failover(
        &self,
        servers: &[SocketAddr],
        player: u64,
        config: ConnectionConfig,
        valid_for: std::time::Duration,
    ) -> std::io::Result<MatchmakingFailover> {
        let token = |issuer: &MatchmakingTokenIssuer| {
            issuer
                .issue(player, valid_for, servers, &[])
                .map_err(std::io::Error::other)
        };
        Ok(match self {
            Identity::Tokens(issuer) => MatchmakingFailover::secure(token(issuer)?, config),
            Identity::QuietTokens(issuer) => {
                MatchmakingFailover::secure(token(issuer)?, config).quiet()
            }
            Identity::Insecure => MatchmakingFailover::insecure(servers, player, config),
        })
    }

    /// Whether clients connect with tokens.
    pub fn is_secure(&self) -> bool {
        matches!(self, Identity::Tokens(_) | Identity::QuietTokens(_))
    }

    /// One line for a startup message.
    pub fn describe(&self, key_file: Option<&std::path::Path>) -> String {
        match (self, key_file) {
            (Identity::Insecure, _) => "INSECURE: clients pick their own ids".into(),
            (Identity::QuietTokens(_), Some(path)) => format!(
                "connect tokens checked with the key in {}, quiet transport",
                path.display()
            ),
            (Identity::QuietTokens(_), None) => {
                "connect tokens from an in-memory key, quiet transport".into()
            }
            (Identity::Tokens(_), Some(path)) => {
                format!("connect tokens checked with the key in {}", path.display())
            }
            (Identity::Tokens(_), None) => "connect tokens from an in-memory key".into(),
        }
    }

    /// Binds a server on `addr` that accepts this identity's clients; tokens may also name
    /// one of `public` (the address clients send to, when it differs from the bound one).
    pub fn insert_server(
        &self,
        app: &mut App,
        addr: SocketAddr,
        public: &[SocketAddr],
        max_clients: usize,
        config: ConnectionConfig,
    ) -> std::io::Result<SocketAddr> {
        match self {
            Identity::Tokens(issuer) => insert_secure_netcode_server_with_addresses(
                app,
                addr,
                public,
                max_clients,
                config,
                issuer.key(),
            ),
            Identity::QuietTokens(issuer) => insert_quiet_secure_server_with_addresses(
                app,
                addr,
                public,
                max_clients,
                config,
                issuer.key(),
            ),
            Identity::Insecure => insert_insecure_netcode_server(app, addr, max_clients, config),
        }
    }

    /// Connects `app` to `server` as `player` (minting its token when secure).
    pub fn insert_client(
        &self,
        app: &mut App,
        server: SocketAddr,
        player: u64,
        config: ConnectionConfig,
    ) -> std::io::Result<()> {
        match self {
            Identity::Tokens(issuer) => {
                insert_secure_netcode_client(app, mint(issuer, server, player)?, config)
            }
            Identity::QuietTokens(issuer) => {
                insert_quiet_secure_client(app, mint(issuer, server, player)?, config)
            }
            Identity::Insecure => insert_insecure_netcode_client(app, server, player, config),
        }
    }

    /// The request that connects `player` to `server` from a running system (the game
    /// writes it as a message; the client plugins carry it out).
    pub fn connect_request(
        &self,
        server: SocketAddr,
        player: u64,
        config: ConnectionConfig,
    ) -> std::io::Result<bevy_atomic_matchmaking::transport::MatchmakingConnect> {
        use bevy_atomic_matchmaking::transport::MatchmakingConnect;
        Ok(match self {
            Identity::Tokens(issuer) => {
                MatchmakingConnect::secure(mint(issuer, server, player)?, config)
            }
            Identity::QuietTokens(issuer) => {
                MatchmakingConnect::secure(mint(issuer, server, player)?, config).quiet()
            }
            Identity::Insecure => MatchmakingConnect::insecure(server, player, config),
        })
    }

    /// The client transport for `player` to `server`, not inserted (to connect from a
    /// running system).
    pub fn client_transport(
        &self,
        server: SocketAddr,
        player: u64,
    ) -> std::io::Result<NetcodeClientTransport> {
        match self {
            // netcode's own transport talks to a quiet server too
            Identity::Tokens(issuer) | Identity::QuietTokens(issuer) => {
                secure_netcode_client_transport(mint(issuer, server, player)?)
            }
            Identity::Insecure => insecure_netcode_client_transport(server, player),
        }
    }

    /// The quiet client transport for `player` to `server`, not inserted; `None` unless
    /// this identity uses the quiet transports.
    pub fn quiet_client_transport(
        &self,
        server: SocketAddr,
        player: u64,
    ) -> std::io::Result<Option<MatchmakingQuietClientTransport>> {
        let Identity::QuietTokens(issuer) = self else {
            return Ok(None);
        };
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        let authentication = bevy_renet::netcode::ClientAuthentication::Secure {
            connect_token: mint(issuer, server, player)?,
        };
        MatchmakingQuietClientTransport::new(
            bevy_atomic_matchmaking::shared::clock::unix_now(),
            authentication,
            socket,
            MatchmakingAckPolicy::default(),
        )
        .map(Some)
        .map_err(std::io::Error::other)
    }

    /// Why a connection to `server` that never opened failed, for the player to read.
    pub fn refusal(&self, server: SocketAddr, reason: Option<NetcodeDisconnectReason>) -> String {
        let netcode = reason.map_or_else(|| "no answer yet".to_string(), |r| r.to_string());
        use NetcodeDisconnectReason::*;
        match reason {
            Some(ConnectionDenied) => {
                return format!(
                    "connection to {server} refused: the server is full (netcode: {netcode})"
                );
            }
            Some(ConnectionTimedOut | DisconnectedByServer | DisconnectedByClient) => {
                return format!("connection to {server} closed (netcode: {netcode})");
            }
            _ => {}
        }
        match self {
            Identity::Tokens(_) | Identity::QuietTokens(_) => format!(
                "connection to {server} refused: the server did not accept our connect token \
                 (wrong key or expired?), or no server runs there (netcode: {netcode})"
            ),
            Identity::Insecure => format!(
                "connection to {server} failed: no answer (is the server running, and started \
                 with --insecure too?) (netcode: {netcode})"
            ),
        }
    }
}

/// What the examples' stand-in backend does: a token for `player` on `server`.
fn mint(
    issuer: &MatchmakingTokenIssuer,
    server: SocketAddr,
    player: u64,
) -> std::io::Result<bevy_renet::netcode::ConnectToken> {
    issuer
        .issue(player, DEFAULT_TOKEN_VALIDITY, &[server], &[])
        .map_err(std::io::Error::other)
}

/// A client app's transport, renet_netcode's or the quiet one, as a system sees it.
#[derive(bevy::ecs::system::SystemParam)]
pub struct ClientTransport<'w> {
    netcode: Option<ResMut<'w, NetcodeClientTransport>>,
    quiet: Option<ResMut<'w, MatchmakingQuietClientTransport>>,
}

impl ClientTransport<'_> {
    /// Why netcode gave up (refused, timed out, closed), if it did.
    pub fn disconnect_reason(&self) -> Option<NetcodeDisconnectReason> {
        match (&self.netcode, &self.quiet) {
            (Some(t), _) => t.disconnect_reason(),
            (_, Some(t)) => t.disconnect_reason(),
            _ => None,
        }
    }

    /// Closes the connection now, telling the server.
    pub fn disconnect(&mut self) {
        if let Some(t) = &mut self.netcode {
            t.disconnect();
        }
        if let Some(t) = &mut self.quiet {
            t.disconnect();
        }
    }
}

/// Why a client app's transport (either kind) gave up, if it did.
pub fn client_gave_up(world: &World) -> Option<NetcodeDisconnectReason> {
    match world.get_resource::<NetcodeClientTransport>() {
        Some(t) => t.disconnect_reason(),
        None => world
            .get_resource::<MatchmakingQuietClientTransport>()
            .and_then(|t| t.disconnect_reason()),
    }
}

/// Closes a client app's connection now (either kind of transport), telling the server.
pub fn close_client(world: &mut World) {
    if let Some(mut t) = world.get_resource_mut::<NetcodeClientTransport>() {
        t.disconnect();
    }
    if let Some(mut t) = world.get_resource_mut::<MatchmakingQuietClientTransport>() {
        t.disconnect();
    }
}
