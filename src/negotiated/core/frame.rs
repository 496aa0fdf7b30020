//! Frame math of the rolling queue: frame index = floor(time / frame duration).
//!
//! A client reads the current and the prior frame and posts only to the current one, so
//! a request stays visible for one to two frame durations. The relay keeps one more
//! frame than the readers need (facts older than two frame durations are dropped).

use std::time::Duration;

/// Shortest frame duration accepted; shorter values are raised to it.
pub const NEGOTIATED_MIN_FRAME: Duration = Duration::from_millis(10);

/// The frame grid of a rolling queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NegotiatedFrames {
    duration: Duration,
}

impl NegotiatedFrames {
    /// Frames of this duration (at least [`NEGOTIATED_MIN_FRAME`]).
    pub fn new(duration: Duration) -> Self {
        Self {
            duration: duration.max(NEGOTIATED_MIN_FRAME),
        }
    }

    /// The frame duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The index of the frame `time` (relay time) falls in.
    pub fn frame_of(&self, time: Duration) -> u64 {
        u64::try_from(time.as_nanos() / self.duration.as_nanos()).unwrap_or(u64::MAX)
    }

    /// When a frame starts.
    pub fn start_of(&self, frame: u64) -> Duration {
        let nanos = self.duration.as_nanos().saturating_mul(u128::from(frame));
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        Duration::new(secs, (nanos % 1_000_000_000) as u32)
    }

    /// When a frame ends (the next one starts).
    pub fn end_of(&self, frame: u64) -> Duration {
        self.start_of(frame.saturating_add(1))
    }

    /// The frames a client reads at `time`: the prior and the current one (just the
    /// current one in frame 0), oldest first.
    pub fn readable(&self, time: Duration) -> Vec<u64> {
        let current = self.frame_of(time);
        if current == 0 {
            vec![0]
        } else {
            vec![current - 1, current]
        }
    }

    /// Whether a request posted to `frame` is still readable at `time` (its frame is the
    /// current or the prior one).
    pub fn is_live(&self, frame: u64, time: Duration) -> bool {
        let current = self.frame_of(time);
        frame <= current && frame.saturating_add(1) >= current
    }

    /// The oldest frame the relay keeps at `time`: frames that ended more than two frame
    /// durations ago are dropped.
    pub fn oldest_kept(&self, time: Duration) -> u64 {
        self.frame_of(time).saturating_sub(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_floor_time() {
        let f = NegotiatedFrames::new(Duration::from_secs(15 * 60));
        assert_eq!(f.frame_of(Duration::ZERO), 0);
        assert_eq!(f.frame_of(Duration::from_secs(899)), 0);
        assert_eq!(f.frame_of(Duration::from_secs(900)), 1);
        assert_eq!(f.readable(Duration::from_secs(1000)), vec![0, 1]);
        assert_eq!(f.readable(Duration::from_secs(10)), vec![0]);
        assert!(f.is_live(0, Duration::from_secs(1799)));
        assert!(!f.is_live(0, Duration::from_secs(1800)));
        assert_eq!(f.oldest_kept(Duration::from_secs(2700)), 1);
        assert_eq!(
            NegotiatedFrames::new(Duration::ZERO).duration(),
            NEGOTIATED_MIN_FRAME
        );
    }

    proptest! {
        #[test]
        fn a_request_lives_one_to_two_frames(d_ms in 10u64..100_000, t_ms in 0u64..10_000_000) {
            let f = NegotiatedFrames::new(Duration::from_millis(d_ms));
            let posted = Duration::from_millis(t_ms);
            let frame = f.frame_of(posted);
            prop_assert!(f.start_of(frame) <= posted && posted < f.end_of(frame));
            // it expires exactly when frame + 2 starts
            let expiry = f.start_of(frame.saturating_add(2));
            prop_assert!(f.is_live(frame, expiry - Duration::from_nanos(1)));
            prop_assert!(!f.is_live(frame, expiry));
            let lifetime = expiry - posted;
            prop_assert!(lifetime > f.duration() && lifetime <= 2 * f.duration());
        }
    }
}

#[cfg(test)]
mod overflow_tests {
    use super::*;

    #[test]
    fn frames_from_the_network_never_overflow() {
        let f = NegotiatedFrames::new(Duration::from_secs(10));
        let now = Duration::from_secs(1000);
        assert!(!f.is_live(u64::MAX, now));
        assert!(!f.is_live(u64::MAX - 1, now));
        assert!(!f.is_live(u64::MAX, Duration::MAX));
        // with the shortest frames, the largest time is in the last frame
        let short = NegotiatedFrames::new(NEGOTIATED_MIN_FRAME);
        assert_eq!(short.frame_of(Duration::MAX), u64::MAX);
        assert!(short.is_live(u64::MAX, Duration::MAX));
        assert!(short.is_live(u64::MAX - 1, Duration::MAX));
        assert_eq!(f.end_of(u64::MAX), f.start_of(u64::MAX));
    }
}
