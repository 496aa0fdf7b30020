//! The fault runs the property tests in [`invariants`](crate::invariants) drive: the
//! operations (player actions, misbehaving clients, link faults, reconnections, long
//! server frames), their strategies, and [`AtomicRun`], which applies them to a harness with
//! the checks after every frame and ends with a bounded drain.

use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;
use bevy_atomic_matchmaking::testing::local_link::{DirectionFaults, LinkFaults};
use proptest::prelude::*;

use crate::invariants::{Checker, Taint};
use crate::wire::Wire;

/// Whether the fault runs reconnect players under the same id (drop the connection, open
/// a new one) at random.
pub const RECONNECTS_ENABLED: bool = true;
/// Whether the fault runs give the server one long frame ([`SERVER_STALL`]) at random.
pub const SERVER_STALLS_ENABLED: bool = false;
/// The length of a stalled server frame.
pub const SERVER_STALL: Duration = Duration::from_millis(600);
/// The longest link stall ([`Op::Hold`]) the fault runs make.
pub const MAX_HOLD_MS: u16 = 1_500;
/// Players in every run.
pub const PLAYERS: usize = 6;

#[derive(Debug, Clone)]
pub enum Op {
    Join(usize, u8),
    Leave(usize),
    LeaveLobby(usize),
    Disconnect(usize),
    /// Stops (`false`) or resumes a link without closing it.
    Stall(usize, bool),
    SlowPongs(usize),
    NoAcks(usize),
    Run(u16),
    /// Sets a link's faults: client to server, server to client.
    Faults(usize, Wire, Wire),
    /// Holds a link's packets for this many milliseconds.
    Hold(usize, u16),
    /// Drops the connection and opens a new one under the same id.
    Reconnect(usize),
    /// One server frame of [`SERVER_STALL`].
    ServerStall,
    /// The server starts draining, giving matches in flight this many milliseconds.
    Drain(u16),
}

/// The operations of the original property test (kept as they were, so that its saved
/// seeds replay the same cases).
pub fn op(n: usize) -> impl Strategy<Value = Op> {
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

fn wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        // a clean but slow or jittery wire: players on it stay healthy
        2 => (0u8..60, 0u8..40, 0u8..30, 0u8..30).prop_map(|(delay, jitter, dup, reorder)| Wire { loss: 0, delay, jitter, dup, reorder }),
        // a lossy one
        1 => (1u8..40, 0u8..80, 0u8..60, 0u8..30, 0u8..30).prop_map(|(loss, delay, jitter, dup, reorder)| Wire { loss, delay, jitter, dup, reorder }),
        1 => Just(Wire::CLEAN),
    ]
}

/// Every operation, faults included.
pub fn fault_op(n: usize) -> impl Strategy<Value = Op> {
    let reconnects = u32::from(RECONNECTS_ENABLED);
    let stalls = u32::from(SERVER_STALLS_ENABLED);
    prop_oneof![
        8 => op(n),
        2 => (0..n, wire(), wire()).prop_map(|(p, up, down)| Op::Faults(p, up, down)),
        1 => (0..n, 50u16..MAX_HOLD_MS).prop_map(|(p, ms)| Op::Hold(p, ms)),
        reconnects => (0..n).prop_map(Op::Reconnect),
        stalls => Just(Op::ServerStall),
        1 => (0u16..6000).prop_map(Op::Drain),
    ]
}

/// Whether a link with these faults keeps a well-behaved player healthy: nothing lost,
/// and a round trip far below the latency limit.
fn keeps_healthy(faults: &LinkFaults) -> bool {
    let round_trip = faults.up.max_latency() + faults.down.max_latency();
    faults.up.loss <= 0.0 && faults.down.loss <= 0.0 && round_trip <= Duration::from_millis(200)
}

/// A harness, its players and the checker, driven by [`Op`]s.
pub struct AtomicRun {
    pub h: AtomicTestHarness,
    pub players: Vec<PlayerId>,
    pub checker: Checker,
}

impl AtomicRun {
    pub fn new(group: usize, seed: u64) -> Self {
        let mut h = AtomicTestHarness::new(AtomicServerSettings {
            players_per_match: group,
            ..Default::default()
        });
        let players = h.add_clients(PLAYERS);
        h.seed_links(seed);
        let checker = Checker::new(&players);
        Self {
            h,
            players,
            checker,
        }
    }

    /// One update, then every check.
    pub fn frame(&mut self) -> Result<(), TestCaseError> {
        self.h.update();
        self.checker.check(&mut self.h)
    }

