//! [`RedisLink`]: the blocking connection to one Redis that the Redis stores share (feature
//! `redis`): connects lazily with a timeout, runs a Lua script with the key prefix as its
//! first argument (re-sent when a restarted Redis forgot it), counts round trips, and tells
//! an unreachable Redis ([`RedisLinkError::Unavailable`]: the next call reconnects) from a
//! Redis that answered something else.

use std::time::Duration;

use ::redis::{
    Client, Cmd, Connection, ErrorKind, FromRedisValue, RedisError, Script, ServerErrorKind,
};

/// The default of [`RedisLink::set_timeout`].
pub(crate) const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a call to Redis failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedisLinkError {
    /// Redis cannot be reached (connect, read or write failed or timed out, the connection
    /// dropped): the call may have happened or not; the next call reconnects.
    Unavailable(String),
    /// Redis answered that it cannot serve the call now (still loading its data after a
    /// restart, a script running too long, a cluster slot moving): retrying later helps.
    Busy(String),
    /// Redis answered with an error or a reply of the wrong shape.
    Corrupt(String),
}

/// One blocking connection to a Redis, under a key prefix.
pub(crate) struct RedisLink {
    client: Client,
    connection: Option<Connection>,
    prefix: String,
    timeout: Duration,
    /// Calls made (each one round trip, or two when a script had to be sent again).
    calls: u64,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("prefix", &self.prefix)
            .field("connected", &self.connection.is_some())
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

/// A connection error as [`RedisLinkError::Unavailable`].
fn unavailable(error: RedisError) -> RedisLinkError {
    RedisLinkError::Unavailable(error.to_string())
}

/// Whether Redis says it cannot serve the call now but will later.
fn is_busy(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
        )
    ) || error.code() == Some("BUSY")
}

impl RedisLink {
    /// A link to the Redis at `url` (`redis://host:port/db`), under `prefix`. Connects
    /// lazily: a Redis that is down makes the first call fail, not this one.
    pub(crate) fn open(url: &str, prefix: &str) -> Result<Self, RedisLinkError> {
        let client = Client::open(url).map_err(unavailable)?;
        Ok(Self {
            client,
            connection: None,
            prefix: prefix.to_owned(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            calls: 0,
        })
    }

    /// How long one call may wait for Redis (connect, read and write); reconnects.
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        self.connection = None;
    }

    /// Calls made so far.
    pub(crate) fn calls(&self) -> u64 {
        self.calls
    }

    /// The key prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether a connection is open.
    pub(crate) fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// The open connection, connecting first if there is none.
    fn connection(&mut self) -> Result<&mut Connection, RedisLinkError> {
        if self.connection.is_none() {
            let connection = self
                .client
                .get_connection_with_timeout(self.timeout)
                .map_err(unavailable)?;
            connection
                .set_read_timeout(Some(self.timeout))
                .map_err(unavailable)?;
            connection
                .set_write_timeout(Some(self.timeout))
                .map_err(unavailable)?;
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    /// Classifies a failed call; a connection that failed is dropped (the next call
    /// reconnects).
    fn failed(&mut self, error: RedisError) -> RedisLinkError {
        if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
            self.connection = None;
            unavailable(error)
        } else if is_busy(&error) {
            RedisLinkError::Busy(error.to_string())
        } else {
            RedisLinkError::Corrupt(error.to_string())
        }
    }

    /// Runs `script` with `keys` as `KEYS`, and the prefix then `args` as `ARGV`.
    pub(crate) fn run<T: FromRedisValue>(
        &mut self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, RedisLinkError> {
        self.calls += 1;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        invocation.arg(&self.prefix);
        for arg in args {
            invocation.arg(*arg);
        }
        let result = invocation.invoke::<T>(self.connection()?);
        drop(invocation);
        result.map_err(|error| self.failed(error))
    }

    /// Runs one command that may block in Redis for up to `blocks` (`XREAD BLOCK`): the
    /// read timeout is stretched by that much for this call.
    #[cfg_attr(not(feature = "negotiated"), allow(dead_code))]
    pub(crate) fn command<T: FromRedisValue>(
        &mut self,
        command: &Cmd,
        blocks: Duration,
    ) -> Result<T, RedisLinkError> {
        self.calls += 1;
        let timeout = self.timeout;
        let connection = self.connection()?;
        // the read timeout, `by` longer than usual (untouched for a command that never blocks)
        let stretched = |connection: &mut Connection, by: Duration| {
            if blocks.is_zero() {
                Ok(())
            } else {
                connection.set_read_timeout(Some(timeout + by))
            }
        };
        let result = stretched(connection, blocks).and_then(|()| command.query::<T>(connection));
        let restored = stretched(connection, Duration::ZERO);
        match (result, restored) {
            (Ok(reply), Ok(())) => Ok(reply),
            (Err(error), _) | (Ok(_), Err(error)) => Err(self.failed(error)),
        }
    }

    /// Every key under `pattern` (a `SCAN MATCH` glob), one round trip per batch.
    #[cfg_attr(not(feature = "negotiated"), allow(dead_code))]
    pub(crate) fn scan(&mut self, pattern: &str) -> Result<Vec<String>, RedisLinkError> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut command = ::redis::cmd("SCAN");
            command
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, batch): (u64, Vec<String>) = self.command(&command, Duration::ZERO)?;
            keys.extend(batch);
            if next == 0 {
                keys.sort();
                keys.dedup();
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
#[cfg_attr(not(feature = "negotiated"), allow(dead_code))]
pub(crate) fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
