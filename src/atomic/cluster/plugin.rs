//! [`AtomicClusterServerPlugin`]: a dedicated server as one node of a cluster. It reads
//! the matchmaking channel through the same connection gate as the single server, hands
//! each player event to the node
//! ([`AtomicClusterNode`](crate::atomic::core::cluster::AtomicClusterNode)) and sends
//! players what the node asks.

use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::renet::ServerEvent;
use bevy_renet::{RenetReceive, RenetServer, RenetServerEvent};

use crate::atomic::AtomicChannel;
use crate::atomic::core::cluster::{
    AtomicClusterCommand, AtomicClusterCounters, AtomicClusterOutcome, AtomicClusterOutput,
    AtomicClusterSettings,
};
use crate::atomic::core::protocol::{
    ATOMIC_PROTOCOL_VERSION, AtomicClientMessage, AtomicErrorKind, AtomicServerMessage,
};
use crate::atomic::core::store::{AtomicNodeLease, AtomicStoreStats};
use crate::shared::conditions::server_exists;
use crate::shared::connection_config::{MatchmakingConnectionConfig, channel_carried};
use crate::shared::gate::{ConnectionGate, GateReply, GatedService, MatchmakingGatePolicy};
use crate::shared::player::{PlayerId, validate_category};
use crate::shared::plugins::Dependencies;
use crate::shared::server_link::ServerLink;

use super::runner::{AtomicClusterBackend, Runner};

/// System sets of the cluster server plugin, in frame order; each runs only while a
/// [`RenetServer`] exists and the connection config carries the channel.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomicClusterServerSystems {
    /// `PreUpdate`, after [`RenetReceive`]: client messages through the connection gate,
    /// then to the node.
    Receive,
    /// `Update`: what the node asks is sent to players; refused connections close.
    Relay,
}

/// A dedicated server as one node of a cluster of atomic matchmaking servers. Use it in
/// place of [`AtomicServerPlugin`](crate::atomic::server::AtomicServerPlugin): clients
/// speak the same protocol and cannot tell the two apart.
///
/// Every node of a cluster uses the same store (one Redis and key prefix, or one shared
/// in-memory backend in one process) and a node name of its own. See
/// [`cluster`](crate::atomic::core::cluster) for who owns what and what happens when a
/// node dies.
#[derive(Debug, Clone)]
pub struct AtomicClusterServerPlugin {
    /// Where matchmaking messages travel.
    pub channel: AtomicChannel,
    /// The node's name, lease, players per match and timings.
    pub node: AtomicClusterSettings,
    /// Where the store and the inbox live.
    pub backend: AtomicClusterBackend,
    /// The connection gate's limits.
    pub gate: MatchmakingGatePolicy,
    /// Seeds the node's nonces, lobby ids and codes.
    pub seed: u64,
}

/// This node of the cluster, as the server app sees it.
#[derive(Resource, Debug, Clone, Default)]
pub struct AtomicClusterServer {
    /// The node's name.
    pub node: String,
    /// The lease it holds (none while the store is unreachable, or after it lost one).
    pub lease: Option<AtomicNodeLease>,
    /// Whether its store was reachable at its last report.
    pub store_reachable: bool,
    /// What it has done since it started.
    pub counters: AtomicClusterCounters,
    /// Connections open now.
    pub connected: usize,
    /// Matches it coordinates now.
    pub forming: usize,
    /// The whole cluster, as the node last read it from the store (about once a second).
    pub cluster: Option<AtomicStoreStats>,
}

/// A match this node coordinated was decided (written in `Update`, in
/// [`AtomicClusterServerSystems::Relay`]): committed, or rolled back and why.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct AtomicClusterMatchOutcome(pub AtomicClusterOutcome);

/// Write it to close this node: every client is told the server is closing and to retry
/// elsewhere (another node of the cluster), and its connection is closed a few frames later.
/// The node gives its lease up when the app goes away (its queued tickets go, the matches it
/// coordinates roll back, their players on other nodes back in front).
#[derive(Message, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtomicClusterClose;

