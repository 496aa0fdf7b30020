//! Strike counting and delayed disconnects for misbehaving connections, shared by the
//! atomic server and the negotiated relay.
//!
//! Strikes are for abuse, not for the odd request that crossed a state change on the wire:
//! one strike is forgiven for every [`STRIKE_FORGIVEN_AFTER`] without a new one, so a
//! long-lived, well-behaved connection never piles up to the limit while a flood reaches
//! it at once.

use std::collections::HashMap;
use std::time::Duration;

/// What a strike led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrikeVerdict {
    /// The connection is warned; it has this many strikes.
    Warned(u32),
    /// The connection reached the limit with this many strikes and is now refused.
    Refused(u32),
}

/// How long a connection must go without a strike for one of its strikes to be forgiven.
pub const STRIKE_FORGIVEN_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    strikes: u32,
    /// When the last strike was counted.
    last_strike: Duration,
    /// When a refused connection is closed.
    close_at: Option<Duration>,
    closed: bool,
}

/// Per-connection strikes, refusals and the disconnects they schedule.
///
/// A refused connection is not served any more but stays open for a grace period so
/// that the error explaining why reaches it; [`StrikeGuard::take_due`] yields it once
/// that period is over.
#[derive(Debug, Clone, Default)]
pub struct StrikeGuard {
    records: HashMap<u64, Record>,
}

impl StrikeGuard {
    /// Counts a bad message; refuses the connection when it reaches `max_strikes`.
    pub fn strike(
        &mut self,
        client: u64,
        max_strikes: u32,
        grace: Duration,
        now: Duration,
    ) -> StrikeVerdict {
        let record = self.records.entry(client).or_default();
        let quiet = now.saturating_sub(record.last_strike);
        let forgiven = quiet.as_secs() / STRIKE_FORGIVEN_AFTER.as_secs().max(1);
        record.strikes = record
            .strikes
            .saturating_sub(u32::try_from(forgiven).unwrap_or(u32::MAX));
        record.strikes += 1;
        record.last_strike = now;
        let strikes = record.strikes;
        if strikes >= max_strikes && self.refuse(client, grace, now) {
            StrikeVerdict::Refused(strikes)
        } else {
            StrikeVerdict::Warned(strikes)
        }
    }

    /// Refuses a connection (closing it after `grace`); true if it was not refused before.
    pub fn refuse(&mut self, client: u64, grace: Duration, now: Duration) -> bool {
        let record = self.records.entry(client).or_default();
        if record.close_at.is_some() {
            return false;
        }
        record.close_at = Some(now.saturating_add(grace));
        true
    }

    /// Whether the connection is refused.
    pub fn is_refused(&self, client: u64) -> bool {
        self.records
            .get(&client)
            .is_some_and(|r| r.close_at.is_some())
    }

    /// Strikes so far.
    pub fn strikes(&self, client: u64) -> u32 {
        self.records.get(&client).map_or(0, |r| r.strikes)
    }

    /// Forgets a connection that closed.
    pub fn forget(&mut self, client: u64) {
        self.records.remove(&client);
    }

    /// Refused connections whose grace period is over, each yielded once.
    pub fn take_due(&mut self, now: Duration) -> Vec<u64> {
        let mut due = Vec::new();
        for (client, record) in &mut self.records {
            if !record.closed && record.close_at.is_some_and(|at| now >= at) {
                record.closed = true;
                due.push(*client);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn strikes_then_refusal_then_one_disconnect() {
        let mut g = StrikeGuard::default();
        assert_eq!(g.strike(1, 3, MS(250), MS(0)), StrikeVerdict::Warned(1));
        assert_eq!(g.strike(1, 3, MS(250), MS(10)), StrikeVerdict::Warned(2));
        assert!(!g.is_refused(1));
        assert_eq!(g.strike(1, 3, MS(250), MS(20)), StrikeVerdict::Refused(3));
        assert!(g.is_refused(1));
        // a refused connection is not refused twice
        assert_eq!(g.strike(1, 3, MS(250), MS(30)), StrikeVerdict::Warned(4));
        assert!(g.take_due(MS(269)).is_empty());
        assert_eq!(g.take_due(MS(270)), vec![1]);
        assert!(g.take_due(MS(900)).is_empty());
        g.forget(1);
        assert_eq!(g.strikes(1), 0);
        assert!(!g.is_refused(1));
    }

    #[test]
    fn a_strike_is_forgiven_per_quiet_minute() {
        let mut g = StrikeGuard::default();
        let s = |secs: u64| Duration::from_secs(secs);
        assert_eq!(g.strike(1, 3, MS(250), s(0)), StrikeVerdict::Warned(1));
        assert_eq!(g.strike(1, 3, MS(250), s(30)), StrikeVerdict::Warned(2));
        // a minute later one is forgiven: 2 - 1 + 1
        assert_eq!(g.strike(1, 3, MS(250), s(90)), StrikeVerdict::Warned(2));
        // hours later all are
        assert_eq!(g.strike(1, 3, MS(250), s(9_000)), StrikeVerdict::Warned(1));
        // a burst still reaches the limit
        assert_eq!(g.strike(1, 3, MS(250), s(9_001)), StrikeVerdict::Warned(2));
        assert_eq!(g.strike(1, 3, MS(250), s(9_002)), StrikeVerdict::Refused(3));
    }

    #[test]
    fn direct_refusal() {
        let mut g = StrikeGuard::default();
        assert!(g.refuse(2, MS(100), MS(0)));
        assert!(!g.refuse(2, MS(100), MS(50)));
        assert_eq!(g.strikes(2), 0);
        assert_eq!(g.take_due(MS(100)), vec![2]);
    }

    /// Found by the fuzzer (`examples/fuzz`): the grace is a setting without an upper
    /// bound, and `Duration::MAX` overflowed when a connection was refused, panicking in
    /// the server's receive system. It now means the connection is never closed by the
    /// guard (the client can still leave).
    #[test]
    fn a_grace_of_duration_max_never_closes() {
        let mut g = StrikeGuard::default();
        let now = Duration::from_secs(1_000);
        assert_eq!(
            g.strike(3, 1, Duration::MAX, now),
            StrikeVerdict::Refused(1)
        );
        assert!(g.is_refused(3));
        assert!(g.take_due(Duration::from_secs(1 << 40)).is_empty());
    }
}
