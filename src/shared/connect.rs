//! Watching a connection attempt, for both client plugins: a connection that never opens is
//! reported to the game once, with the address, what was tried and the likely cause, so a
//! wrong address, a server that is down, a refused or expired token and a secure client
//! against an insecure server (or the other way round) are never silent.
//!
//! A connection that opened and closed later is not this module's: each client plugin
//! reports it under its own `Connection` kind, so a game can tell "never connected" from
//! "lost".

use std::net::SocketAddr;
use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::RenetClient;
#[cfg(feature = "transport")]
use bevy_renet::netcode::{NetcodeClientTransport, NetcodeDisconnectReason};
use bevy_renet::renet::DisconnectReason;

#[cfg(feature = "transport")]
use crate::transport::quiet::MatchmakingQuietClientTransport;

/// How long a client waits for its connection to open before it reports `ConnectFailed`
/// (well within netcode's own 15 s connect-token timeout).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a client connects, as the transport helpers of [`crate::transport`] record
/// it, so that a failed connection names the address and the kind of authentication tried.
/// A game that builds its own transport may insert it too; without it the error says "the
/// server".
#[derive(Resource, Reflect, Debug, Clone, Copy, PartialEq, Eq)]
#[reflect(Resource, Debug, Clone, PartialEq)]
pub struct MatchmakingConnectTarget {
    /// The server (or relay) address the client sends to.
    pub server: SocketAddr,
    /// Whether the client connects with a connect token (netcode's secure mode).
    pub secure: bool,
}

/// What a client plugin reads of its connection, whichever netcode transport carries it.
#[derive(SystemParam)]
pub(crate) struct ConnectionView<'w> {
    client: Option<Res<'w, RenetClient>>,
    transport: TransportView<'w>,
    target: Option<Res<'w, MatchmakingConnectTarget>>,
    time: Res<'w, Time<Real>>,
}

/// The netcode transports of this crate's `transport` feature (renet_netcode's and the
/// quiet one), as far as a connection watch needs them.
#[cfg(feature = "transport")]
#[derive(SystemParam)]
pub(crate) struct TransportView<'w> {
    netcode: Option<ResMut<'w, NetcodeClientTransport>>,
    quiet: Option<ResMut<'w, MatchmakingQuietClientTransport>>,
}

/// Without the `transport` feature the game brings its own transport: the watch sees only
/// the [`RenetClient`] (an attempt that does not open within the timeout still fails).
#[cfg(not(feature = "transport"))]
#[derive(SystemParam)]
pub(crate) struct TransportView<'w> {
    marker: std::marker::PhantomData<&'w ()>,
}

/// How a transport ended an attempt before the connection opened.
#[cfg_attr(not(feature = "transport"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptEnd {
    /// The client itself closed it (the game, or a new attempt).
    ByClient,
    /// The connect token expired before the server accepted it.
    TokenExpired,
    /// The server denied the connection (full, or the id is connected).
    Denied,
    /// The server closed it before it opened.
    ByServer,
    /// Any other reason netcode gave (timed out, a bad token...).
    Other,
}

#[cfg(feature = "transport")]
impl TransportView<'_> {
    fn restarted(&self) -> bool {
        self.netcode.as_ref().is_some_and(|t| t.is_added())
            || self.quiet.as_ref().is_some_and(|t| t.is_added())
    }

    fn give_up(&mut self) {
        if let Some(t) = &mut self.netcode {
            t.disconnect();
        }
        if let Some(t) = &mut self.quiet {
            t.disconnect();
        }
    }

    /// Why netcode gave up, if it did, with netcode's own words.
    fn end(&self) -> Option<(AttemptEnd, String)> {
        let reason = match (&self.netcode, &self.quiet) {
            (Some(t), _) => t.disconnect_reason(),
            (_, Some(t)) => t.disconnect_reason(),
            _ => None,
        }?;
        let end = match reason {
            NetcodeDisconnectReason::DisconnectedByClient => AttemptEnd::ByClient,
            NetcodeDisconnectReason::ConnectTokenExpired => AttemptEnd::TokenExpired,
            NetcodeDisconnectReason::ConnectionDenied => AttemptEnd::Denied,
            NetcodeDisconnectReason::DisconnectedByServer => AttemptEnd::ByServer,
            _ => AttemptEnd::Other,
        };
        Some((end, reason.to_string()))
    }
}

#[cfg(not(feature = "transport"))]
impl TransportView<'_> {
    fn restarted(&self) -> bool {
        false
    }

    fn give_up(&mut self) {}

    fn end(&self) -> Option<(AttemptEnd, String)> {
        None
    }
}

impl ConnectionView<'_> {
    /// A new client or transport was inserted this frame: a new attempt.
    fn restarted(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.is_added()) || self.transport.restarted()
    }

    /// Ends the attempt: the game was told it failed, so it must not open later.
    fn give_up(&mut self) {
        self.transport.give_up();
    }
}

