//! A server (or relay) app in its own thread, run by [`plug::server_loop`], so that its
//! CPU time is exactly the thread's (`CLOCK_THREAD_CPUTIME_ID`) while the bots run in
//! the main thread.
//!
//! After every frame the thread publishes its CPU time, its frame count and a few
//! counters (atomics and a small mutex: no waiting on either side), then runs the queries
//! the main thread sent ([`ServerThread::query`]), which see the app between two frames.

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::harness::single_threaded;
use bevy_renet::RenetServer;

use crate::measure::thread_cpu;
use crate::plug;

/// What the main thread watches without stopping the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Open connections.
    pub connected: u64,
    /// Tickets held (matchmaking server).
    pub queued: u64,
    pub committed: u64,
    pub rolled_back: u64,
}

/// The counters of a matchmaking server app.
pub fn matchmaking_counters(app: &App) -> Counters {
    let world = app.world();
    let stats = world.resource::<AtomicServerStats>();
    Counters {
        connected: world.resource::<RenetServer>().connected_clients() as u64,
        queued: world.resource::<AtomicServerState>().queue().total() as u64,
        committed: stats.matches_committed,
        rolled_back: stats.matches_rolled_back,
    }
}

/// The counters of a relay app (connections welcomed).
pub fn relay_counters(app: &App) -> Counters {
    let state = app.world().resource::<NegotiatedRelayState>();
    Counters {
        connected: state.connected() as u64,
        ..default()
    }
}

type Query = Box<dyn FnOnce(&mut App) + Send>;

struct Shared {
    cpu_ns: AtomicU64,
    frames: AtomicU64,
    stop: AtomicBool,
    counters: Mutex<Counters>,
}

/// A server app running in its own thread.
pub struct ServerThread {
    shared: Arc<Shared>,
    queries: mpsc::Sender<Query>,
    handle: Option<JoinHandle<()>>,
    /// Where clients connect.
    pub addr: SocketAddr,
}

impl ServerThread {
    /// Builds the app with `build` in a new thread (a Bevy app stays in the thread that
    /// made it) and runs it at `hz`; `counters` reads what [`counters`](Self::counters)
    /// returns, after every frame.
    pub fn spawn(
        hz: f64,
        build: impl FnOnce() -> io::Result<(App, SocketAddr)> + Send + 'static,
        counters: fn(&App) -> Counters,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            cpu_ns: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            counters: Mutex::new(Counters::default()),
        });
        let (queries, incoming) = mpsc::channel::<Query>();
        let (bound, addr) = mpsc::channel();
        let inner = shared.clone();
        let handle = std::thread::Builder::new()
            .name("server".into())
            .spawn(move || {
                let (mut app, a) = match build() {
                    Ok(built) => built,
                    Err(e) => return bound.send(Err(e)).unwrap_or(()),
                };
                single_threaded(&mut app);
                let _ = bound.send(Ok(a));
                plug::server_loop(&mut app, hz, |app| {
                    inner
                        .cpu_ns
                        .store(thread_cpu().as_nanos() as u64, Ordering::Release);
                    inner.frames.fetch_add(1, Ordering::Release);
                    *inner.counters.lock().expect("counters") = counters(app);
                    while let Ok(query) = incoming.try_recv() {
                        query(app);
                    }
                    match inner.stop.load(Ordering::Acquire) {
                        true => ControlFlow::Break(()),
                        false => ControlFlow::Continue(()),
                    }
                });
            })?;
        let addr = addr
            .recv()
            .map_err(|_| io::Error::other("the server thread died"))??;
        Ok(Self {
            shared,
            queries,
            handle: Some(handle),
            addr,
        })
    }

    /// The server thread's CPU time at the end of its last frame.
    pub fn cpu(&self) -> Duration {
        Duration::from_nanos(self.shared.cpu_ns.load(Ordering::Acquire))
    }

    /// Frames run so far.
    pub fn frames(&self) -> u64 {
        self.shared.frames.load(Ordering::Acquire)
    }

    /// The counters as of the last frame.
    pub fn counters(&self) -> Counters {
        *self.shared.counters.lock().expect("counters")
    }

    /// Runs `f` on the app between two frames and returns its result (waits up to a
    /// frame for it).
    pub fn query<R: Send + 'static>(&self, f: impl FnOnce(&mut App) -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        let query: Query = Box::new(move |app| {
            let _ = tx.send(f(app));
        });
        self.queries
            .send(query)
            .expect("the server thread is running");
        rx.recv().expect("the server thread answered")
    }

    /// Stops the loop and waits for the thread.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            handle.join().expect("the server thread");
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