    pub fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let h = &mut self.h;
        let taint = &mut self.checker.taint;
        match *op {
            Op::Join(p, c) => {
                // a join the server will refuse (already queued, matching or in a lobby)
                // is a strike: enough of them and the player is refused and withdrawn
                if h.server_state().location(self.players[p]) != Some(AtomicPlayerLocation::Idle) {
                    taint.mark(p);
                }
                h.join(self.players[p], if c == 0 { "a" } else { "b" });
            }
            Op::Leave(p) => {
                taint.mark(p);
                h.send(self.players[p], AtomicLeaveQueue);
            }
            Op::LeaveLobby(p) => {
                taint.mark(p);
                h.send(self.players[p], AtomicLeaveLobby);
            }
            Op::Disconnect(p) => {
                taint.new_session(p);
                h.disconnect(self.players[p]);
            }
            Op::Stall(p, up) => {
                if h.server_state().location(self.players[p]).is_some() {
                    h.set_link(self.players[p], up);
                    taint.set(p, Taint::LinkDown, !up);
                }
            }
            Op::SlowPongs(p) => {
                taint.set(p, Taint::Misbehaves, true);
                h.faults(self.players[p]).pong_delay = Duration::from_millis(700);
            }
            Op::NoAcks(p) => {
                taint.set(p, Taint::Misbehaves, true);
                h.faults(self.players[p]).acknowledge_proposals = false;
            }
            Op::Run(frames) => {
                for _ in 0..frames {
                    self.frame()?;
                }
            }
            Op::Faults(p, up, down) => {
                let faults = LinkFaults {
                    up: up.faults(),
                    down: down.faults(),
                };
                taint.set(p, Taint::BadWire, !keeps_healthy(&faults));
                h.set_faults(self.players[p], faults);
            }
            Op::Hold(p, ms) => {
                taint.hold(p, ms);
                h.stall_link(self.players[p], Duration::from_millis(ms.into()));
            }
            Op::Reconnect(p) => {
                taint.new_session(p);
                h.reconnect(self.players[p]);
            }
            Op::ServerStall => return self.server_stall(),
            Op::Drain(ms) => {
                h.server.world_mut().write_message(AtomicDrain {
                    timeout: Duration::from_millis(ms.into()),
                });
            }
        }
        self.frame()
    }

    fn server_stall(&mut self) -> Result<(), TestCaseError> {
        self.h.stall_server(SERVER_STALL);
        self.checker.check(&mut self.h)
    }

    pub fn run(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        for op in ops {
            self.apply(op)?;
        }
        self.drain()
    }

    /// The longest the drain may take, in frames: a held link lets go within
    /// [`MAX_HOLD_MS`] and a reconnection opens within two frames; after that no join
    /// arrives, and every match that ends takes at least one player out for good (a
    /// commit takes all, a rollback leaves at least the player that failed it out of the
    /// queue), so at most `players - group + 1` matches run one after the other, each
    /// within the ping timeout plus every proposal attempt with its backoff.
    pub fn drain_bound(&self) -> usize {
        let settings = self.h.server_resource::<AtomicServerSettings>();
        let group = settings.group_size();
        let t = settings.clamped().commit;
        let slack = self.h.step * 10;
        let per_match = t.ping_timeout
            + (t.notification_timeout + t.notification_backoff) * t.notification_attempts
            + slack;
        let chain = (self.players.len() + 1).saturating_sub(group) as u32;
        let arrivals = Duration::from_millis(MAX_HOLD_MS.into()) + self.h.step * 2 + slack;
        let total = arrivals + per_match * chain + slack;
        total.as_nanos().div_ceil(self.h.step.as_nanos()) as usize
    }

    /// Whether anything could still start or finish a match: a match in flight, a full
    /// group waiting, or packets on their way.
    fn busy(&self) -> bool {
        let stats = self.h.stats();
        let ready = self.h.server_state().queue().ready_categories().next();
        let now = self.h.now();
        stats.matches_in_flight > 0
            || ready.is_some()
            || self.h.clients.iter().any(|c| {
                // a closed connection carries nothing: what its link still holds is lost
                let open = !c.link.is_closed();
                (open && (c.link.in_flight() > 0 || c.link.is_stalled(now)))
                    || self.h.is_reconnecting(c.id)
            })
    }

    /// Stops every fault (links up and perfect; misbehaving clients stay so) and runs
    /// until nothing has been in flight for a while, at most [`Self::drain_bound`] frames.
    pub fn drain(&mut self) -> Result<(), TestCaseError> {
        for (i, p) in self.players.clone().into_iter().enumerate() {
            self.h.set_link(p, true);
            self.h.set_faults(p, LinkFaults::default());
            self.checker.taint.set(i, Taint::LinkDown, false);
            self.checker.taint.set(i, Taint::BadWire, false);
        }
        let bound = self.drain_bound();
        let mut quiet = 0;
        for _ in 0..bound {
            quiet = if self.busy() { 0 } else { quiet + 1 };
            if quiet > 20 {
                return Ok(());
            }
            self.frame()?;
        }
        prop_assert_eq!(
            self.h.stats().matches_in_flight,
            0,
            "still in flight after a drain of {} frames",
            bound
        );
        prop_assert!(!self.busy(), "still busy after a drain of {} frames", bound);
        self.check_told_closing()
    }

    /// After a drain of the server, every player still connected and welcomed was told
    /// the server is closing (within a few frames of a network now clean).
    fn check_told_closing(&mut self) -> Result<(), TestCaseError> {
        if !self.h.server_state().is_draining() {
            return Ok(());
        }
        let untold = |run: &Self| -> Vec<PlayerId> {
            run.players
                .iter()
                .copied()
                .filter(|p| {
                    run.h.is_connected(*p)
                        && run.h.server_state().is_welcomed(*p)
                        && run.h.recorded::<AtomicServerClosing>(*p).is_empty()
                })
                .collect()
        };
        for _ in 0..50 {
            if untold(self).is_empty() {
                return Ok(());
            }
            self.frame()?;
        }
        let left = untold(self);
        prop_assert!(
            left.is_empty(),
            "not told the server is closing: {:?}",
            left
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// each fault on its own, on a pair

fn matched(h: &AtomicTestHarness, players: &[PlayerId]) -> bool {
    players
        .iter()
        .all(|p| h.client_state(*p) == AtomicClientState::Matched)
}

/// A pair on a harness with default settings, both on links with these faults.
fn pair_on(faults: LinkFaults) -> (AtomicTestHarness, PlayerId, PlayerId) {
    let mut h = crate::common::harness();
    h.seed_links(5);
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    h.set_faults(a, faults);
    h.set_faults(b, faults);
    (h, a, b)
}

#[test]
fn a_pair_commits_over_jittery_duplicating_reordering_links() {
    let wire = DirectionFaults {
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(40),
        duplicate: 0.3,
        reorder: 0.3,
        ..DirectionFaults::default()
    };
    let (mut h, a, b) = pair_on(LinkFaults::both(wire));
    h.join(a, "duel");
    h.join(b, "duel");
    h.run_until(300, |h| matched(h, &[a, b]));
    let outcomes = h.server_recorded::<AtomicMatchOutcome>();
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].status.is_success(), "{:?}", outcomes[0]);
}

