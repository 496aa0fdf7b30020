//! Minting netcode connect tokens: what a game's backend does after it has authenticated a
//! player, and what the examples do as a stand-in for that backend.

use std::net::SocketAddr;
use std::time::Duration;

use bevy_renet::netcode::{ConnectToken, NETCODE_USER_DATA_BYTES, TokenGenerationError};

use super::MATCHMAKING_NETCODE_PROTOCOL_ID;
use super::key::MatchmakingPrivateKey;
use crate::shared::clock::unix_now;
use crate::shared::player::PlayerId;

/// Most bytes of user data a token carries (netcode's limit): the server reads them back
/// with `NetcodeServerTransport::user_data` once the player is connected (rating, party,
/// region...).
pub const MAX_TOKEN_USER_DATA: usize = NETCODE_USER_DATA_BYTES;

/// Most server addresses a token lists (netcode's limit).
pub const MAX_TOKEN_SERVER_ADDRESSES: usize = 32;

/// How long a freshly minted token can be used to connect, unless the issuer says
/// otherwise: long enough for a player to get from the backend to the server, short enough
/// that a leaked token is soon worthless.
pub const DEFAULT_TOKEN_VALIDITY: Duration = Duration::from_secs(60);

/// The connection timeout a token carries, in seconds (netcode's default, and what the
/// insecure helpers use): a connection silent this long is closed on both sides.
pub const DEFAULT_TOKEN_TIMEOUT_SECONDS: i32 = 15;

/// Why a token could not be minted or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// More than [`MAX_TOKEN_USER_DATA`] bytes of user data.
    #[error("token user data is {len} bytes; at most {MAX_TOKEN_USER_DATA} fit")]
    UserDataTooLong {
        /// The size that was given.
        len: usize,
    },
    /// A token must name at least one server address.
    #[error("a token needs at least one server address")]
    NoServerAddress,
    /// More than [`MAX_TOKEN_SERVER_ADDRESSES`] server addresses.
    #[error("a token lists at most {MAX_TOKEN_SERVER_ADDRESSES} server addresses, not {count}")]
    TooManyServerAddresses {
        /// How many were given.
        count: usize,
    },
    /// A token must be valid for some time (at least one second).
    #[error("a token must be valid for at least 1 s")]
    ZeroValidity,
    /// netcode could not build the token.
    #[error("cannot mint the token: {0}")]
    Generation(#[source] TokenGenerationError),
    /// The bytes are not a connect token (wrong size, version or layout).
    #[error("not a connect token: {0}")]
    Malformed(String),
}

/// Mints netcode connect tokens from a [`MatchmakingPrivateKey`]: the backend's side of
/// secure connections.
///
/// A token names the player, lists the servers it may be used on and expires; it is
/// encrypted and signed with the key, so only a server holding the same key accepts it,
/// and the player id inside it is the one every plugin of this crate sees. The client
/// cannot read or change the private part.
///
/// ```
/// use std::time::Duration;
/// use bevy_atomic_matchmaking::transport::{
///     MatchmakingPrivateKey, MatchmakingTokenIssuer, connect_token_from_bytes,
/// };
///
/// let key = MatchmakingPrivateKey::generate();
/// let issuer = MatchmakingTokenIssuer::new(key);
/// let servers = ["127.0.0.1:5000".parse()?];
/// // after the backend authenticated player 42 (rating 1500 in the user data):
/// let bytes = issuer.issue_bytes(42, Duration::from_secs(60), &servers, &1500u32.to_le_bytes())?;
/// // ...sent to the game, which connects with it:
/// let token = connect_token_from_bytes(&bytes)?;
/// assert_eq!(token.client_id, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MatchmakingTokenIssuer {
    key: MatchmakingPrivateKey,
    protocol_id: u64,
    timeout_seconds: i32,
}

impl MatchmakingTokenIssuer {
    /// An issuer for the crate's netcode protocol id
    /// ([`MATCHMAKING_NETCODE_PROTOCOL_ID`]) with the default connection timeout.
    ///
    /// Takes the key by value or by reference (`MatchmakingTokenIssuer::new(&key)` keeps the
    /// key for the server, in either order).
    pub fn new(key: impl std::borrow::Borrow<MatchmakingPrivateKey>) -> Self {
        Self {
            key: key.borrow().clone(),
            protocol_id: MATCHMAKING_NETCODE_PROTOCOL_ID,
            timeout_seconds: DEFAULT_TOKEN_TIMEOUT_SECONDS,
        }
    }

    /// The same issuer for another netcode protocol id (a server only accepts tokens of
    /// its own; the helpers of this module use [`MATCHMAKING_NETCODE_PROTOCOL_ID`]).
    pub fn with_protocol_id(mut self, protocol_id: u64) -> Self {
        self.protocol_id = protocol_id;
        self
    }

