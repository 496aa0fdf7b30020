//! Queue behaviour through the plugins: one ticket per player, leaving, disconnecting
//! while queued, a full queue, categories kept apart, matches of more than two, and
//! settings changed at run time.

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

use crate::common::harness;

fn last_error(h: &AtomicTestHarness, p: PlayerId) -> AtomicErrorKind {
    h.recorded::<AtomicClientError>(p)
        .last()
        .expect("an error")
        .kind
}

#[test]
fn one_ticket_per_player() {
    let mut h = harness();
    let [a] = h.add_clients(1)[..] else {
        unreachable!()
    };
    h.join(a, "duel");
    h.run(3);
    h.join(a, "duel");
    h.run(3);
    assert_eq!(last_error(&h, a), AtomicErrorKind::AlreadyQueued);
    h.join(a, "ranked");
    h.run(3);
    assert_eq!(last_error(&h, a), AtomicErrorKind::AlreadyQueued);
    assert_eq!(h.stats().total_queued(), 1);
    assert_eq!(h.stats().players_queued.get("ranked"), None);
    assert_eq!(h.client_state(a), AtomicClientState::Queued);
}

#[test]
fn leaving_the_queue() {
    let mut h = harness();
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    h.join(a, "duel");
    h.run(3);
    h.send(a, AtomicLeaveQueue);
    h.run(3);
    assert_eq!(h.client_state(a), AtomicClientState::Idle);
    assert_eq!(h.recorded::<AtomicQueueLeft>(a)[0].category, "duel");
    assert_eq!(h.stats().total_queued(), 0);
    // leaving again is refused clearly
    h.send(a, AtomicLeaveQueue);
    h.run(3);
    assert_eq!(last_error(&h, a), AtomicErrorKind::NotQueued);
    // b alone does not match with the departed a
    h.join(b, "duel");
    h.run(10);
    assert_eq!(h.client_state(b), AtomicClientState::Queued);
    assert_eq!(h.stats().matches_formed, 0);
}

#[test]
fn disconnecting_while_queued_removes_the_ticket() {
    let mut h = harness();
    let [a, b, c] = h.add_clients(3)[..] else {
        unreachable!()
    };
    h.join(a, "duel");
    h.run(3);
    h.disconnect(a);
    h.run(3);
    assert_eq!(h.stats().total_queued(), 0);
    h.join(b, "duel");
    h.run(2);
    h.join(c, "duel");
    h.run_until(50, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    let players: Vec<PlayerId> = h.server_recorded::<AtomicMatchCommitted>()[0]
        .players
        .iter()
        .map(|p| p.player)
        .collect();
    assert_eq!(players, vec![b, c]);
    assert_eq!(h.stats().rollbacks_by_status.len(), 0);
}

#[test]
fn a_full_queue_says_so() {
    let mut h = AtomicTestHarness::new(AtomicServerSettings {
        players_per_match: 3,
        queue_capacity: 2,
        ..Default::default()
    });
    let [a, b, c] = h.add_clients(3)[..] else {
        unreachable!()
    };
    h.join(a, "duel");
    h.join(b, "duel");
    h.run(3);
    h.join(c, "duel");
    h.run(3);
    assert_eq!(last_error(&h, c), AtomicErrorKind::QueueFull);
    assert!(
        h.recorded::<AtomicClientError>(c)[0]
            .message
            .contains("full")
    );
    assert_eq!(h.client_state(c), AtomicClientState::Idle);
    // other categories are not affected
    h.join(c, "other");
    h.run(3);
    assert_eq!(h.client_state(c), AtomicClientState::Queued);
}

#[test]
fn invalid_categories_are_refused() {
    let mut h = harness();
    let [a] = h.add_clients(1)[..] else {
        unreachable!()
    };
    for bad in ["", "has space", &"x".repeat(33), &"y".repeat(5_000)] {
        h.join(a, bad);
        h.run(3);
        assert_eq!(last_error(&h, a), AtomicErrorKind::InvalidCategory);
    }
    assert_eq!(h.client_state(a), AtomicClientState::Idle);
    // the client plugin checks the name as the server would and never sends it: no strike
    assert_eq!(h.server_state().strikes(a), Some(0));
    assert!(h.is_connected(a));
}

#[test]
fn three_categories_are_kept_apart() {
    let mut h = harness();
    let players = h.add_clients(6);
    let categories = ["duel", "ranked", "casual"];
    // interleave: duel, ranked, casual, duel, ranked, casual
    for (i, p) in players.iter().enumerate() {
        h.join(*p, categories[i % 3]);
        h.run(1);
    }
    h.run_until(100, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 3
    });
    for m in h.server_recorded::<AtomicMatchCommitted>() {
        let ids: Vec<PlayerId> = m.players.iter().map(|p| p.player).collect();
        let cat_of = |p: PlayerId| categories[players.iter().position(|x| *x == p).unwrap() % 3];
        assert!(ids.iter().all(|p| cat_of(*p) == m.category), "{m:?}");
    }
    let mut seen: Vec<PlayerId> = h
        .server_recorded::<AtomicMatchCommitted>()
        .iter()
        .flat_map(|m| m.players.iter().map(|p| p.player))
        .collect();
    seen.sort();
    assert_eq!(seen, players, "every player in exactly one match");
}

