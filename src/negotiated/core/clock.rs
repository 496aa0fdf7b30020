//! Estimating the offset between a client's clock and the relay's, NTP style.
//!
//! The client stamps a time request with its clock (`t0`); the relay answers with when it
//! received the request (`t1`) and when it answered (`t2`), both on its clock; the client
//! notes when the answer arrived (`t3`). Then
//!
//! - offset = ((t1 - t0) + (t2 - t3)) / 2 (add it to the client's clock to get relay time),
//! - round trip = (t3 - t0) - (t2 - t1).
//!
//! The estimate's error is at most half the round trip, whatever the skew between the
//! clocks. The clock keeps the last few samples and trusts the one with the shortest
//! round trip.

use std::collections::VecDeque;
use std::time::Duration;

/// How many samples [`NegotiatedClock`] keeps.
pub const NEGOTIATED_CLOCK_SAMPLES: usize = 8;

/// One answered time request (all in microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatedClockSample {
    /// Offset to add to the client clock, in microseconds.
    pub offset_us: i64,
    /// Round trip, in microseconds.
    pub round_trip_us: u64,
}

impl NegotiatedClockSample {
    /// The sample from the four timestamps (client send, relay receive, relay send,
    /// client receive).
    pub fn from_timestamps(t0: u64, t1: u64, t2: u64, t3: u64) -> Self {
        let (t0, t1, t2, t3) = (t0 as i128, t1 as i128, t2 as i128, t3 as i128);
        let offset = ((t1 - t0) + (t2 - t3)) / 2;
        let round_trip = ((t3 - t0) - (t2 - t1)).max(0);
        Self {
            offset_us: offset.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            round_trip_us: round_trip.min(u64::MAX as i128) as u64,
        }
    }
}

/// The client's estimate of the relay's clock.
#[derive(Debug, Clone, Default)]
pub struct NegotiatedClock {
    samples: VecDeque<NegotiatedClockSample>,
}

impl NegotiatedClock {
    /// A clock with no estimate yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an answered time request (timestamps in microseconds).
    pub fn record(&mut self, t0: u64, t1: u64, t2: u64, t3: u64) -> NegotiatedClockSample {
        let sample = NegotiatedClockSample::from_timestamps(t0, t1, t2, t3);
        if self.samples.len() == NEGOTIATED_CLOCK_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        sample
    }

    /// The trusted sample: the one with the shortest round trip (the latest on ties).
    pub fn best(&self) -> Option<NegotiatedClockSample> {
        self.samples
            .iter()
            .rev()
            .min_by_key(|s| s.round_trip_us)
            .copied()
    }

    /// The offset to add to the local clock, once there is a sample.
    pub fn offset_us(&self) -> Option<i64> {
        self.best().map(|s| s.offset_us)
    }

    /// Whether there is an estimate.
    pub fn is_synced(&self) -> bool {
        !self.samples.is_empty()
    }

    /// Relay time for a local time, once there is an estimate (never below zero).
    pub fn relay_time(&self, local: Duration) -> Option<Duration> {
        self.offset_us().map(|offset| apply_offset(local, offset))
    }

    /// Forgets every sample (a new connection may reach another relay).
    pub fn reset(&mut self) {
        self.samples.clear();
    }
}

/// `time + offset_us`, clamped at zero.
pub fn apply_offset(time: Duration, offset_us: i64) -> Duration {
    let us = time.as_micros() as i128 + offset_us as i128;
    Duration::from_micros(us.clamp(0, u64::MAX as i128) as u64)
}

/// A duration in whole microseconds, saturating.
pub fn as_us(time: Duration) -> u64 {
    u64::try_from(time.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn symmetric_delay_gives_the_exact_offset() {
        // client is 2 s behind; 30 ms each way; relay takes 1 ms
        let t0 = 10_000_000;
        let t1 = t0 + 2_000_000 + 30_000;
        let t2 = t1 + 1_000;
        let t3 = t0 + 61_000;
        let s = NegotiatedClockSample::from_timestamps(t0, t1, t2, t3);
        assert_eq!(s.offset_us, 2_000_000);
        assert_eq!(s.round_trip_us, 60_000);
        let mut clock = NegotiatedClock::new();
        assert_eq!(clock.relay_time(Duration::from_secs(1)), None);
        clock.record(t0, t1, t2, t3);
        // a worse sample does not replace the better one
        clock.record(t0, t1 + 50_000, t2 + 50_000, t3 + 200_000);
        assert_eq!(clock.offset_us(), Some(2_000_000));
        assert_eq!(
            clock.relay_time(Duration::from_secs(1)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            apply_offset(Duration::from_secs(1), -3_000_000),
            Duration::ZERO
        );
    }

    proptest! {
        /// Whatever the skew (here up to ±1 h) and however asymmetric the path, the
        /// error is at most half the round trip.
        #[test]
        fn error_is_bounded_by_half_the_round_trip(
            skew in -3_600_000_000i64..3_600_000_000,
            up in 0u64..500_000,
            down in 0u64..500_000,
            hold in 0u64..10_000,
            start in 4_000_000_000u64..5_000_000_000,
        ) {
            // relay time = client time + skew
            let t0 = start;
            let t1 = (t0 as i64 + skew) as u64 + up;
            let t2 = t1 + hold;
            let t3 = (t2 as i64 - skew) as u64 + down;
            let s = NegotiatedClockSample::from_timestamps(t0, t1, t2, t3);
            prop_assert_eq!(s.round_trip_us, up + down);
            let error = (s.offset_us - skew).unsigned_abs();
            prop_assert!(error <= s.round_trip_us / 2 + 1);
        }
    }
}