    /// The same issuer with another connection timeout (whole seconds, at least 1): how
    /// long a connection may stay silent, and how long a client waits for an answer to its
    /// connection request before it gives up.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout_seconds = timeout.as_secs().clamp(1, i32::MAX as u64) as i32;
        self
    }

    /// The key tokens are minted with.
    pub fn key(&self) -> &MatchmakingPrivateKey {
        &self.key
    }

    /// A token for `player`, usable to connect for `valid_for` (rounded up to whole
    /// seconds) on any of `servers` (in order of preference), carrying `user_data` (at most
    /// [`MAX_TOKEN_USER_DATA`] bytes, zero-padded; empty for none).
    pub fn issue(
        &self,
        player: PlayerId,
        valid_for: Duration,
        servers: &[SocketAddr],
        user_data: &[u8],
    ) -> Result<ConnectToken, TokenError> {
        self.issue_at(unix_now(), player, valid_for, servers, user_data)
    }

    /// [`MatchmakingTokenIssuer::issue`] as if the Unix time were `now` (a backend with its
    /// own clock, or a test minting an already expired token).
    pub fn issue_at(
        &self,
        now: Duration,
        player: PlayerId,
        valid_for: Duration,
        servers: &[SocketAddr],
        user_data: &[u8],
    ) -> Result<ConnectToken, TokenError> {
        if user_data.len() > MAX_TOKEN_USER_DATA {
            return Err(TokenError::UserDataTooLong {
                len: user_data.len(),
            });
        }
        if servers.is_empty() {
            return Err(TokenError::NoServerAddress);
        }
        if servers.len() > MAX_TOKEN_SERVER_ADDRESSES {
            return Err(TokenError::TooManyServerAddresses {
                count: servers.len(),
            });
        }
        if valid_for.is_zero() {
            return Err(TokenError::ZeroValidity);
        }
        let mut data = [0u8; MAX_TOKEN_USER_DATA];
        data[..user_data.len()].copy_from_slice(user_data);
        let expire_seconds = valid_for.as_secs() + u64::from(valid_for.subsec_nanos() > 0);
        ConnectToken::generate(
            now,
            self.protocol_id,
            expire_seconds,
            player,
            self.timeout_seconds,
            servers.to_vec(),
            Some(&data),
            self.key.as_bytes(),
        )
        .map_err(TokenError::Generation)
    }

    /// [`MatchmakingTokenIssuer::issue`], serialized with [`connect_token_to_bytes`] for
    /// the backend to hand over.
    pub fn issue_bytes(
        &self,
        player: PlayerId,
        valid_for: Duration,
        servers: &[SocketAddr],
        user_data: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        self.issue(player, valid_for, servers, user_data)
            .map(|token| connect_token_to_bytes(&token))
    }
}

/// A connect token as bytes (netcode's layout), for a backend to send to the game.
pub fn connect_token_to_bytes(token: &ConnectToken) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1200);
    token
        .write(&mut bytes)
        .expect("writing to a Vec cannot fail");
    bytes
}

/// Reads a connect token written by [`connect_token_to_bytes`]; trailing bytes are an
/// error.
pub fn connect_token_from_bytes(bytes: &[u8]) -> Result<ConnectToken, TokenError> {
    let mut reader = bytes;
    let token =
        ConnectToken::read(&mut reader).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(TokenError::Malformed(format!(
            "{} bytes after the token",
            reader.len()
        )));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> MatchmakingTokenIssuer {
        MatchmakingTokenIssuer::new(MatchmakingPrivateKey::from_bytes([3; 32]))
    }

    fn servers() -> Vec<SocketAddr> {
        vec!["127.0.0.1:5000".parse().unwrap()]
    }

    #[test]
    fn user_data_over_256_bytes_is_refused() {
        let e = issuer()
            .issue(7, DEFAULT_TOKEN_VALIDITY, &servers(), &[1; 257])
            .expect_err("too long");
        assert!(matches!(e, TokenError::UserDataTooLong { len: 257 }), "{e}");
        assert!(e.to_string().contains("257") && e.to_string().contains("256"));
        let token = issuer()
            .issue(7, DEFAULT_TOKEN_VALIDITY, &servers(), &[1; 256])
            .expect("256 bytes fit");
        assert_eq!(token.client_id, 7);
    }

    #[test]
    fn a_token_needs_servers_and_time() {
        let i = issuer();
        assert!(matches!(
            i.issue(7, DEFAULT_TOKEN_VALIDITY, &[], &[]),
            Err(TokenError::NoServerAddress)
        ));
        let many = vec![servers()[0]; 33];
        assert!(matches!(
            i.issue(7, DEFAULT_TOKEN_VALIDITY, &many, &[]),
            Err(TokenError::TooManyServerAddresses { count: 33 })
        ));
        assert!(matches!(
            i.issue(7, Duration::ZERO, &servers(), &[]),
            Err(TokenError::ZeroValidity)
        ));
    }

    #[test]
    fn a_token_round_trips_through_bytes_with_its_player_expiry_and_timeout() {
        let now = Duration::from_secs(1_000_000);
        let token = issuer()
            .with_timeout(Duration::from_secs(5))
            .issue_at(now, 99, Duration::from_millis(1500), &servers(), b"eu")
            .expect("mint");
        assert_eq!(token.client_id, 99);
        assert_eq!(token.protocol_id, MATCHMAKING_NETCODE_PROTOCOL_ID);
        assert_eq!(token.create_timestamp, 1_000_000);
        assert_eq!(token.expire_timestamp, 1_000_002, "1.5 s rounds up to 2");
        assert_eq!(token.timeout_seconds, 5);
        assert_eq!(token.server_addresses[0], Some(servers()[0]));
        let bytes = connect_token_to_bytes(&token);
        assert_eq!(connect_token_from_bytes(&bytes).expect("read"), token);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            connect_token_from_bytes(&longer),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            connect_token_from_bytes(&bytes[..100]),
            Err(TokenError::Malformed(_))
        ));
    }
}
