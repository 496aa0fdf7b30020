//! Client failover between relays over real UDP on 127.0.0.1 (issue #18, the client's
//! part): a client with a list of relays connects to the next one when its relay goes
//! silent, and is welcomed there; a dead first address is skipped; `MatchmakingDisconnect`
//! stops the failover and `MatchmakingConnect` replaces it; two clients search on through
//! the second relay and pair.
//!
//! The relays are plain `NegotiatedRelayPlugin`s in separate apps (they share no facts). A
//! relay "goes silent" by no longer being updated: its socket stays bound, so datagrams to
//! it vanish unanswered. Every app runs on manual time (10 ms an update), so the bounds
//! below are in updates derived from the token's timeout, whatever the machine's speed.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bevy::prelude::*;
use bevy::time::TimeUpdateStrategy;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::harness::finish_plugins;

/// A relay with 10 s frames, checking tokens with the key given (or insecure).
use crate::udp::relay_with as relay;
use bevy_atomic_matchmaking::transport::{
    DEFAULT_FAILOVER_RETRY_DELAY, MatchmakingConnect, MatchmakingDisconnect, MatchmakingFailedOver,
    MatchmakingFailover, MatchmakingPrivateKey, MatchmakingTokenIssuer,
    insert_client_with_failover,
};

const STEP: Duration = Duration::from_millis(10);
/// The token's timeout: how long a relay may be silent before the client gives it up.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Updates in `d` of manual time.
fn updates(d: Duration) -> usize {
    (d.as_millis() / STEP.as_millis()) as usize
}

/// The most updates a failover may take: the timeout, the retry delay, and half a second
/// for the new connection and the welcome.
fn failover_bound(timeout: Duration) -> usize {
    updates(timeout + DEFAULT_FAILOVER_RETRY_DELAY + Duration::from_millis(500))
}

/// What a client saw, in order.
#[derive(Resource, Default)]
struct Seen {
    welcomes: Vec<PlayerId>,
    failovers: Vec<MatchmakingFailedOver>,
}

fn record(
    mut seen: ResMut<Seen>,
    mut welcomes: MessageReader<NegotiatedConnected>,
    mut failovers: MessageReader<MatchmakingFailedOver>,
) {
    seen.welcomes.extend(welcomes.read().map(|w| w.client_id));
    seen.failovers.extend(failovers.read().cloned());
}

/// A client app connected with `failover` (seeded with `id`).
fn client(id: u64, failover: MatchmakingFailover, settings: NegotiatedClientSettings) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP))
        .add_plugins(NegotiatedClientPlugin {
            channel: NegotiatedChannel::default(),
            settings: NegotiatedClientSettings {
                seed: Some(id),
                ..settings
            },
        })
        .init_resource::<Seen>()
        .add_systems(Update, record);
    insert_client_with_failover(&mut app, failover).expect("UDP client");
    finish_plugins(&mut app);
    app
}

/// A backend whose tokens time out after [`TIMEOUT`], and the key for the relays.
fn backend() -> (MatchmakingTokenIssuer, MatchmakingPrivateKey) {
    let key = MatchmakingPrivateKey::generate();
    let issuer = MatchmakingTokenIssuer::new(key.clone()).with_timeout(TIMEOUT);
    (issuer, key)
}

/// A secure failover for `id` over `relays`.
fn secure(backend: &MatchmakingTokenIssuer, id: u64, relays: &[SocketAddr]) -> MatchmakingFailover {
    let token = backend
        .issue(id, Duration::from_secs(60), relays, &[])
        .expect("mint");
    MatchmakingFailover::secure(token, NegotiatedChannel::default().connection_config())
}

/// The relays (each updated only while live) and the clients.
struct Net {
    relays: Vec<(App, bool)>,
    clients: Vec<App>,
}