#[test]
fn a_four_player_match() {
    let mut h = AtomicTestHarness::new(AtomicServerSettings {
        players_per_match: 4,
        ..Default::default()
    });
    let players = h.add_clients(4);
    for p in &players[..3] {
        h.join(*p, "squad");
    }
    h.run(10);
    assert_eq!(h.stats().matches_formed, 0, "three are not enough");
    h.join(players[3], "squad");
    h.run_until(100, |h| {
        players
            .iter()
            .all(|p| h.client_state(*p) == AtomicClientState::Matched)
    });
    let code = h.recorded::<AtomicMatchFound>(players[0])[0]
        .lobby_code
        .clone();
    for p in &players {
        let found = &h.recorded::<AtomicMatchFound>(*p)[0];
        assert_eq!(found.lobby_code, code);
        assert_eq!(found.others.len(), 3);
        assert!(found.others.iter().all(|o| o.player != *p));
    }
    assert_eq!(
        h.server_recorded::<AtomicMatchOutcome>()[0].status,
        AtomicMatchStatus::Success
    );
}

#[test]
fn a_four_player_rollback_names_who_failed_and_requeues_the_rest_in_order() {
    let mut h = AtomicTestHarness::new(AtomicServerSettings {
        players_per_match: 4,
        ..Default::default()
    });
    let players = h.add_clients(4);
    for p in &players {
        h.join(*p, "squad");
        h.run(1);
    }
    h.run_until(20, |h| {
        matches!(
            h.server_state().location(players[0]),
            Some(AtomicPlayerLocation::Matching(_))
        )
    });
    h.disconnect(players[2]);
    h.run_until(300, |h| {
        !h.server_recorded::<AtomicMatchOutcome>().is_empty()
    });
    let o = &h.server_recorded::<AtomicMatchOutcome>()[0];
    assert_eq!(
        o.status,
        AtomicMatchStatus::PlayersDisconnected { indices: vec![2] }
    );
    assert_eq!(o.requeued, vec![players[0], players[1], players[3]]);
    let q = h.server_state().queue().tickets("squad");
    let order: Vec<PlayerId> = q.iter().map(|t| t.player).collect();
    assert_eq!(order, vec![players[0], players[1], players[3]]);
}

#[test]
fn settings_change_at_run_time() {
    let mut h = harness();
    let players = h.add_clients(3);
    h.server
        .world_mut()
        .resource_mut::<AtomicServerSettings>()
        .players_per_match = 3;
    h.join(players[0], "trio");
    h.join(players[1], "trio");
    h.run(10);
    assert_eq!(h.stats().matches_formed, 0, "now three are needed");
    h.join(players[2], "trio");
    h.run_until(100, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    assert_eq!(
        h.server_recorded::<AtomicMatchCommitted>()[0].players.len(),
        3
    );
}

#[test]
fn categories_stop_at_the_limit_whatever_names_clients_send() {
    let mut h = AtomicTestHarness::new(AtomicServerSettings {
        max_categories: 2,
        ..Default::default()
    });
    let [a, b, c] = h.add_clients(3)[..] else {
        unreachable!()
    };
    h.join(a, "one");
    h.join(b, "two");
    h.run(3);
    h.join(c, "three");
    h.run(3);
    assert_eq!(last_error(&h, c), AtomicErrorKind::QueueFull);
    assert!(
        h.recorded::<AtomicClientError>(c)[0]
            .message
            .contains("2 queues open")
    );
    assert_eq!(h.server_state().queue().categories(), 2);
    // an open category still takes players, and is free again once empty
    h.join(c, "one");
    h.run_until(100, |h| {
        h.server_recorded::<AtomicMatchCommitted>().len() == 1
    });
    assert_eq!(h.server_state().queue().categories(), 1);
}
