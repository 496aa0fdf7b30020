//! A throwaway `redis-server` for tests (feature `redis`): started on a free loopback
//! port with no persistence (or, [`TestRedis::start_persistent`], with an append-only file
//! in a temporary directory), stopped on drop.
//!
//! [`TestRedis::start`] returns `None`, after printing why, when no `redis-server` is
//! installed, so a test can skip on a machine without Redis; set
//! `MATCHMAKING_REQUIRE_REDIS=1` (CI does) to make that a failure instead.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::atomic::cluster::AtomicRedisStore;
use crate::testing::store_suite::AtomicStoreUnderTest;

/// A `redis-server` child process on `127.0.0.1:port`.
#[derive(Debug)]
pub struct TestRedis {
    child: Option<Child>,
    port: u16,
    /// The persistence arguments it runs with.
    persistence: Vec<String>,
    /// Its data directory, removed on drop (persistent servers only).
    dir: Option<PathBuf>,
}

/// No persistence: a restart is empty.
fn no_persistence() -> Vec<String> {
    ["--save", "", "--appendonly", "no"]
        .map(String::from)
        .to_vec()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl TestRedis {
    /// Starts a server, or says why not and returns `None` (a panic instead when
    /// `MATCHMAKING_REQUIRE_REDIS` is set).
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, no_persistence(), None)
    }

    /// Like [`start`](Self::start), with every write on disk before its reply
    /// (`appendonly yes`, `appendfsync always`, in a fresh temporary directory): a
    /// [`restart`](Self::restart) keeps the data.
    pub fn start_persistent(test: &str) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!(
            "matchmaking-redis-{}-{}-{}",
            std::process::id(),
            free_port(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("create the Redis data directory");
        let persistence = vec![
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "yes".into(),
            "--appendfsync".into(),
            "always".into(),
            "--dir".into(),
            dir.to_string_lossy().into_owned(),
        ];
        let started = Self::start_with(test, persistence, Some(dir.clone()));
        if started.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    fn start_with(test: &str, persistence: Vec<String>, dir: Option<PathBuf>) -> Option<Self> {
        let port = free_port();
        let child = match spawn(port, &persistence) {
            Ok(child) => child,
            Err(error) => {
                let why = format!(
                    "{test}: skipped, no redis-server ({error}); install redis-server to run it"
                );
                assert!(
                    std::env::var_os("MATCHMAKING_REQUIRE_REDIS").is_none(),
                    "{why}"
                );
                eprintln!("{why}");
                return None;
            }
        };
        let server = Self {
            child: Some(child),
            port,
            persistence,
            dir,
        };
        server.wait_ready();
        Some(server)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A store on it under `prefix`.
    pub fn store(&self, prefix: &str) -> AtomicRedisStore {
        AtomicRedisStore::open(&self.url(), prefix).expect("open the store")
    }

    /// A negotiated shared store on it under `prefix` (feature `negotiated`).
    #[cfg(feature = "negotiated")]
    pub fn negotiated_store(
        &self,
        prefix: &str,
        frames: crate::negotiated::core::frame::NegotiatedFrames,
        limits: crate::negotiated::core::relay_core::NegotiatedRelayLimits,
    ) -> crate::negotiated::redis::NegotiatedRedisStore {
        crate::negotiated::redis::NegotiatedRedisStore::open(&self.url(), prefix, frames, limits)
            .expect("open the negotiated store")
    }

    /// Kills the server (SIGKILL): everything it held in memory is gone (a
    /// [persistent](Self::start_persistent) one keeps what it wrote).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts another on the same port: empty, as a Redis that restarted
    /// without persistence, or with what it had written for a
    /// [persistent](Self::start_persistent) one.
    pub fn restart(&mut self) {
        self.kill();
        let child = spawn(self.port, &self.persistence).expect("restart redis-server");
        self.child = Some(child);
        self.wait_ready();
    }
}

/// A `redis-server` on `127.0.0.1:port` with these persistence arguments.
fn spawn(port: u16, persistence: &[String]) -> std::io::Result<Child> {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(persistence)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl AtomicStoreUnderTest for AtomicRedisStore {
    fn pass(&mut self, elapsed: Duration) {
        std::thread::sleep(elapsed);
    }
}
