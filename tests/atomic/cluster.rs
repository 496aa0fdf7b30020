//! Atomic matchmaking across the nodes of a cluster, on the in-memory store: the
//! simulation of `testing::cluster_sim` (nodes killed, stalled past their lease and
//! restarted, players that drop and come back under the same id, inbox messages delivered
//! twice, the store restarted empty), its guarantees checked at every step, on many seeds.

use bevy_atomic_matchmaking::atomic::core::store::AtomicMemoryStore;
use bevy_atomic_matchmaking::testing::cluster_sim::{
    AtomicClusterSimReport, AtomicClusterSimSettings, run_cluster_sim,
};

fn forget(store: &mut AtomicMemoryStore) {
    store.forget_everything();
}

fn run(seed: u64, settings: AtomicClusterSimSettings) -> AtomicClusterSimReport {
    let mut store = AtomicMemoryStore::new();
    match run_cluster_sim(&mut store, &mut forget, seed, settings) {
        Ok(report) => report,
        Err(violations) => panic!(
            "seed {seed}: {} violations, first ones:\n{}",
            violations.len(),
            violations
                .iter()
                .take(12)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[test]
fn a_quiet_cluster_commits_across_nodes_and_drops_only_the_unhealthy() {
    let settings = AtomicClusterSimSettings {
        faults: false,
        duplicate: 0.0,
        ..Default::default()
    };
    let report = run(7, settings);
    assert!(report.commits >= 50, "{report:?}");
    assert_eq!(report.lease_losses, 0, "{report:?}");
    assert_eq!(report.duplicated, 0, "{report:?}");
    // every cancellation that dropped someone dropped an unhealthy player (the run checks
    // it), and some did: the 700 ms players are in the mix
    assert!(report.dropped > 0, "{report:?}");
}

#[test]
fn a_cluster_under_faults_keeps_every_guarantee_on_every_seed() {
    // more seeds: CLUSTER_SEEDS=500 (scripts/long_properties.sh)
    let seeds: u64 = std::env::var("CLUSTER_SEEDS").map_or(12, |s| s.parse().unwrap());
    let mut total = AtomicClusterSimReport::default();
    for seed in 0..seeds {
        let r = run(seed, AtomicClusterSimSettings::default());
        total.commits += r.commits;
        total.cancelled += r.cancelled;
        total.deaths += r.deaths;
        total.stalls += r.stalls;
        total.lease_losses += r.lease_losses;
        total.disconnects += r.disconnects;
        total.restarts += r.restarts;
        total.duplicated += r.duplicated;
        total.posted += r.posted;
        total.dropped += r.dropped;
        total.store_refused += r.store_refused;
        total.store_replies_lost += r.store_replies_lost;
    }
    eprintln!("{seeds} seeds: {total:?}");
    // the seeds exercised every fault, and matches still committed
    assert!(total.commits >= 200, "{total:?}");
    assert!(total.deaths >= 3, "{total:?}");
    assert!(total.stalls >= 3, "{total:?}");
    assert!(total.lease_losses >= 3, "{total:?}");
    assert!(total.disconnects >= 100, "{total:?}");
    assert!(total.restarts >= 1, "{total:?}");
    assert!(total.duplicated >= 50, "{total:?}");
    // store calls that failed, before reaching the store or with their reply lost
    assert!(total.store_refused >= 100, "{total:?}");
    assert!(total.store_replies_lost >= 100, "{total:?}");
}

#[test]
#[ignore = "debugging aid: CLUSTER_SEED=.. CLUSTER_TRACE=player"]
fn trace_one_seed() {
    let seed = std::env::var("CLUSTER_SEED").unwrap().parse().unwrap();
    let trace = std::env::var("CLUSTER_TRACE")
        .ok()
        .map(|t| t.parse().unwrap());
    let settings = AtomicClusterSimSettings {
        trace,
        ..Default::default()
    };
    run(seed, settings);
}

mod scenarios {
    //! Single scenarios of the cluster core, on two nodes, step by step.

    use std::time::Duration;

    use bevy_atomic_matchmaking::atomic::core::cluster::{
        AtomicClusterNode, AtomicClusterOutput, AtomicClusterSettings, AtomicLocalSeat,
        AtomicMemoryInbox,
    };
    use bevy_atomic_matchmaking::atomic::core::protocol::{AtomicErrorKind, AtomicServerMessage};
    use bevy_atomic_matchmaking::atomic::core::store::{
        AtomicMemoryStore, AtomicStore, AtomicStoreSeat,
    };

    const STEP: Duration = Duration::from_millis(20);

    struct Two {
        store: AtomicMemoryStore,
        inbox: AtomicMemoryInbox,
        nodes: [Option<AtomicClusterNode>; 2],
        now: Duration,
    }

    impl Two {
        fn new() -> Self {
            let node = |i: u64| {
                let settings = AtomicClusterSettings::new(format!("node-{i}"));
                Some(AtomicClusterNode::new(settings, i))
            };
            let mut two = Self {
                store: AtomicMemoryStore::new(),
                inbox: AtomicMemoryInbox::new(),
                nodes: [node(0), node(1)],
                now: Duration::ZERO,
            };
            two.poll(1);
            two.poll(0);
            two
        }

        fn node(&mut self, n: usize) -> &mut AtomicClusterNode {
            self.nodes[n].as_mut().expect("a live node")
        }

        fn poll(&mut self, n: usize) -> Vec<AtomicClusterOutput> {
            let (now, store, inbox) = (self.now, &mut self.store, &mut self.inbox);
            let node = self.nodes[n].as_mut().expect("a live node");
            node.poll(now, store, inbox);
            node.take_outputs()
        }

        fn connect_and_join(&mut self, n: usize, player: u64) -> Vec<AtomicClusterOutput> {
            let (now, store, inbox) = (self.now, &mut self.store, &mut self.inbox);
            let node = self.nodes[n].as_mut().expect("a live node");
            node.connect(player, store, inbox, now);
            node.join(player, "duel", store, now);
            node.take_outputs()
        }

        fn step(&mut self) {
            self.now += STEP;
            self.store.set_clock(self.now);
        }
    }

    fn to(player: u64, outputs: &[AtomicClusterOutput]) -> Vec<AtomicServerMessage> {
        outputs
            .iter()
            .filter_map(|o| match o {
                AtomicClusterOutput::ToPlayer(p, m) if *p == player => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_player_connected_to_two_nodes_is_refused_on_the_second() {
        let mut two = Two::new();
        let first = two.connect_and_join(0, 7);
        assert!(matches!(
            to(7, &first)[..],
            [AtomicServerMessage::QueueJoined { .. }]
        ));
        let second = two.connect_and_join(1, 7);
        match &to(7, &second)[..] {
            [AtomicServerMessage::Error { kind, message }] => {
                assert_eq!(*kind, AtomicErrorKind::AlreadyQueued);
                assert!(message.contains("node-0"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(two.node(1).seat(7), Some(&AtomicLocalSeat::Idle));
    }

    #[test]
    fn a_dead_coordinators_remote_player_is_requeued_within_2_s_of_its_lease_expiring() {
        let mut two = Two::new();
        two.connect_and_join(0, 1);
        two.connect_and_join(1, 2);
        let since = two.store.player(1).unwrap().unwrap().enqueued_at_us;
        // node-1 claims the pair and pings both; then it dies mid-commit
        two.step();
        two.poll(1);
        assert_eq!(two.node(1).coordinating().count(), 1);
        let lease_renewed = two.now;
        two.nodes[1] = None;
        let mut pinged = false;
        let mut requeued_at = None;
        while two.now < Duration::from_secs(10) && requeued_at.is_none() {
            two.step();
            let outputs = two.poll(0);
            for message in to(1, &outputs) {
                match message {
                    AtomicServerMessage::Ping { nonce } => {
                        pinged = true;
                        let (now, inbox) = (two.now, &mut two.inbox);
                        two.nodes[0].as_mut().unwrap().pong(1, nonce, now, inbox);
                    }
                    AtomicServerMessage::MatchCancelled { requeued, .. } => {
                        assert!(requeued, "a healthy player is put back in front");
                        requeued_at = Some(two.now);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(
            pinged,
            "the coordinator's ping reached the player through its home"
        );
        let requeued_at = requeued_at.expect("player 1 told it is back in the queue");
        // node-1's lease lived 3 s from its last renewal
        let expired = lease_renewed + Duration::from_secs(3);
        assert!(
            requeued_at <= expired + Duration::from_secs(2),
            "{requeued_at:?}"
        );
        let record = two.store.player(1).unwrap().unwrap();
        assert!(
            matches!(record.seat, AtomicStoreSeat::Queued { .. }),
            "{record:?}"
        );
        assert_eq!(record.enqueued_at_us, since, "it keeps its seniority");
        assert!(matches!(
            two.node(0).seat(1),
            Some(AtomicLocalSeat::Queued { .. })
        ));
    }
}

mod partition {
    //! A node cut off from its store for longer than its lease, then reconnected.

    use std::time::Duration;

    use bevy_atomic_matchmaking::atomic::core::cluster::{
        AtomicClusterNode, AtomicClusterOutput, AtomicClusterSettings, AtomicLocalSeat,
        AtomicMemoryInbox,
    };
    use bevy_atomic_matchmaking::atomic::core::protocol::{AtomicErrorKind, AtomicServerMessage};
    use bevy_atomic_matchmaking::atomic::core::store::{AtomicMemoryStore, AtomicStore};
    use bevy_atomic_matchmaking::testing::partitioned_store::AtomicPartitionedStore;

    const STEP: Duration = Duration::from_millis(20);

    struct One {
        store: AtomicPartitionedStore<AtomicMemoryStore>,
        inbox: AtomicMemoryInbox,
        node: AtomicClusterNode,
        now: Duration,
        /// Every output so far.
        seen: Vec<AtomicClusterOutput>,
    }

    impl One {
        fn new(group_size: usize) -> Self {
            let mut settings = AtomicClusterSettings::new("a");
            settings.group_size = group_size;
            let mut one = Self {
                store: AtomicPartitionedStore::new(AtomicMemoryStore::new()),
                inbox: AtomicMemoryInbox::new(),
                node: AtomicClusterNode::new(settings, 3),
                now: Duration::ZERO,
                seen: Vec::new(),
            };
            one.run(STEP);
            one
        }

        fn join(&mut self, player: u64) {
            let (store, inbox, now) = (&mut self.store, &mut self.inbox, self.now);
            self.node.connect(player, store, inbox, now);
            self.node.join(player, "duel", store, now);
            self.take();
        }

        /// Runs for `length`; players answer every ping and proposal at once.
        fn run(&mut self, length: Duration) {
            let end = self.now + length;
            while self.now < end {
                self.now += STEP;
                self.store.inner.set_clock(self.now);
                let (store, inbox) = (&mut self.store, &mut self.inbox);
                self.node.poll(self.now, store, inbox);
                self.take();
            }
        }

        fn take(&mut self) {
            for output in self.node.take_outputs() {
                if let AtomicClusterOutput::ToPlayer(player, message) = &output {
                    let (store, inbox, now) = (&mut self.store, &mut self.inbox, self.now);
                    match message {
                        AtomicServerMessage::Ping { nonce } => {
                            self.node.pong(*player, *nonce, now, inbox)
                        }
                        AtomicServerMessage::MatchProposed { match_id, .. } => {
                            self.node.acknowledge(*player, *match_id, inbox)
                        }
                        _ => {}
                    }
                    let _ = store;
                }
                self.seen.push(output);
            }
        }

        fn told(&self, player: u64) -> Vec<&AtomicServerMessage> {
            self.seen
                .iter()
                .filter_map(|o| match o {
                    AtomicClusterOutput::ToPlayer(p, m) if *p == player => Some(m),
                    _ => None,
                })
                .collect()
        }

        fn since(&mut self, player: u64) -> u64 {
            self.store
                .inner
                .player(player)
                .unwrap()
                .unwrap()
                .enqueued_at_us
        }
    }

    #[test]
    fn a_cut_off_node_refuses_joins_then_queues_its_players_again_with_their_seniority() {
        let mut one = One::new(3);
        one.join(1);
        one.join(2);
        let (since1, since2) = (one.since(1), one.since(2));
        one.store.down = true;
        one.join(3);
        let refused = one.told(3);
        assert!(
            matches!(
                refused.last(),
                Some(AtomicServerMessage::Error {
                    kind: AtomicErrorKind::StoreUnavailable,
                    ..
                })
            ),
            "{refused:?}"
        );
        // longer than the lease: the node takes it for lost
        one.run(Duration::from_secs(5));
        assert!(
            one.seen
                .iter()
                .any(|o| matches!(o, AtomicClusterOutput::StoreUnavailable(_)))
        );
        assert!(
            one.seen
                .iter()
                .any(|o| matches!(o, AtomicClusterOutput::LeaseLost))
        );
        assert!(one.node.lease().is_none());
        one.store.down = false;
        one.run(Duration::from_millis(200));
        assert!(
            one.node.lease().is_some(),
            "a new lease once the store is back"
        );
        // its waiting players are queued again from its own memory, with their seniority
        assert_eq!(one.since(1), since1);
        assert_eq!(one.since(2), since2);
        assert!(matches!(
            one.node.seat(1),
            Some(AtomicLocalSeat::Queued { .. })
        ));
        // and the cluster goes on: the third player joins and the three are matched
        one.join(3);
        one.run(Duration::from_secs(2));
        for p in 1..=3 {
            assert!(
                one.told(p)
                    .iter()
                    .any(|m| matches!(m, AtomicServerMessage::MatchFound { .. })),
                "player {p}: {:?}",
                one.told(p)
            );
        }
    }

    #[test]
    fn a_match_in_flight_when_the_store_goes_away_rolls_back_and_its_players_queue_again() {
        let mut one = One::new(2);
        one.join(1);
        one.join(2);
        let (since1, since2) = (one.since(1), one.since(2));
        // the match is claimed and pinged, then the store goes away before its commit point
        one.run(STEP);
        assert!(
            one.told(1)
                .iter()
                .any(|m| matches!(m, AtomicServerMessage::Ping { .. }))
        );
        one.store.down = true;
        one.run(Duration::from_secs(5));
        for p in [1, 2] {
            let cancelled = one.told(p).into_iter().any(|m| {
                matches!(
                    m,
                    AtomicServerMessage::MatchCancelled { requeued: true, .. }
                )
            });
            assert!(
                cancelled,
                "player {p} told its match is off: {:?}",
                one.told(p)
            );
        }
        one.store.down = false;
        one.run(Duration::from_millis(100));
        // both queued again with their seniority, and matched again (the first match never
        // reached its commit point, so any match found is a new one)
        for (p, since) in [(1, since1), (2, since2)] {
            let record = one.store.inner.player(p).unwrap().unwrap();
            assert_eq!(record.enqueued_at_us, since, "player {p}");
        }
        one.run(Duration::from_secs(2));
        for p in [1, 2] {
            let found = one
                .told(p)
                .into_iter()
                .any(|m| matches!(m, AtomicServerMessage::MatchFound { .. }));
            assert!(found, "player {p} matched again: {:?}", one.told(p));
        }
    }
}
