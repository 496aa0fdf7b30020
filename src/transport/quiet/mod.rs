//! Quiet netcode transports: renet_netcode's UDP transports, minus the packets an idle
//! connection does not need.
//!
//! renet acknowledges every packet it receives, acknowledgement packets included, and
//! sends an acknowledgement packet on every update while any is pending; netcode sends a
//! keep-alive whenever nothing went out for 250 ms. Two peers that exchanged one message
//! therefore keep sending each other an ack-only packet every frame for as long as they
//! are connected: a 60 Hz server and 60 Hz clients exchange about 120 encrypted packets a
//! second per *waiting* player, which is most of a matchmaking server's CPU.
//!
//! These transports are renet_netcode's (the same netcode protocol, secure or insecure
//! connect tokens, interoperable with its transports) with one change on the sending side:
//! a packet that carries only acknowledgements is sent at once when a packet carrying
//! messages arrived since the last acknowledgement (so reliable messages are acknowledged
//! as fast as before and never resent for want of an ack), and otherwise an idle
//! connection sends one packet per [`MatchmakingAckPolicy::idle_interval`] (1 s by
//! default) each way: an ack-only packet, or netcode's keep-alive when renet has none.
//! Acknowledgement ranges are cumulative, so a damped packet loses no information: the next
//! one carries it. The server transport also lets netcode check each connection's timeout
//! once per idle interval instead of every frame (netcode finds a client by a linear search
//! over its 1,024 slots), and reports the connections that received messages to the app's
//! [`MatchmakingInbox`], so that the server reads only those.
//!
//! Use them with [`insert_quiet_secure_server`](super::insert_quiet_secure_server) and
//! [`insert_quiet_secure_client`](super::insert_quiet_secure_client), or build them yourself
//! and add [`MatchmakingQuietServerPlugin`] / [`MatchmakingQuietClientPlugin`] instead of
//! bevy_renet's netcode plugins.

mod bundle;
mod client;
mod idle;
mod server;

use std::io;
use std::net::UdpSocket;
use std::time::Duration;

use bevy::ecs::component::Mutable;
use bevy::prelude::*;
use bevy_renet::{RenetClient, RenetReceive, RenetSend, RenetServer};

pub use client::MatchmakingQuietClientTransport;
pub use idle::{MatchmakingAckPolicy, MatchmakingTransportStats};
pub use server::MatchmakingQuietServerTransport;

use crate::shared::inbox::MatchmakingInbox;

/// Blocks on the socket until a datagram can be read or `timeout` passed: the socket is
/// blocking with a read timeout for the wait only (std's safe calls), then non-blocking
/// again for the transport.
fn wait_readable(socket: &UdpSocket, timeout: Duration) -> bool {
    if timeout.is_zero() || socket.set_nonblocking(false).is_err() {
        return true;
    }
    let _ = socket.set_read_timeout(Some(timeout));
    let mut byte = [0u8; 1];
    let ready = match socket.peek_from(&mut byte) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    };
    let _ = socket.set_nonblocking(true);
    ready
}

/// The wait between two updates of [`matchmaking_wake_runner`], for a loop of your own:
/// `started` is when the last update began; returns once `min_frame` has passed since then
/// and a datagram can be read from the app's [`MatchmakingQuietServerTransport`], or once
/// `max_frame` has passed (an app without that transport just waits `max_frame` out).
pub fn matchmaking_wait_to_wake(
    app: &App,
    started: std::time::Instant,
    min_frame: Duration,
    max_frame: Duration,
) {
    if let Some(rest) = min_frame.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let wait = max_frame.saturating_sub(started.elapsed());
    match app
        .world()
        .get_resource::<MatchmakingQuietServerTransport>()
    {
        Some(transport) => {
            transport.wait_readable(wait);
        }
        None => std::thread::sleep(wait),
    }
}

/// A runner for a dedicated server on a [`MatchmakingQuietServerTransport`]: instead of
/// updating at a fixed rate whether or not anything happened, it updates when a datagram
/// arrives (but at most once per `min_frame`, so a busy server batches packets as a fixed
/// rate would) and at least once per `max_frame` (renet's resends, netcode's keep-alives
/// and timeouts, and the matchmaking deadlines run on updates). An idle server sleeps in
/// the kernel; a client's message is handled as soon as it arrives instead of waiting for
/// the next tick.
///
/// `app.set_runner(matchmaking_wake_runner(Duration::from_millis(16), Duration::from_millis(50)))`
/// (after `MinimalPlugins`, whose `ScheduleRunnerPlugin` sets its own runner).
pub fn matchmaking_wake_runner(
    min_frame: Duration,
    max_frame: Duration,
) -> impl FnOnce(App) -> AppExit + 'static {
    move |mut app: App| {
        while app.plugins_state() == bevy::app::PluginsState::Adding {
            std::thread::yield_now();
        }
        app.finish();
        app.cleanup();
        loop {
            let started = std::time::Instant::now();
            app.update();
            if let Some(exit) = app.should_exit() {
                return exit;
            }
            matchmaking_wait_to_wake(&app, started, min_frame, max_frame);
        }
    }
}

