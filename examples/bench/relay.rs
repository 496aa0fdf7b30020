//! `relay`: the negotiated relay, twice.
//!
//! - Throughput, in process: the relay plugin and N client-plugin clients on renet local
//!   connections (set up by `NegotiatedTestHarness`, driven here so that only the relay
//!   app's `update` is timed), every client searching again as soon as it is matched;
//!   facts stored and forwarded per second of relay CPU.
//! - Idle, over UDP: the relay in its own thread ([`ServerThread`]) and N connected bare
//!   clients that said hello; the relay's CPU per connected client-second.

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_atomic_matchmaking::negotiated::core::protocol::NegotiatedClientMessage;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::codec;
use bevy_atomic_matchmaking::testing::harness::single_threaded;
use bevy_atomic_matchmaking::testing::negotiated::NegotiatedTestHarness;
use bevy_renet::{RenetClient, RenetServer};
use serde_json::{Value, json};

use crate::Args;
use crate::fleet::{RawFleet, Script, raw_clients};
use crate::measure::{round3, thread_cpu};
use crate::plug;
use crate::server_thread::{ServerThread, relay_counters};
use crate::udp::merge;
use crate::window::Window;

/// The relay's frames (requests live one to two of them).
const FRAME: Duration = Duration::from_secs(2);

pub fn relay(args: &Args) -> Value {
    json!({
        "settings": args.settings(args.players_or(500)),
        "throughput_in_memory": throughput(args),
        "idle_udp": idle(args),
    })
}

/// Moves every client's packets both ways (renet local connections, no faults).
fn exchange(h: &mut NegotiatedTestHarness) {
    let clients = &mut h.clients;
    h.server
        .world_mut()
        .resource_scope(|world, mut server: Mut<RenetServer>| {
            let mut inbox = world.get_resource_mut::<MatchmakingInbox>();
            for client in clients.iter_mut() {
                let mut renet = client.app.world_mut().resource_mut::<RenetClient>();
                let inbox = inbox.as_deref_mut();
                let _ = matchmaking_process_local_client(&mut server, inbox, client.id, &mut renet);
            }
        });
}

/// One round: packets, the relay (timed: its CPU is returned), packets, every client.
fn step(h: &mut NegotiatedTestHarness) -> Duration {
    exchange(h);
    let cpu = thread_cpu();
    h.server.update();
    let spent = thread_cpu().saturating_sub(cpu);
    exchange(h);
    for client in &mut h.clients {
        client.app.update();
    }
    spent
}

/// Clients per category in the throughput run: every fact of a category goes to every
/// client watching it, so the fan-out stays this size whatever N.
const PER_CATEGORY: usize = 10;

fn category(i: usize) -> String {
    format!("c{}", i / PER_CATEGORY)
}

/// Updates (10 ms each) a matched client "plays" before it searches again.
const PLAY_UPDATES: u64 = 100;

/// Where each client stands in the throughput run.
struct Searches {
    /// Matches each client reported so far.
    seen: Vec<usize>,
    /// The update from which each matched client searches again.
    resume_at: Vec<Option<u64>>,
}

impl Searches {
    /// Notes new matches and restarts the searches whose pause is over; returns how many
    /// matches were new.
    fn step(&mut self, h: &mut NegotiatedTestHarness, ids: &[PlayerId], update: u64) -> usize {
        let mut matched = 0;
        for (i, id) in ids.iter().enumerate() {
            let found = h.recorded::<NegotiatedMatchFound>(*id).len();
            if found > self.seen[i] {
                matched += found - self.seen[i];
                self.seen[i] = found;
                self.resume_at[i] = Some(update + PLAY_UPDATES);
            }
            if self.resume_at[i].is_some_and(|at| update >= at) {
                self.resume_at[i] = None;
                h.search(*id, &category(i));
            }
        }
        matched
    }
}

