//! The promise under an adversarial network: whatever stalls (longer than every timeout)
//! and short connection losses hit whichever clients, at random moments or right after
//! they bid or accept, and whoever cancels and searches again, every match is mutual and
//! nobody is matched twice. Deterministic per seed: the network is simulated.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use bevy_atomic_matchmaking::shared::player::PlayerId;

use crate::sim::{CATEGORY, Cue, Hit, Micros, Sim, check_mutual, machine};

/// When a trouble strikes a client.
#[derive(Debug, Clone, Copy)]
enum When {
    /// At this many milliseconds into the run.
    At(u64),
    /// This many milliseconds after its next bid.
    AfterBid(u64),
    /// This many milliseconds after its next accept.
    AfterAccept(u64),
}

/// Something that happens to one client.
#[derive(Debug, Clone, Copy)]
enum Trouble {
    /// Its link delivers nothing either way for this long (messages wait).
    Stall { when: When, ms: u64 },
    /// Its connection closes for this long (messages in flight are lost).
    Close { when: When, ms: u64 },
    /// The game cancels the search, and searches again this much later.
    CancelAndSearch { at_ms: u64, again_ms: u64 },
}

fn arb_when() -> impl Strategy<Value = When> {
    prop_oneof![
        (0u64..12_000).prop_map(When::At),
        (0u64..300).prop_map(When::AfterBid),
        (0u64..300).prop_map(When::AfterAccept),
    ]
}

fn arb_trouble() -> impl Strategy<Value = (PlayerId, Trouble)> {
    let trouble = prop_oneof![
        // far longer than the bid timeout, and than a frame
        3 => (arb_when(), 0u64..6000).prop_map(|(when, ms)| Trouble::Stall { when, ms }),
        // short enough that the request's frame outlives it (see the machine docs)
        2 => (arb_when(), 0u64..800).prop_map(|(when, ms)| Trouble::Close { when, ms }),
        2 => (0u64..12_000, 0u64..1500)
            .prop_map(|(at_ms, again_ms)| Trouble::CancelAndSearch { at_ms, again_ms }),
    ];
    (1u64..9, trouble)
}

const FRAME_MS: u64 = 2000;
const BID_TIMEOUT_MS: u64 = 500;
const STEP: Micros = 5_000;

/// Keeps the troubles of clients up to `n`. A client whose connection closes has no
/// stalls and closes once: a stall just before a close, or closes in a row, could keep
/// it away until the request's frame is dropped, the one case the relay cannot settle
/// (see the machine docs).
fn sane(troubles: Vec<(PlayerId, Trouble)>, n: u64) -> Vec<(PlayerId, Trouble)> {
    let mut closes: BTreeMap<PlayerId, usize> = BTreeMap::new();
    for (i, (id, t)) in troubles.iter().enumerate() {
        if matches!(t, Trouble::Close { .. }) {
            closes.entry(*id).or_insert(i);
        }
    }
    troubles
        .into_iter()
        .enumerate()
        .filter(|(i, (id, t))| {
            *id <= n
                && match (t, closes.get(id)) {
                    (_, None) | (Trouble::CancelAndSearch { .. }, _) => true,
                    (Trouble::Close { .. }, Some(first)) => i == first,
                    (Trouble::Stall { .. }, Some(_)) => false,
                }
        })
        .map(|(_, t)| t)
        .collect()
}

/// Schedules or arms a hit.
fn plan(sim: &mut Sim, id: PlayerId, when: When, hit: Hit, start: Micros) {
    match when {
        When::At(ms) => sim.schedule(start + ms * 1000, id, hit),
        When::AfterBid(ms) => sim.arm(id, Cue::Bid, ms * 1000, hit),
        When::AfterAccept(ms) => sim.arm(id, Cue::Accept, ms * 1000, hit),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::cases::cases(64),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_match_is_mutual_whatever_the_network_does(
        n in 2u64..9,
        seed in any::<u64>(),
        max_delay_ms in 0u64..80,
        troubles in proptest::collection::vec(arb_trouble(), 0..24),
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut sim = Sim::new(FRAME_MS, seed, max_delay_ms * 1000);
        let start: Micros = 50_000_000;
        // searches to start, and cancels: (time, client, cancel first)
        let mut actions: Vec<(Micros, PlayerId, Option<Micros>)> = Vec::new();
        for id in 1..=n {
            let error = rng.i64(-150_000..=150_000);
            sim.add(machine(id, FRAME_MS, BID_TIMEOUT_MS, seed.wrapping_add(id)), error, start);
            actions.push((start + rng.u64(0..3_000_000), id, None));
        }
        for (id, trouble) in sane(troubles, n) {
            match trouble {
                Trouble::Stall { when, ms } => plan(&mut sim, id, when, Hit::Stall(ms * 1000), start),
                Trouble::Close { when, ms } => {
                    plan(&mut sim, id, when, Hit::Close(ms * 1000 + STEP), start);
                }
                Trouble::CancelAndSearch { at_ms, again_ms } => {
                    actions.push((start + at_ms * 1000, id, Some(again_ms * 1000)));
                }
            }
        }
        let end = start + 25_000_000;
        let mut now = start;
        while now < end {
            let due: Vec<_> = actions.iter().copied().filter(|(at, _, _)| *at <= now).collect();
            actions.retain(|(at, _, _)| *at > now);
            for (_, id, cancel) in due {
                let m = &sim.machines[&id];
                let searching = m.is_searching() && !m.is_cancelling();
                match cancel {
                    Some(again) if searching => {
                        sim.call(id, now, |m, t| m.cancel(t));
                        actions.push((now + again, id, None));
                    }
                    None if !m.is_searching() && !sim.matches.contains_key(&id) => {
                        sim.call(id, now, |m, t| m.search(CATEGORY, t));
                    }
                    _ => {}
                }
            }
            sim.step(now);
            now += STEP;
        }
        check_mutual(&sim.matches)?;
    }
}
