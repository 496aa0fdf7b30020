//! [`AtomicRedisInbox`]: the [`AtomicClusterInbox`] of a cluster, one Redis stream per node
//! read by a consumer group.

use std::collections::HashSet;
use std::time::Duration;

use ::redis::{Client, Cmd, Connection, RedisError, Value};

use crate::atomic::core::cluster::{AtomicClusterInbox, AtomicClusterMessage};

/// The consumer group every node reads its own stream with.
const GROUP: &str = "g";

/// Entries a stream keeps at most (approximately): a node that stopped reading cannot make
/// its stream grow without bound.
const MAX_LEN: usize = 100_000;

/// Largest encoded message a take decodes, in bytes.
const MAX_MESSAGE_BYTES: usize = 65_536;

/// Seconds a stream lives after its last post: far longer than a live node goes without
/// reading it (it reads every few milliseconds, and a node stalled that long has lost its
/// lease), so only a dead node's inbox expires.
const STREAM_TTL_S: u64 = 60;

/// The stream field holding the encoded message.
const FIELD: &str = "m";

/// The nodes' inboxes on one Redis: node `N`'s inbox is the stream `PREFIX:inbox:N`,
/// written with `XADD` (capped at about 100 000 entries) and read by `N` alone through the
/// consumer group `g` (consumer name `N`). What a take reads is acknowledged and deleted,
/// so a stream holds only what its node has not read yet; a stream nobody posts to for a
/// minute expires (the inbox of a node that died).
///
/// Every node connects its own `AtomicRedisInbox` to the same Redis, under the same prefix
/// as its [`AtomicRedisStore`](super::AtomicRedisStore). Blocking, like the store: call it
/// off the frame.
///
/// Delivery is at least once, in posting order: a take whose reply was lost leaves what it
/// read pending in the group, and the next take of that node reads its pending entries
/// again before any new one (handlers are idempotent). A call that cannot reach Redis
/// returns `Err` and the next call reconnects. A Redis that restarted empty lost what the
/// streams held; the group is recreated (from the stream's first entry, so nothing posted
/// since the restart is skipped) on the next take. An entry that does not decode is
/// skipped, deleted and counted ([`AtomicRedisInbox::undecodable`]).
///
/// Round trips: a post is one (`XADD` and `EXPIRE` in one pipeline); a take that finds nothing is one (`XREADGROUP`), a
/// take that finds messages two (`XREADGROUP`, then `XACK` and `XDEL` in one pipeline). The
/// first take of a node, and the first after an error, first reads the node's pending
/// entries (one more); a take that finds the group gone recreates it (two more).
pub struct AtomicRedisInbox {
    client: Client,
    connection: Option<Connection>,
    prefix: String,
    timeout: Duration,
    /// Nodes whose pending entries were read since the last error: their takes read new
    /// entries only.
    settled: HashSet<String>,
    /// Round trips so far.
    calls: u64,
    /// Entries skipped because they did not decode.
    undecodable: u64,
}

impl std::fmt::Debug for AtomicRedisInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicRedisInbox")
            .field("prefix", &self.prefix)
            .field("connected", &self.connection.is_some())
            .field("calls", &self.calls)
            .field("undecodable", &self.undecodable)
            .finish_non_exhaustive()
    }
}

/// An entry of a stream as read: its id, and its encoded message (`None` if the entry was
/// deleted while pending, `Some(None)` if it has no message field).
struct Entry {
    id: String,
    message: Option<Option<Vec<u8>>>,
}

/// Why a read failed.
enum ReadError {
    /// The group (or the whole stream) does not exist.
    NoGroup,
    /// Anything else, already reported.
    Failed(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// Decodes one message: `None` if the bytes are too long, malformed, or followed by more.
fn decode(bytes: &[u8]) -> Option<AtomicClusterMessage> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let (message, read) = bincode::serde::decode_from_slice(bytes, config()).ok()?;
    (read == bytes.len()).then_some(message)
}

/// `text` with the glob characters of `KEYS` escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// The message field among an entry's fields (`[field, value, ...]`, or a map in RESP3).
fn message_of(fields: &Value) -> Option<Vec<u8>> {
    let pairs: Vec<(&Value, &Value)> = match fields {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|p| p.first().zip(p.get(1)))
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        _ => return None,
    };
    pairs.into_iter().find_map(|(field, value)| {
        let is_message = text_of(field).is_some_and(|f| f == FIELD);
        match value {
            Value::BulkString(bytes) if is_message => Some(bytes.clone()),
            _ => None,
        }
    })
}

