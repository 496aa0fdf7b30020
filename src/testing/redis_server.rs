//! A throwaway `redis-server` for tests (feature `redis`): started on a free loopback
//! port with no persistence, stopped on drop.
//!
//! [`TestRedis::start`] returns `None`, after printing why, when no `redis-server` is
//! installed, so a test can skip on a machine without Redis; set
//! `MATCHMAKING_REQUIRE_REDIS=1` (CI does) to make that a failure instead.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::atomic::cluster::AtomicRedisStore;
use crate::testing::store_suite::AtomicStoreUnderTest;

/// A `redis-server` child process on `127.0.0.1:port`.
#[derive(Debug)]
pub struct TestRedis {
    child: Option<Child>,
    port: u16,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl TestRedis {
    /// Starts a server, or says why not and returns `None` (a panic instead when
    /// `MATCHMAKING_REQUIRE_REDIS` is set).
    pub fn start(test: &str) -> Option<Self> {
        let port = free_port();
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
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

    /// Kills the server (SIGKILL): everything it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts an empty one on the same port, as a Redis that restarted
    /// without persistence.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart redis-server");
        self.child = Some(child);
        self.wait_ready();
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

impl AtomicStoreUnderTest for AtomicRedisStore {
    fn pass(&mut self, elapsed: Duration) {
        std::thread::sleep(elapsed);
    }
}