impl Net {
    fn step(&mut self) {
        for (relay, live) in &mut self.relays {
            if *live {
                relay.update();
            }
        }
        for c in &mut self.clients {
            c.update();
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    /// Runs until `done`, at most `max` updates; returns how many it took.
    fn run_until(&mut self, max: usize, done: impl Fn(&Net) -> bool) -> usize {
        for n in 0..max {
            if done(self) {
                return n;
            }
            self.step();
        }
        assert!(done(self), "condition not reached in {max} updates");
        max
    }

    fn run(&mut self, n: usize) {
        for _ in 0..n {
            self.step();
        }
    }

    fn connected_at(&self, relay: usize) -> usize {
        self.relays[relay]
            .0
            .world()
            .resource::<NegotiatedRelayState>()
            .connected()
    }
}

fn state(app: &App) -> NegotiatedClientState {
    *app.world().resource::<State<NegotiatedClientState>>().get()
}

fn status(app: &App) -> &NegotiatedClientStatus {
    app.world().resource::<NegotiatedClientStatus>()
}

fn failover(app: &App) -> Option<&MatchmakingFailover> {
    app.world().get_resource::<MatchmakingFailover>()
}

fn seen(app: &App) -> &Seen {
    app.world().resource::<Seen>()
}

/// Welcomed (and synced) through the relay at `addr`, the `welcomes`-th welcome (the state
/// lags a frame behind a new connection, the welcomes do not).
fn idle_at(app: &App, addr: SocketAddr, welcomes: usize) -> bool {
    state(app) == NegotiatedClientState::Idle
        && failover(app).and_then(MatchmakingFailover::current_server) == Some(addr)
        && seen(app).welcomes.len() == welcomes
}

/// Two secure relays and clients for `ids` on [A, B], each welcomed by A; and the backend.
fn two_relays_and_clients_on_a(
    ids: &[u64],
) -> (Net, SocketAddr, SocketAddr, MatchmakingTokenIssuer) {
    let (backend, key) = backend();
    let (relay_a, a) = relay(Some(&key));
    let (relay_b, b) = relay(Some(&key));
    let clients = ids
        .iter()
        .map(|id| client(*id, secure(&backend, *id, &[a, b]), default()))
        .collect();
    let mut net = Net {
        relays: vec![(relay_a, true), (relay_b, true)],
        clients,
    };
    net.run_until(500, |n| n.clients.iter().all(|c| idle_at(c, a, 1)));
    assert_eq!(net.connected_at(0), ids.len());
    assert_eq!(net.connected_at(1), 0);
    (net, a, b, backend)
}

#[test]
fn a_client_fails_over_to_the_next_relay_when_its_relay_goes_silent() {
    let (mut net, a, b, _) = two_relays_and_clients_on_a(&[7]);
    assert_eq!(seen(&net.clients[0]).welcomes, vec![7]);
    assert_eq!(failover(&net.clients[0]).unwrap().failovers(), 0);

    // A goes silent
    net.relays[0].1 = false;
    let took = net.run_until(failover_bound(TIMEOUT), |n| idle_at(&n.clients[0], b, 2));
    assert!(
        took >= updates(TIMEOUT),
        "not given up before the timeout ({took} updates)"
    );
    let c = &net.clients[0];
    assert_eq!(seen(c).welcomes, vec![7, 7], "welcomed again, by B");
    assert_eq!(net.connected_at(1), 1);
    assert_eq!(failover(c).unwrap().failovers(), 1);
    let event = &seen(c).failovers[..];
    assert_eq!(event.len(), 1);
    assert_eq!((event[0].from, event[0].to, event[0].failovers), (a, b, 1));
    assert!(
        event[0].reason.contains("timed out"),
        "netcode's reason: {}",
        event[0].reason
    );
    assert_eq!(status(c).client_id, Some(7));
    let target = c.world().resource::<MatchmakingConnectTarget>();
    assert_eq!((target.server, target.secure), (b, true));
}

#[test]
fn a_client_whose_first_relay_is_dead_connects_to_the_second() {
    let (backend, key) = backend();
    // a bound socket nobody reads: datagrams vanish unanswered
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let (relay_b, b) = relay(Some(&key));
    let mut net = Net {
        relays: vec![(relay_b, true)],
        clients: vec![client(8, secure(&backend, 8, &[dead_addr, b]), default())],
    };
    net.run_until(failover_bound(TIMEOUT), |n| idle_at(&n.clients[0], b, 1));
    let c = &net.clients[0];
    assert_eq!(seen(c).welcomes, vec![8]);
    assert_eq!(failover(c).unwrap().failovers(), 1);
    assert_eq!(seen(c).failovers[0].from, dead_addr);
    drop(dead);
}

#[test]
fn over_the_quiet_transport_a_dead_first_relay_is_skipped_too() {
    // the quiet transport idles one packet a second: a 3 s timeout leaves room for it
    let timeout = Duration::from_secs(3);
    let key = MatchmakingPrivateKey::generate();
    let backend = MatchmakingTokenIssuer::new(key.clone()).with_timeout(timeout);
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let (relay_b, b) = relay(Some(&key));
    let quiet = secure(&backend, 9, &[dead_addr, b]).quiet();
    let mut net = Net {
        relays: vec![(relay_b, true)],
        clients: vec![client(9, quiet, default())],
    };
    // the plugin gives the dead relay up after its connect timeout (5 s) or netcode after
    // the token's (3 s), whichever is first
    net.run_until(failover_bound(timeout), |n| idle_at(&n.clients[0], b, 1));
    let c = &net.clients[0];
    assert!(
        c.world()
            .contains_resource::<bevy_atomic_matchmaking::transport::MatchmakingQuietClientTransport>()
    );
    assert_eq!(failover(c).unwrap().failovers(), 1);
    // and it stays connected: the keep-alives come within the timeout
    net.run(updates(2 * timeout));
    assert!(idle_at(&net.clients[0], b, 1));
    assert_eq!(failover(&net.clients[0]).unwrap().failovers(), 1);
}

#[test]
fn an_insecure_client_skips_a_dead_relay_once_the_plugin_gives_the_attempt_up() {
    // insecure connections time out after netcode's fixed 15 s; the plugin's connect
    // timeout (1 s here) gives the attempt up first
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let (relay_b, b) = relay(None);
    let config = NegotiatedChannel::default().connection_config();
    let failover_list = MatchmakingFailover::insecure(&[dead_addr, b], 10, config);
    let settings = NegotiatedClientSettings {
        connect_timeout: Duration::from_secs(1),
        ..default()
    };
    let mut net = Net {
        relays: vec![(relay_b, true)],
        clients: vec![client(10, failover_list, settings)],
    };
    net.run_until(failover_bound(Duration::from_secs(1)), |n| {
        idle_at(&n.clients[0], b, 1)
    });
    let c = &net.clients[0];
    assert_eq!(status(c).client_id, Some(10));
    let errors = status(c).last_error.as_ref().map(|e| e.kind);
    assert_eq!(
        errors,
        Some(NegotiatedErrorKind::ConnectFailed),
        "the dead relay was reported"
    );
    assert!(!c.world().resource::<MatchmakingConnectTarget>().secure);
}

#[test]
fn matchmaking_disconnect_stops_the_failover() {
    let (mut net, _, _, _) = two_relays_and_clients_on_a(&[11]);
    net.clients[0]
        .world_mut()
        .write_message(MatchmakingDisconnect);
    // well past a timeout and a retry delay: nobody reconnects
    net.run(2 * failover_bound(TIMEOUT));
    let c = &net.clients[0];
    assert!(failover(c).is_none(), "the failover is stopped");
    assert_eq!(state(c), NegotiatedClientState::Disconnected);
    assert!(seen(c).failovers.is_empty());
    assert_eq!(seen(c).welcomes.len(), 1);
    assert_eq!(status(c).last_error, None, "leaving is no error");
    assert_eq!((net.connected_at(0), net.connected_at(1)), (0, 0));
}

#[test]
fn a_connect_request_replaces_the_failover() {
    let (mut net, a, b, backend) = two_relays_and_clients_on_a(&[12]);
    // the game connects its own way, to a relay C (its token names A and B too)
    let (relay_c, c_addr) = relay(Some(backend.key()));
    net.relays.push((relay_c, true));
    let token = backend
        .issue(12, Duration::from_secs(60), &[c_addr, a, b], &[])
        .expect("mint");
    let config = NegotiatedChannel::default().connection_config();
    net.clients[0]
        .world_mut()
        .write_message(MatchmakingConnect::secure(token, config));
    net.run_until(500, |n| {
        state(&n.clients[0]) == NegotiatedClientState::Idle && n.connected_at(2) == 1
    });
    assert!(failover(&net.clients[0]).is_none(), "replaced");
    assert_eq!(net.connected_at(0), 0, "A heard the client go");
    // C goes silent: the connection is lost, and nothing fails over to A or B
    net.relays[2].1 = false;
    net.run(2 * failover_bound(TIMEOUT));
    let c = &net.clients[0];
    assert_eq!(state(c), NegotiatedClientState::Disconnected);
    assert!(seen(c).failovers.is_empty());
    assert_eq!(seen(c).welcomes.len(), 2, "A's welcome and C's");
    assert_eq!((net.connected_at(0), net.connected_at(1)), (0, 0));
}

#[test]
fn two_clients_search_on_through_the_second_relay_and_pair() {
    let (mut net, a, b, _) = two_relays_and_clients_on_a(&[21, 22]);
    // 21 searches alone on A: its request is open there
    net.clients[0].world_mut().write_message(NegotiatedSearch {
        category: "duel".into(),
    });
    net.run_until(200, |n| {
        state(&n.clients[0]) == NegotiatedClientState::Requesting
    });
    let first_request = status(&net.clients[0]).request.expect("a request");
    net.run(5);
    assert!(
        net.relays[0]
            .0
            .world()
            .resource::<NegotiatedRelayState>()
            .store()
            .contains(first_request)
    );

    // A goes silent; both move to B, and 21 goes on with its search there
    net.relays[0].1 = false;
    net.run_until(failover_bound(TIMEOUT) + 100, |n| {
        idle_at(&n.clients[1], b, 2)
            && state(&n.clients[0]) == NegotiatedClientState::Requesting
            && failover(&n.clients[0]).and_then(MatchmakingFailover::current_server) == Some(b)
    });
    net.clients[1].world_mut().write_message(NegotiatedSearch {
        category: "duel".into(),
    });
    net.run_until(1000, |n| {
        n.clients.iter().all(|c| status(c).found.is_some())
    });
    let x = status(&net.clients[0]).found.clone().unwrap();
    let y = status(&net.clients[1]).found.clone().unwrap();
    assert_eq!((x.me, x.other), (21, 22));
    assert_eq!((y.me, y.other), (22, 21));
    assert_eq!((x.request, x.bid, x.accept), (y.request, y.bid, y.accept));
    assert_ne!(x.role, y.role);
    assert_ne!(x.request, first_request, "a new request, on B");
    let store = net.relays[1]
        .0
        .world()
        .resource::<NegotiatedRelayState>()
        .store();
    assert!(store.contains(x.request) && store.contains(x.bid) && store.contains(x.accept));
    for c in &net.clients {
        assert_eq!(failover(c).unwrap().failovers(), 1);
        assert_eq!(seen(c).failovers[0].from, a);
    }
}

#[test]
fn a_client_comes_back_to_a_relay_it_used_before_with_the_same_token() {
    let (mut net, a, b, _) = two_relays_and_clients_on_a(&[31]);
    net.relays[0].1 = false;
    net.run_until(failover_bound(TIMEOUT), |n| idle_at(&n.clients[0], b, 2));
    // A is back (and drops the connection it still held once its own timeout passed)
    net.relays[0].1 = true;
    net.run_until(updates(TIMEOUT) + 50, |n| n.connected_at(0) == 0);
    // B goes silent: round the list, back to A, with the same token (netcode refuses a
    // token it saw from another address: the client comes from the same port)
    net.relays[1].1 = false;
    net.run_until(failover_bound(TIMEOUT), |n| idle_at(&n.clients[0], a, 3));
    let c = &net.clients[0];
    assert_eq!(failover(c).unwrap().failovers(), 2);
    assert_eq!(seen(c).welcomes, vec![31, 31, 31]);
    let hops: Vec<_> = seen(c).failovers.iter().map(|f| (f.from, f.to)).collect();
    assert_eq!(hops, vec![(a, b), (b, a)]);
    assert_eq!(net.connected_at(0), 1);
}

#[test]
fn a_failover_inserted_while_running_connects_and_moves_on_when_asked() {
    let (backend, key) = backend();
    let (relay_a, a) = relay(Some(&key));
    let (relay_b, b) = relay(Some(&key));
    // a game at its menu: no connection yet
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP))
        .add_plugins(NegotiatedClientPlugin::default())
        .init_resource::<Seen>()
        .add_systems(Update, record);
    finish_plugins(&mut app);
    let mut net = Net {
        relays: vec![(relay_a, true), (relay_b, true)],
        clients: vec![app],
    };
    net.run(10);
    assert_eq!(state(&net.clients[0]), NegotiatedClientState::Disconnected);
    // Find match: the game inserts the failover (as `Commands::insert_resource` would)
    let failover_list = secure(&backend, 41, &[a, b]);
    net.clients[0].world_mut().insert_resource(failover_list);
    net.run_until(500, |n| idle_at(&n.clients[0], a, 1));
    // the relay says it is closing, say: move on now, not after a timeout
    net.clients[0]
        .world_mut()
        .resource_mut::<MatchmakingFailover>()
        .fail_over_now();
    let took = net.run_until(100, |n| idle_at(&n.clients[0], b, 2));
    assert!(took < updates(TIMEOUT), "at once ({took} updates)");
    assert_eq!(net.connected_at(0), 0, "A was told the client left");
    let c = &net.clients[0];
    assert_eq!(seen(c).welcomes, vec![41, 41]);
    assert_eq!(failover(c).unwrap().failovers(), 1);
}