/// The entries of an `XREADGROUP` reply on one stream, oldest first.
fn entries_of(reply: Value) -> Result<Vec<Entry>, String> {
    let streams: Vec<Value> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => Ok(pair.swap_remove(1)),
                other => Err(format!("inbox read: unexpected stream {other:?}")),
            })
            .collect::<Result<_, _>>()?,
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        other => return Err(format!("inbox read: unexpected reply {other:?}")),
    };
    let mut entries = Vec::new();
    for stream in streams {
        let Value::Array(items) = stream else {
            return Err(format!("inbox read: unexpected entries {stream:?}"));
        };
        for item in items {
            let Value::Array(parts) = &item else {
                return Err(format!("inbox read: unexpected entry {item:?}"));
            };
            let Some(id) = parts.first().and_then(text_of) else {
                return Err(format!("inbox read: entry without an id {item:?}"));
            };
            let message = match parts.get(1) {
                None | Some(Value::Nil) => None,
                Some(fields) => Some(message_of(fields)),
            };
            entries.push(Entry { id, message });
        }
    }
    Ok(entries)
}

impl AtomicRedisInbox {
    /// Inboxes on the Redis at `url` (`redis://host:port/db`), under `prefix`. Connects
    /// lazily: a Redis that is down makes the first call fail, not this one.
    pub fn open(url: &str, prefix: &str) -> Result<Self, String> {
        let client = Client::open(url).map_err(|e| format!("inbox: {e}"))?;
        Ok(Self {
            client,
            connection: None,
            prefix: prefix.to_owned(),
            timeout: Duration::from_millis(500),
            settled: HashSet::new(),
            calls: 0,
            undecodable: 0,
        })
    }

    /// [`Self::open`], then [`Self::set_timeout`].
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, String> {
        let mut inbox = Self::open(url, prefix)?;
        inbox.set_timeout(timeout);
        Ok(inbox)
    }

    /// How long one call may wait for Redis (connect, read and write; default 500 ms).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        self.connection = None;
        self.settled.clear();
    }

    /// Round trips to Redis so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Entries skipped (and deleted) so far because they did not decode.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stream of `node`'s inbox.
    pub fn key(&self, node: &str) -> String {
        format!("{}:inbox:{node}", self.prefix)
    }

    /// Deletes `node`'s inbox, read or not, and its group (the node died with them
    /// unread). One round trip.
    pub fn clear(&mut self, node: &str) -> Result<(), String> {
        let key = self.key(node);
        self.settled.remove(node);
        self.query::<i64>(::redis::cmd("DEL").arg(&key), "clear")
            .map(drop)
    }

    /// Entries in every inbox under the prefix, read or not (for tests: `KEYS`, then one
    /// `XLEN` per stream in one pipeline).
    pub fn residue(&mut self) -> Result<usize, String> {
        let pattern = format!("{}:inbox:*", glob_escape(&self.prefix));
        let keys: Vec<String> = self.query(::redis::cmd("KEYS").arg(&pattern), "residue")?;
        if keys.is_empty() {
            return Ok(0);
        }
        let mut pipe = ::redis::pipe();
        for key in &keys {
            pipe.cmd("XLEN").arg(key);
        }
        self.calls += 1;
        self.connect()?;
        let connection = self.connection.as_mut().expect("connected above");
        let lengths: Result<Vec<usize>, _> = pipe.query(connection);
        let lengths = lengths.map_err(|e| self.failed(e, "residue"))?;
        Ok(lengths.into_iter().sum())
    }

    /// Connects if not connected.
    fn connect(&mut self) -> Result<(), String> {
        if self.connection.is_none() {
            self.settled.clear();
            let connect = |client: &Client, timeout| {
                let connection = client.get_connection_with_timeout(timeout)?;
                connection.set_read_timeout(Some(timeout))?;
                connection.set_write_timeout(Some(timeout))?;
                Ok::<_, RedisError>(connection)
            };
            let connection =
                connect(&self.client, self.timeout).map_err(|e| format!("inbox connect: {e}"))?;
            self.connection = Some(connection);
        }
        Ok(())
    }

    /// Reports an error of `what`; one that lost the connection drops it (the next call
    /// reconnects) and unsettles every node (their last reads may not have arrived).
    fn failed(&mut self, error: RedisError, what: &str) -> String {
        if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
            self.connection = None;
            self.settled.clear();
        }
        format!("inbox {what}: {error}")
    }

    /// One command, one round trip.
    fn query<T: ::redis::FromRedisValue>(&mut self, cmd: &Cmd, what: &str) -> Result<T, String> {
        self.calls += 1;
        self.connect()?;
        let connection = self.connection.as_mut().expect("connected above");
        let result = cmd.query(connection);
        result.map_err(|e| self.failed(e, what))
    }

    /// `XREADGROUP` of up to `max` entries of `node`'s stream from `from` (`>`: new ones,
    /// `0`: the node's pending ones).
    fn read(&mut self, node: &str, max: usize, from: &str) -> Result<Vec<Entry>, ReadError> {
        let key = self.key(node);
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(GROUP).arg(node).arg("COUNT").arg(max);
        cmd.arg("STREAMS").arg(&key).arg(from);
        self.calls += 1;
        self.connect().map_err(ReadError::Failed)?;
        let connection = self.connection.as_mut().expect("connected above");
        match cmd.query::<Value>(connection) {
            Ok(reply) => entries_of(reply).map_err(ReadError::Failed),
            Err(error) if error.code() == Some("NOGROUP") => Err(ReadError::NoGroup),
            Err(error) => Err(ReadError::Failed(self.failed(error, "read"))),
        }
    }

    /// Creates `node`'s group (and its stream) if missing, reading the stream from its
    /// first entry: everything in it was posted to the node and not read yet.
    fn create_group(&mut self, node: &str) -> Result<(), String> {
        let key = self.key(node);
        let mut cmd = ::redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        self.calls += 1;
        self.connect()?;
        let connection = self.connection.as_mut().expect("connected above");
        match cmd.query::<()>(connection) {
            Ok(()) => Ok(()),
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            Err(error) => Err(self.failed(error, "create group")),
        }
    }

    /// Reads from `from`, creating the group and reading new entries if it is missing.
    fn read_or_create(&mut self, node: &str, max: usize, from: &str) -> Result<Vec<Entry>, String> {
        match self.read(node, max, from) {
            Ok(entries) => Ok(entries),
            Err(ReadError::Failed(error)) => Err(error),
            Err(ReadError::NoGroup) => {
                self.create_group(node)?;
                match self.read(node, max, ">") {
                    Ok(entries) => Ok(entries),
                    Err(ReadError::Failed(error)) => Err(error),
                    Err(ReadError::NoGroup) => Err(format!("inbox read: no group for {node}")),
                }
            }
        }
    }

    /// Acknowledges and deletes `entries` of `node`'s stream, one pipeline.
    fn settle(&mut self, node: &str, entries: &[Entry]) -> Result<(), String> {
        let key = self.key(node);
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let mut pipe = ::redis::pipe();
        pipe.cmd("XACK").arg(&key).arg(GROUP).arg(&ids).ignore();
        pipe.cmd("XDEL").arg(&key).arg(&ids).ignore();
        self.calls += 1;
        self.connect()?;
        let connection = self.connection.as_mut().expect("connected above");
        let result: Result<(), _> = pipe.query(connection);
        result.map_err(|e| self.failed(e, "acknowledge"))
    }

    /// The messages of `entries`, counting those that do not decode.
    fn decode_all(&mut self, entries: Vec<Entry>) -> Vec<AtomicClusterMessage> {
        let mut messages = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry.message {
                None => {} // deleted while pending: nothing to deliver
                Some(bytes) => match bytes.as_deref().and_then(decode) {
                    Some(message) => messages.push(message),
                    None => self.undecodable += 1,
                },
            }
        }
        messages
    }
}