/// A quiet transport and the renet side it serves, as the plugins drive them.
trait QuietTransport: Resource<Mutability = Mutable> {
    /// [`RenetServer`] or [`RenetClient`].
    type Renet: Resource<Mutability = Mutable>;
    /// Receives (in `PreUpdate`, after renet's own update).
    fn receive(&mut self, elapsed: Duration, renet: &mut Self::Renet);
    /// Sends (in `PostUpdate`).
    fn send(&mut self, renet: &mut Self::Renet);
    /// Hands the connections that received messages to the app's inbox (dropped when it
    /// has none).
    fn report(&mut self, _inbox: Option<&mut MatchmakingInbox>) {}
}

impl QuietTransport for MatchmakingQuietServerTransport {
    type Renet = RenetServer;
    fn receive(&mut self, elapsed: Duration, server: &mut RenetServer) {
        if let Err(e) = self.update(elapsed, server) {
            error!("quiet netcode server transport: {e}");
        }
    }
    fn send(&mut self, server: &mut RenetServer) {
        self.send_packets(server);
    }
    fn report(&mut self, inbox: Option<&mut MatchmakingInbox>) {
        match inbox {
            Some(inbox) => inbox.append(&mut self.arrived),
            None => {
                self.arrived.take();
            }
        }
    }
}

impl QuietTransport for MatchmakingQuietClientTransport {
    type Renet = RenetClient;
    fn receive(&mut self, elapsed: Duration, client: &mut RenetClient) {
        if let Err(e) = self.update(elapsed, client) {
            debug!("quiet netcode client transport: {e}");
        }
    }
    fn send(&mut self, client: &mut RenetClient) {
        if let Err(e) = self.send_packets(client) {
            debug!("quiet netcode client transport: {e}");
        }
    }
}

/// Adds the receive and send systems of transport `T`, receiving after `after`.
fn add_quiet_systems<T: QuietTransport, M>(app: &mut App, after: impl IntoSystemSet<M>) {
    let ready = resource_exists::<T>.and_then(resource_exists::<T::Renet>);
    app.add_systems(
        PreUpdate,
        receive_quiet::<T>
            .in_set(RenetReceive)
            .after(after)
            .run_if(ready.clone()),
    )
    .add_systems(PostUpdate, send_quiet::<T>.in_set(RenetSend).run_if(ready));
}

fn receive_quiet<T: QuietTransport>(
    mut transport: ResMut<T>,
    mut renet: ResMut<T::Renet>,
    inbox: Option<ResMut<MatchmakingInbox>>,
    time: Res<Time<Real>>,
) {
    transport.receive(time.delta(), &mut renet);
    transport.report(inbox.map(ResMut::into_inner));
}

fn send_quiet<T: QuietTransport>(mut transport: ResMut<T>, mut renet: ResMut<T::Renet>) {
    transport.send(&mut renet);
}

/// Runs a [`MatchmakingQuietServerTransport`] resource with a [`RenetServer`] (instead of
/// bevy_renet's `NetcodeServerPlugin`), and adds a [`MatchmakingInbox`] that it reports
/// every packet to, so that the server reads only the connections that received messages
/// (mind the inbox's contract if the app also drives local clients).
pub struct MatchmakingQuietServerPlugin;

impl Plugin for MatchmakingQuietServerPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<MatchmakingInbox>();
        add_quiet_systems::<MatchmakingQuietServerTransport, _>(
            app,
            bevy_renet::RenetServerPlugin::update_system,
        );
    }
}

/// Runs a [`MatchmakingQuietClientTransport`] resource with a [`RenetClient`] (instead of
/// bevy_renet's `NetcodeClientPlugin`).
pub struct MatchmakingQuietClientPlugin;

impl Plugin for MatchmakingQuietClientPlugin {
    fn build(&self, app: &mut App) {
        add_quiet_systems::<MatchmakingQuietClientTransport, _>(
            app,
            bevy_renet::RenetClientPlugin::update_system,
        );
    }
}