/// One attempt to connect, as a client plugin's system remembers it between frames.
#[derive(Debug, Default)]
pub(crate) struct ConnectWatch {
    /// When the attempt was first seen (real time).
    started: Option<Duration>,
    /// The attempt opened, was reported, or was closed by the game: nothing more to say.
    settled: bool,
}

impl ConnectWatch {
    /// Looks at the connection this frame; returns the message for the game, once, when the
    /// attempt failed: netcode gave up before the connection opened, or it did not open
    /// within `timeout` (then the attempt is closed, so it cannot open after the error).
    pub(crate) fn check(&mut self, view: &mut ConnectionView, timeout: Duration) -> Option<String> {
        let Some(client) = &view.client else {
            *self = Self::default();
            return None;
        };
        if view.restarted() {
            *self = Self::default();
        }
        if self.settled {
            return None;
        }
        if client.is_connected() {
            self.settled = true;
            return None;
        }
        let reason = view.transport.end();
        let closed_by_us = reason
            .as_ref()
            .is_some_and(|(end, _)| *end == AttemptEnd::ByClient)
            || client.disconnect_reason() == Some(DisconnectReason::DisconnectedByClient);
        if closed_by_us {
            self.settled = true;
            return None;
        }
        let now = view.time.elapsed();
        let waited = now.saturating_sub(*self.started.get_or_insert(now));
        if reason.is_none() && waited < timeout {
            return None;
        }
        self.settled = true;
        if reason.is_none() {
            view.give_up();
        }
        Some(connect_failure(
            view.target.as_deref(),
            reason,
            waited,
            timeout,
        ))
    }
}

/// The message of a connection that never opened: where, what was tried, the likely cause.
fn connect_failure(
    target: Option<&MatchmakingConnectTarget>,
    reason: Option<(AttemptEnd, String)>,
    waited: Duration,
    timeout: Duration,
) -> String {
    let to = target.map_or_else(|| "the server".to_owned(), |t| t.server.to_string());
    let how = match target {
        Some(t) if t.secure => "with a connect token (secure netcode)",
        Some(_) => "without a connect token (insecure netcode)",
        None => "over netcode",
    };
    let netcode = reason.as_ref().map_or_else(
        || format!("no answer within the {timeout:?} connect timeout"),
        |(_, words)| format!("netcode: {words}"),
    );
    let cause = match reason.map(|(end, _)| end) {
        Some(AttemptEnd::TokenExpired) => {
            "the connect token expired before the server accepted it: mint a fresh one"
        }
        Some(AttemptEnd::Denied) => {
            "the server denied the connection: it is full, or a client with this id is connected"
        }
        Some(AttemptEnd::ByServer) => "the server closed the connection before it opened",
        _ if target.is_some_and(|t| !t.secure) => {
            "no server runs at that address or it is down, or the server is secure and \
             this client is not"
        }
        _ => {
            "no server runs at that address or it is down, or the server refused the connect \
             token (minted with another key, for another address or protocol, or expired), or \
             the server is insecure and this client is not"
        }
    };
    format!(
        "could not connect to {to} {how} after {:.1} s ({netcode}); likely cause: {cause}",
        waited.as_secs_f32()
    )
}

/// The message of a connection that opened and was lost later, naming renet's reason when
/// it says more than "the transport closed" (a channel the two sides' configs disagree on).
///
/// `unwelcomed` describes this client's channel and config when the connection closed
/// before the hello was answered: the likely cause then is a config the peer does not
/// share (it closes a connection that sends on a channel it lacks).
/// Set while the connection is closed because the game asked (`MatchmakingDisconnect`):
/// the client plugins then report no `Connection` error. A new connection clears it.
#[derive(Resource, Debug, Default)]
pub(crate) struct ClosedByGame;

/// What an unwelcomed client says of itself in [`lost_connection`]: its channel and
/// config fingerprint.
pub(crate) fn describe_own_config(
    channel_id: u8,
    config: Option<&crate::shared::connection_config::MatchmakingConnectionConfig>,
) -> String {
    match config {
        Some(config) => format!(
            "channel {channel_id}, config fingerprint {:016x}",
            config.fingerprint
        ),
        None => format!("channel {channel_id}"),
    }
}

pub(crate) fn lost_connection(
    peer: &str,
    client: Option<&RenetClient>,
    unwelcomed: Option<String>,
) -> String {
    let reason = client.and_then(|c| c.disconnect_reason());
    if let Some(ours) = unwelcomed
        && !matches!(reason, Some(DisconnectReason::ReceivedInvalidChannelId(_)))
    {
        return format!(
            "the {peer} closed the connection before answering the hello: it is shutting down, \
             or its connection config differs from this client's ({ours}; give both sides the \
             same channel id and the same connection config)"
        );
    }
    match reason {
        Some(DisconnectReason::ReceivedInvalidChannelId(id)) => format!(
            "lost the connection to the {peer}: it sent on channel id {id}, which this \
             client's connection config lacks (client and server must be given the same \
             channel and the same connection config)"
        ),
        Some(reason) => format!("lost the connection to the {peer} (renet: {reason})"),
        None => format!("lost the connection to the {peer}"),
    }
}