impl AtomicClusterInbox for AtomicRedisInbox {
    fn post(&mut self, node: &str, message: &AtomicClusterMessage) -> Result<(), String> {
        let bytes = bincode::serde::encode_to_vec(message, bincode::config::standard())
            .map_err(|e| format!("inbox post: {e}"))?;
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(format!("inbox post: a message of {} bytes", bytes.len()));
        }
        let key = self.key(node);
        // with the entry, the stream's time to live: the inbox of a node that died (and
        // that a survivor already closed) goes by itself once nobody posts to it
        let mut pipe = ::redis::pipe();
        pipe.cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(MAX_LEN);
        pipe.arg("*").arg(FIELD).arg(bytes).ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(STREAM_TTL_S).ignore();
        self.calls += 1;
        self.connect()?;
        let connection = self.connection.as_mut().expect("connected above");
        let posted: Result<(), _> = pipe.query(connection);
        posted.map_err(|e| self.failed(e, "post"))
    }

    fn close(&mut self, node: &str) -> Result<(), String> {
        self.clear(node)
    }

    fn round_trips(&self) -> u64 {
        self.calls
    }

    fn take(&mut self, node: &str, max: usize) -> Result<Vec<AtomicClusterMessage>, String> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut entries = Vec::new();
        if !self.settled.contains(node) {
            // the last read may have been lost on the way back: read what is pending first
            entries = self.read_or_create(node, max, "0")?;
            if entries.len() < max {
                self.settled.insert(node.to_owned());
            }
        }
        if entries.is_empty() {
            entries = self.read_or_create(node, max, ">")?;
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        if let Err(error) = self.settle(node, &entries) {
            // still pending: read again once the connection is back
            self.settled.remove(node);
            return Err(error);
        }
        Ok(self.decode_all(entries))
    }
}