fn throughput(args: &Args) -> Value {
    let n = args.players_or(200);
    let rate_limit = MatchmakingRateLimit {
        messages_per_second: 1_000,
        burst: 1_000,
    };
    let relay = NegotiatedRelaySettings {
        frame_duration: FRAME,
        gate: MatchmakingGatePolicy {
            rate_limit,
            ..default()
        },
        ..default()
    };
    let clients = NegotiatedClientSettings {
        bid_timeout: Duration::from_secs(1),
        time_sync_interval: Duration::from_secs(2),
        ..default()
    };
    let mut h = NegotiatedTestHarness::new(relay, clients);
    let ids = h.add_clients(n);
    single_threaded(&mut h.server);
    for client in &mut h.clients {
        single_threaded(&mut client.app);
    }
    let mut searches = Searches {
        seen: vec![0; n],
        resume_at: vec![Some(0); n],
    };
    let mut update = 0;
    while update < 300 {
        step(&mut h);
        searches.step(&mut h, &ids, update);
        update += 1;
    }
    eprintln!(
        "bench: relay: {n} local clients searching; measuring {} s",
        args.seconds
    );
    let before = h.relay_state().stats();
    let (mut cpu, mut matches, first) = (Duration::ZERO, 0, update);
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < args.seconds {
        cpu += step(&mut h);
        matches += searches.step(&mut h, &ids, update);
        update += 1;
    }
    let after = h.relay_state().stats();
    let stored = after.facts_stored - before.facts_stored;
    let sent = after.facts_sent - before.facts_sent;
    let secs = cpu.as_secs_f64().max(1e-9);
    json!({
        "what": "the relay plugin and N client-plugin clients on renet local connections (manual time, 10 ms per update, 2 s frames), 10 to a category (every fact of a category reaches every client watching it), each searching again 1 s after it is matched (after 3 s of warm-up); only the relay app's update is timed; the relay's rate limit is raised to 1000 messages/s",
        "clients": n,
        "updates": update - first,
        "relay_update_cpu_s": round3(cpu.as_secs_f64()),
        "facts_stored": stored,
        "facts_sent": sent,
        "facts_refused": after.facts_refused - before.facts_refused,
        "matches_reported_by_clients": matches,
        "facts_stored_per_relay_cpu_second": round3(stored as f64 / secs),
        "facts_sent_per_relay_cpu_second": round3(sent as f64 / secs),
        "facts_stored_and_sent_per_relay_cpu_second": round3((stored + sent) as f64 / secs),
    })
}

/// What an idle negotiated client says: hello, and nothing more.
fn idle_script() -> Script {
    Script {
        channel: NegotiatedChannel::default().id,
        greet: Box::new(|_| {
            let hello = NegotiatedClientMessage::Hello {
                protocol_version: NEGOTIATED_PROTOCOL_VERSION,
                config_fingerprint: 0,
            };
            vec![codec::encode(&hello)]
        }),
        answer: Box::new(|_| None),
    }
}

fn idle(args: &Args) -> Value {
    let n = args.players_or(500);
    let identity = plug::identity();
    let build = {
        let identity = identity.clone();
        let settings = NegotiatedRelaySettings {
            frame_duration: FRAME,
            ..default()
        };
        let rcvbuf = args.udp_rcvbuf;
        move || plug::relay_app(&identity, n, settings, rcvbuf)
    };
    let relay = match ServerThread::spawn(args.server_hz, build, relay_counters) {
        Ok(relay) => relay,
        Err(e) => return json!({"error": format!("cannot start the relay: {e}")}),
    };
    let config = NegotiatedChannel::default().dedicated_connection_config();
    let clients = match raw_clients(&relay, &identity, n, config) {
        Ok(clients) => clients,
        Err(e) => return json!({"error": format!("cannot make the clients: {e}")}),
    };
    let mut fleet = RawFleet::new(clients, idle_script(), args.client_hz);
    eprintln!("bench: relay: {n} UDP clients connect");
    let limit = Duration::from_secs(60);
    let all = fleet.run_until(limit, |_| relay.counters().connected >= n as u64);
    fleet.run_until(Duration::from_secs(1), |_| false);
    let connected = relay.counters().connected;
    eprintln!(
        "bench: relay: {connected} welcomed; measuring {} s",
        args.seconds
    );
    let window = Window::open(&relay, fleet.rounds);
    fleet.run_until(Duration::from_secs_f64(args.seconds), |_| false);
    let measured = window.close(&relay, fleet.rounds);
    let buffer = relay.query(|app| {
        app.world()
            .get_resource::<plug::ReceiveBuffer>()
            .map(|b| b.0)
    });
    relay.stop();
    let client_seconds = connected as f64 * measured.wall.as_secs_f64();
    let report = json!({
        "what": "the relay in its own thread over UDP loopback with N connected bare renet + netcode clients that said hello and nothing more (a client-plugin client would also ask for the time every 10 s); measured for --seconds starting 1 s after all are welcomed",
        "clients": n,
        "every_client_welcomed": all,
        "clients_gave_up": fleet.gave_up(),
        "clients_welcomed": connected,
        "server_socket_receive_buffer_bytes": buffer,
        "relay_cpu_us_per_client_second": round3(measured.server_cpu.as_secs_f64() * 1e6 / client_seconds.max(1e-9)),
        "udp": measured.udp_json(connected),
    });
    merge(report, measured.json())
}
