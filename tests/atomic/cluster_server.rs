//! Server apps as nodes of one cluster (`AtomicClusterServerPlugin` on a shared in-memory
//! backend), with the client plugin over renet's local connections and manual time: a
//! match across two nodes commits and both players see the same lobby, a player cannot
//! queue through two nodes, and a node that shuts down leaves nothing in the store.

use bevy_atomic_matchmaking::atomic::client::{AtomicClientState, AtomicMatchFound};
use bevy_atomic_matchmaking::atomic::cluster::{AtomicClusterBackend, AtomicClusterServer};
use bevy_atomic_matchmaking::atomic::core::store::AtomicStore;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

fn both(a: &mut AtomicTestHarness, b: &mut AtomicTestHarness, frames: usize) {
    for _ in 0..frames {
        a.update();
        b.update();
    }
}

fn found(h: &AtomicTestHarness, player: u64) -> Vec<AtomicMatchFound> {
    h.recorded::<AtomicMatchFound>(player).to_vec()
}

#[test]
fn a_match_across_two_nodes_commits_and_both_players_see_one_lobby() {
    let backend = AtomicClusterBackend::memory();
    let mut a = AtomicTestHarness::cluster_node(backend.clone(), "node-a", 1);
    let mut b = AtomicTestHarness::cluster_node(backend.clone(), "node-b", 1001);
    let pa = a.add_clients(1)[0];
    let pb = b.add_clients(1)[0];
    both(&mut a, &mut b, 5);
    a.join(pa, "duel");
    both(&mut a, &mut b, 5);
    b.join(pb, "duel");
    for _ in 0..400 {
        both(&mut a, &mut b, 1);
        if !found(&a, pa).is_empty() && !found(&b, pb).is_empty() {
            break;
        }
    }
    let (fa, fb) = (found(&a, pa), found(&b, pb));
    assert_eq!((fa.len(), fb.len()), (1, 1), "{fa:?} {fb:?}");
    assert_eq!(fa[0].match_id, fb[0].match_id);
    assert_eq!(fa[0].lobby_id, fb[0].lobby_id);
    assert_eq!(fa[0].lobby_code, fb[0].lobby_code);
    let mut members: Vec<u64> = fa[0].others.iter().map(|p| p.player).collect();
    members.push(fa[0].me.player);
    members.sort_unstable();
    assert_eq!(members, vec![pa, pb]);
    assert_eq!(a.client_state(pa), AtomicClientState::Matched);
    assert_eq!(b.client_state(pb), AtomicClientState::Matched);
    // exactly one node coordinated and committed it
    let committed = |h: &AtomicTestHarness| {
        h.server_resource::<AtomicClusterServer>()
            .counters
            .committed
    };
    assert_eq!(committed(&a) + committed(&b), 1);
    let AtomicClusterBackend::Memory(shared) = &backend else {
        unreachable!()
    };
    let lobby = shared.lock().unwrap().0.lobby(fa[0].lobby_id).unwrap();
    assert!(lobby.is_some_and(|l| l.members.len() == 2));
}

#[test]
fn a_player_queued_through_one_node_is_refused_by_another() {
    let backend = AtomicClusterBackend::memory();
    let mut a = AtomicTestHarness::cluster_node(backend.clone(), "node-a", 1);
    let mut b = AtomicTestHarness::cluster_node(backend.clone(), "node-b", 1);
    let pa = a.add_clients(1)[0];
    let pb = b.add_clients(1)[0];
    assert_eq!(pa, pb, "the same player id on both nodes");
    a.join(pa, "duel");
    both(&mut a, &mut b, 5);
    b.join(pb, "duel");
    both(&mut a, &mut b, 5);
    assert_eq!(a.client_state(pa), AtomicClientState::Queued);
    assert_ne!(b.client_state(pb), AtomicClientState::Queued);
    let errors = b.recorded::<bevy_atomic_matchmaking::atomic::client::AtomicClientError>(pb);
    assert!(
        errors.iter().any(|e| e.message.contains("node-a")),
        "{errors:?}"
    );
}

#[test]
fn a_node_that_shuts_down_leaves_nothing_in_the_store() {
    let backend = AtomicClusterBackend::memory();
    let mut a = AtomicTestHarness::cluster_node(backend.clone(), "node-a", 1);
    let players = a.add_clients(3);
    for p in &players {
        a.join(*p, "duel");
    }
    a.run(200);
    let AtomicClusterBackend::Memory(shared) = &backend else {
        unreachable!()
    };
    assert!(shared.lock().unwrap().0.residue().unwrap() > 0);
    drop(a);
    assert_eq!(shared.lock().unwrap().0.residue().unwrap(), 0);
}

#[test]
fn a_closing_node_tells_its_clients_to_retry_elsewhere_and_closes_their_connections() {
    use bevy_atomic_matchmaking::atomic::client::AtomicServerClosing;
    use bevy_atomic_matchmaking::atomic::cluster::AtomicClusterClose;
    let backend = AtomicClusterBackend::memory();
    let mut a = AtomicTestHarness::cluster_node(backend.clone(), "node-a", 1);
    let players = a.add_clients(2);
    a.join(players[0], "duel");
    a.run(10);
    a.server.world_mut().write_message(AtomicClusterClose);
    a.run(30);
    for p in &players {
        let notices = a.recorded::<AtomicServerClosing>(*p);
        assert!(
            notices.iter().any(|n| n.retry_elsewhere),
            "player {p}: {notices:?}"
        );
        assert!(!a.is_connected(*p), "player {p} still connected");
    }
    drop(a);
    let AtomicClusterBackend::Memory(shared) = &backend else {
        unreachable!()
    };
    assert_eq!(shared.lock().unwrap().0.residue().unwrap(), 0);
}