/// Frames between the closing notice and closing the connections (the notice goes out).
const CLOSE_AFTER_FRAMES: u32 = 3;

#[derive(Resource, Default)]
struct ClusterGate {
    gate: ConnectionGate,
    policy: MatchmakingGatePolicy,
    /// Frames left before every connection closes, once the node is closing.
    closing_in: Option<u32>,
}

impl Plugin for AtomicClusterServerPlugin {
    fn build(&self, app: &mut App) {
        Dependencies::server("AtomicClusterServerPlugin").then(app, |_| {});
        let carried = channel_carried::<AtomicChannel>;
        let runner = Runner::start(self.node.clone(), self.backend.clone(), self.seed);
        let status = AtomicClusterServer {
            node: self.node.node.clone(),
            store_reachable: true,
            ..default()
        };
        app.insert_resource(self.channel)
            .insert_resource(runner)
            .insert_resource(status)
            .insert_resource(ClusterGate {
                gate: ConnectionGate::default(),
                policy: self.gate.clamped(),
                closing_in: None,
            })
            .add_message::<AtomicClusterMatchOutcome>()
            .add_message::<AtomicClusterClose>()
            .add_observer(on_server_event)
            .configure_sets(
                PreUpdate,
                AtomicClusterServerSystems::Receive
                    .after(RenetReceive)
                    .run_if(server_exists.and_then(carried)),
            )
            .configure_sets(
                Update,
                AtomicClusterServerSystems::Relay.run_if(server_exists.and_then(carried)),
            )
            .add_systems(
                PreUpdate,
                receive_messages.in_set(AtomicClusterServerSystems::Receive),
            )
            .add_systems(
                Update,
                (relay_outputs, close_refused, close_node)
                    .chain()
                    .in_set(AtomicClusterServerSystems::Relay),
            );
    }
}

/// Connections opening and closing reach the gate and the node.
fn on_server_event(
    event: On<RenetServerEvent>,
    mut gate: ResMut<ClusterGate>,
    mut runner: ResMut<Runner>,
    mut status: ResMut<AtomicClusterServer>,
    time: Res<Time<Real>>,
) {
    let now = time.elapsed();
    match event.event().0 {
        ServerEvent::ClientConnected { client_id } => {
            gate.gate.connect(client_id);
            runner.command(AtomicClusterCommand::Connect(client_id), now);
        }
        ServerEvent::ClientDisconnected { client_id, .. } => {
            gate.gate.disconnect(client_id);
            runner.command(AtomicClusterCommand::Disconnect(client_id), now);
        }
    }
    status.connected = gate.gate.connected();
}

#[derive(SystemParam)]
struct Receiver<'w> {
    link: ServerLink<'w, AtomicChannel>,
    gate: ResMut<'w, ClusterGate>,
    runner: ResMut<'w, Runner>,
    time: Res<'w, Time<Real>>,
}

fn receive_messages(config: Option<Res<MatchmakingConnectionConfig>>, mut receiver: Receiver) {
    receiver
        .gate
        .gate
        .expect_config(config.map(|c| c.fingerprint));
    let now = receiver.time.elapsed();
    receiver.receive_all(now);
}

impl Receiver<'_> {
    fn send_error(&mut self, to: PlayerId, kind: AtomicErrorKind, message: String) {
        self.link
            .send(to, &AtomicServerMessage::Error { kind, message });
    }
}

impl<'w> GatedService for Receiver<'w> {
    type Message = AtomicClientMessage;

    type Transport = ServerLink<'w, AtomicChannel>;

    fn gate(&mut self) -> (&mut ConnectionGate, MatchmakingGatePolicy) {
        let gate = &mut *self.gate;
        (&mut gate.gate, gate.policy)
    }