#[test]
fn renet_resends_what_a_lossy_link_loses() {
    let wire = DirectionFaults {
        loss: 0.5,
        ..DirectionFaults::default()
    };
    let (mut h, a, b) = pair_on(LinkFaults {
        up: wire,
        down: DirectionFaults::default(),
    });
    h.join(a, "duel");
    h.join(b, "duel");
    // both joins get through (each packet lost half the time, resent by renet)
    h.run_until(300, |h| h.stats().matches_formed == 1);
}

#[test]
fn a_held_link_delivers_late_but_in_order() {
    let (mut h, a, b) = pair_on(LinkFaults::default());
    h.stall_link(a, Duration::from_millis(300));
    h.join(a, "duel");
    h.join(b, "duel");
    h.run(20);
    assert_eq!(h.stats().total_queued(), 1, "a's join is held");
    h.run_until(300, |h| matched(h, &[a, b]));
    assert!(
        h.server_recorded::<AtomicMatchOutcome>()[0]
            .status
            .is_success()
    );
}

#[test]
fn a_reconnect_mid_match_rolls_back_and_the_new_session_starts_idle() {
    let (mut h, a, b) = pair_on(LinkFaults::default());
    h.join(a, "duel");
    h.join(b, "duel");
    h.run_until(50, |h| h.stats().matches_in_flight == 1);
    h.reconnect(a);
    assert!(!h.is_connected(a) && h.is_reconnecting(a));
    h.run_until(50, |h| h.client_state(a) == AtomicClientState::Idle);
    let outcome = h.server_recorded::<AtomicMatchOutcome>()[0].clone();
    assert!(!outcome.status.is_success());
    assert_eq!(outcome.requeued, vec![b]);
    assert_eq!(
        h.server_state().location(a),
        Some(AtomicPlayerLocation::Idle)
    );
    // the new session queues and matches like any other
    h.join(a, "duel");
    h.run_until(300, |h| matched(h, &[a, b]));
}

/// One long server frame while a pair's health check is under way: both players are
/// healthy, so the match must commit.
#[test]
fn a_server_stall_keeps_healthy_players() {
    let (mut h, a, b) = pair_on(LinkFaults::default());
    h.join(a, "duel");
    h.join(b, "duel");
    h.run_until(50, |h| h.stats().matches_in_flight == 1);
    h.stall_server(SERVER_STALL);
    h.run_until(300, |h| h.stats().matches_in_flight == 0);
    let outcome = &h.server_recorded::<AtomicMatchOutcome>()[0];
    assert!(outcome.status.is_success(), "{outcome:?}");
}

/// Two joins that reach the server in the same frame queue in player-id order, whatever
/// the run. Today the server reads connections in the order of renet's `clients_id()` (a
/// hash map: it differs from one server to the next), so the host of such a match varies
/// between runs of the same test.
#[test]
fn joins_in_one_frame_queue_in_id_order() {
    for _ in 0..16 {
        let mut h = crate::common::harness();
        let [a, b] = h.add_clients(2)[..] else {
            unreachable!()
        };
        h.join(b, "duel");
        h.join(a, "duel");
        h.run_until(50, |h| h.stats().matches_formed == 1);
        let world = h.server.world_mut();
        let mut matches = world.query::<&AtomicMatch>();
        let order: Vec<PlayerId> = matches.single(world).unwrap().players().collect();
        assert_eq!(order, vec![a, b]);
    }
}
