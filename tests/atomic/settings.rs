//! Settings out of bounds: a `ping_timeout` of zero (or a `max_latency` of zero) would
//! fail every health check; the server replaces such values with the minimums, whether
//! they came at start or at run time, and players still match.

use std::time::Duration;

use bevy_atomic_matchmaking::prelude::*;
use bevy_atomic_matchmaking::testing::atomic::AtomicTestHarness;

fn pair_commits(h: &mut AtomicTestHarness, category: &str) -> AtomicMatchOutcome {
    let [a, b] = h.add_clients(2)[..] else {
        unreachable!()
    };
    h.join(a, category);
    h.run(2);
    h.join(b, category);
    h.run_until(100, |h| {
        !h.server_recorded::<AtomicMatchOutcome>().is_empty()
    });
    h.server_recorded::<AtomicMatchOutcome>()[0].clone()
}

#[test]
fn zero_timeouts_at_start_are_raised_to_the_minimums() {
    let mut h = AtomicTestHarness::new(AtomicServerSettings {
        commit: AtomicCommitTimings {
            ping_timeout: Duration::ZERO,
            max_latency: Duration::ZERO,
            notification_timeout: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    });
    let o = pair_commits(&mut h, "duel");
    assert_eq!(o.status, AtomicMatchStatus::Success, "{o:#?}");
    let settings = h.server_resource::<AtomicServerSettings>();
    assert_eq!(settings.validate(), Ok(()));
    assert_eq!(
        settings.commit.ping_timeout,
        AtomicServerSettings::MIN_PING_TIMEOUT
    );
    assert_eq!(
        settings.commit.max_latency,
        AtomicServerSettings::MIN_MAX_LATENCY
    );
}

#[test]
fn a_zero_ping_timeout_set_at_run_time_is_raised_too() {
    let mut h = AtomicTestHarness::new(AtomicServerSettings::default());
    h.run(2);
    {
        let mut settings = h.server.world_mut().resource_mut::<AtomicServerSettings>();
        settings.commit.ping_timeout = Duration::ZERO;
        settings.players_per_match = 0;
        settings.queue_capacity = 0;
    }
    h.run(1);
    let settings = h.server_resource::<AtomicServerSettings>().clone();
    assert_eq!(
        settings.commit.ping_timeout,
        AtomicServerSettings::MIN_PING_TIMEOUT
    );
    assert_eq!(
        (settings.players_per_match, settings.queue_capacity),
        (2, 1)
    );
    h.server
        .world_mut()
        .resource_mut::<AtomicServerSettings>()
        .queue_capacity = 100;
    let o = pair_commits(&mut h, "duel");
    assert_eq!(o.status, AtomicMatchStatus::Success, "{o:#?}");
}