    fn transport(&mut self) -> &mut ServerLink<'w, AtomicChannel> {
        &mut self.link
    }

    fn welcome(&mut self, client: PlayerId) {
        let welcome = AtomicServerMessage::Welcome {
            protocol_version: ATOMIC_PROTOCOL_VERSION,
            player: client,
        };
        self.link.send(client, &welcome);
    }

    fn reply(&mut self, client: PlayerId, reply: GateReply) {
        if let Some(warning) = reply.warning() {
            warn!("matchmaking: player {client}: {warning}");
        }
        for error in reply.errors {
            self.send_error(client, error.kind.into(), error.message);
        }
        if reply.refused {
            // a refused connection holds nothing while it waits to be closed
            let now = self.time.elapsed();
            self.runner
                .command(AtomicClusterCommand::Disconnect(client), now);
        }
    }

    fn deliver(&mut self, client: PlayerId, message: AtomicClientMessage, now: Duration) {
        let command = match message {
            AtomicClientMessage::Hello { .. } => return, // the gate answers every hello
            AtomicClientMessage::JoinQueue { category } => {
                if let Err(error) = validate_category(&category) {
                    let why = format!("invalid category: {error}");
                    return self.send_error(client, AtomicErrorKind::InvalidCategory, why);
                }
                AtomicClusterCommand::Join(client, category)
            }
            AtomicClientMessage::LeaveQueue => AtomicClusterCommand::Leave(client),
            AtomicClientMessage::Pong { nonce } => AtomicClusterCommand::Pong(client, nonce),
            AtomicClientMessage::Acknowledge { match_id, .. } => {
                AtomicClusterCommand::Acknowledge(client, match_id)
            }
            AtomicClientMessage::LeaveLobby { .. } => AtomicClusterCommand::LeaveLobby(client),
        };
        self.runner.command(command, now);
    }
}

/// Sends players what the node asks, and keeps [`AtomicClusterServer`] current.
fn relay_outputs(
    mut link: ServerLink<AtomicChannel>,
    mut runner: ResMut<Runner>,
    mut status: ResMut<AtomicClusterServer>,
    mut outcomes: MessageWriter<AtomicClusterMatchOutcome>,
    time: Res<Time<Real>>,
) {
    for output in runner.take(time.elapsed()) {
        match output {
            AtomicClusterOutput::ToPlayer(player, message) => link.send(player, &message),
            AtomicClusterOutput::LeaseAcquired(lease) => {
                info!(
                    "matchmaking cluster: {} holds lease {}",
                    lease.node, lease.epoch
                );
                status.lease = Some(lease);
            }
            AtomicClusterOutput::LeaseLost => {
                warn!("matchmaking cluster: lease lost; matches in flight rolled back");
                status.lease = None;
            }
            AtomicClusterOutput::StoreUnavailable(why) => {
                warn!("matchmaking cluster: store unreachable, joins refused: {why}");
            }
            AtomicClusterOutput::Outcome(outcome) => {
                outcomes.write(AtomicClusterMatchOutcome(outcome));
            }
        }
    }
    let numbers = &runner.numbers;
    if status.counters != numbers.counters {
        status.counters = numbers.counters.clone();
    }
    if status.cluster != numbers.cluster {
        status.cluster = numbers.cluster.clone();
    }
    status.forming = numbers.forming;
    status.store_reachable = numbers.reachable;
}

/// On [`AtomicClusterClose`]: the closing notice to every client, then, a few frames later,
/// every connection closed.
fn close_node(
    mut requests: MessageReader<AtomicClusterClose>,
    mut link: ServerLink<AtomicChannel>,
    mut gate: ResMut<ClusterGate>,
) {
    if requests.read().count() > 0 && gate.closing_in.is_none() {
        let notice = AtomicServerMessage::ServerClosing {
            retry_elsewhere: true,
        };
        for client in link.server.clients_id() {
            link.send(client, &notice);
        }
        gate.closing_in = Some(CLOSE_AFTER_FRAMES);
    }
    match gate.closing_in {
        Some(0) => {
            link.server.disconnect_all();
            gate.closing_in = None;
        }
        Some(n) => gate.closing_in = Some(n - 1),
        None => {}
    }
}

fn close_refused(
    mut server: ResMut<RenetServer>,
    mut gate: ResMut<ClusterGate>,
    time: Res<Time<Real>>,
) {
    for client in gate.gate.take_due(time.elapsed()) {
        server.disconnect(client);
    }
}
