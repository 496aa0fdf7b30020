//! Property test over the real plugins: random joins, leaves, disconnects, stalled links
//! and misbehaving clients, with the server's invariants checked after every frame:
//! a player is never in two matches, every ticket and location agree, no lobby outlives
//! its match's rollback, and a player re-queued by a rollback is really back in the queue.

use std::collections::HashMap;
use std::time::Duration;

use bevy::prelude::*;
use bevy_atomic_matchmaking::atomic::testing::MatchmakingTestHarness;
use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::shared::harness::Recorded;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

#[derive(Debug, Clone)]
enum Op {
    Join(usize, u8),
    Leave(usize),
    LeaveLobby(usize),
    Disconnect(usize),
    Stall(usize, bool),
    SlowPongs(usize),
    NoAcks(usize),
    Run(u16),
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..n, 0u8..2).prop_map(|(p, c)| Op::Join(p, c)),
        1 => (0..n).prop_map(Op::Leave),
        1 => (0..n).prop_map(Op::LeaveLobby),
        1 => (0..n).prop_map(Op::Disconnect),
        1 => (0..n, any::<bool>()).prop_map(|(p, up)| Op::Stall(p, up)),
        1 => (0..n).prop_map(Op::SlowPongs),
        1 => (0..n).prop_map(Op::NoAcks),
        4 => (1u16..150).prop_map(Op::Run),
    ]
}

fn check(h: &mut MatchmakingTestHarness, requeued_seen: &mut usize) -> Result<(), TestCaseError> {
    let world = h.server.world_mut();
    let matches: Vec<(Entity, Vec<PlayerId>, Option<Entity>)> = world
        .query::<(Entity, &MatchmakingMatch)>()
        .iter(world)
        .map(|(e, m)| (e, m.players().collect(), m.lobby()))
        .collect();
    let lobbies: Vec<(Entity, MatchmakingLobby)> = world
        .query::<(Entity, &MatchmakingLobby)>()
        .iter(world)
        .map(|(e, l)| (e, l.clone()))
        .collect();
    let world: &World = world;
    let state = world.resource::<MatchmakingServerState>();
    let stats = world.resource::<MatchmakingServerStats>();

    // a player is in at most one match or lobby, and its location says which
    let mut seen: HashMap<PlayerId, Entity> = HashMap::new();
    for (entity, players, _) in &matches {
        for p in players {
            prop_assert!(
                seen.insert(*p, *entity).is_none(),
                "player {p} in two matches"
            );
            if let Some(location) = state.location(*p) {
                prop_assert_eq!(location, MatchmakingPlayerLocation::Matching(*entity));
            }
        }
    }
    for (entity, lobby) in &lobbies {
        if lobby.committed {
            for p in &lobby.members {
                prop_assert!(
                    seen.insert(*p, *entity).is_none(),
                    "player {p} in a match and a lobby"
                );
                prop_assert_eq!(
                    state.location(*p),
                    Some(MatchmakingPlayerLocation::InLobby(*entity))
                );
            }
        } else {
            // an uncommitted lobby belongs to a match still in phase 2
            prop_assert!(
                matches.iter().any(|(_, _, l)| *l == Some(*entity)),
                "lobby {} outlived its match",
                lobby.code
            );
        }
        prop_assert_eq!(state.lobby(lobby.lobby_id), Some(*entity));
    }
    prop_assert_eq!(stats.lobbies_open, lobbies.len());
    prop_assert_eq!(stats.matches_in_flight, matches.len());
    // tickets and locations agree
    let queue = state.queue();
    prop_assert_eq!(queue.total(), stats.total_queued());
    for c in &h.clients {
        let location = state.location(c.id);
        prop_assert_eq!(
            queue.contains(&c.id),
            location == Some(MatchmakingPlayerLocation::Queued),
            "player {} ticket vs location {:?}",
            c.id,
            location
        );
    }
    // everyone a rollback re-queued is queued (or already taken into the next match),
    // unless it left or disconnected since
    let outcomes = world.resource::<Recorded<MatchmakingOutcome>>().messages();
    for o in &outcomes[*requeued_seen..] {
        for p in &o.requeued {
            let location = state.location(*p);
            prop_assert!(
                matches!(
                    location,
                    Some(
                        MatchmakingPlayerLocation::Queued | MatchmakingPlayerLocation::Matching(_)
                    )
                ),
                "re-queued player {p} is at {location:?}"
            );
        }
    }
    *requeued_seen = outcomes.len();
    Ok(())
}

// regressions beside this file (proptest's default would look for them in
// tests/proptest-regressions/, since this binary's directory has a main.rs)
proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn server_invariants_hold(ops in proptest::collection::vec(op(6), 1..40), group in 2usize..4) {
        let mut h = MatchmakingTestHarness::new(MatchmakingServerSettings {
            players_per_match: group,
            ..Default::default()
        });
        let players = h.add_clients(6);
        let mut requeued_seen = 0;
        for op in ops {
            match op {
                Op::Join(p, c) => h.join(players[p], if c == 0 { "a" } else { "b" }),
                Op::Leave(p) => h.send(players[p], MatchmakingLeaveQueue),
                Op::LeaveLobby(p) => h.send(players[p], MatchmakingLeaveLobby),
                Op::Disconnect(p) => h.disconnect(players[p]),
                Op::Stall(p, up) => {
                    if h.server_state().location(players[p]).is_some() {
                        h.set_link(players[p], up)
                    }
                }
                Op::SlowPongs(p) => {
                    h.client(players[p]).world_mut().resource_mut::<MatchmakingClientFaults>().pong_delay =
                        Duration::from_millis(700)
                }
                Op::NoAcks(p) => {
                    h.client(players[p]).world_mut().resource_mut::<MatchmakingClientFaults>().acknowledge_proposals = false
                }
                Op::Run(frames) => {
                    for _ in 0..frames {
                        h.update();
                        check(&mut h, &mut requeued_seen)?;
                    }
                }
            }
            h.update();
            check(&mut h, &mut requeued_seen)?;
        }
        // restore every link and let everything in flight finish
        for p in &players {
            if h.server_state().location(*p).is_some() {
                h.set_link(*p, true);
            }
        }
        // worst case: a match formed on the last frame needs 2 s + 3 x (2 s + 100 ms)
        for _ in 0..(8_500 / h.step.as_millis()) {
            h.update();
            check(&mut h, &mut requeued_seen)?;
        }
        prop_assert_eq!(h.stats().matches_in_flight, 0);
    }
}
