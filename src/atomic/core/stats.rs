//! Rolling duration samples with percentiles.

use std::collections::VecDeque;
use std::time::Duration;

/// The last `capacity` duration samples; percentiles are computed on demand.
#[derive(Debug, Clone)]
pub struct DurationWindow {
    samples: VecDeque<Duration>,
    capacity: usize,
    count: u64,
}

impl Default for DurationWindow {
    fn default() -> Self {
        Self::new(1024)
    }
}

/// Percentiles of a [`DurationWindow`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DurationPercentiles {
    /// Samples ever recorded (not only those in the window).
    pub count: u64,
    /// Median of the window.
    pub p50: Duration,
    /// 90th percentile of the window.
    pub p90: Duration,
    /// 99th percentile of the window.
    pub p99: Duration,
    /// Largest sample in the window.
    pub max: Duration,
}

impl DurationWindow {
    /// A window keeping the last `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
            count: 0,
        }
    }

    /// Records a sample, forgetting the oldest when full.
    pub fn record(&mut self, sample: Duration) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        self.count += 1;
    }

    /// Samples ever recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Nearest-rank percentiles of the window (O(n log n) in the window size).
    pub fn percentiles(&self) -> DurationPercentiles {
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        DurationPercentiles {
            count: self.count,
            p50: nearest_rank(&sorted, 0.50),
            p90: nearest_rank(&sorted, 0.90),
            p99: nearest_rank(&sorted, 0.99),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

/// Nearest-rank percentile `q` (0..=1) of sorted samples; zero when empty.
pub fn nearest_rank<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_window() {
        let mut w = DurationWindow::new(100);
        assert_eq!(w.percentiles(), DurationPercentiles::default());
        for ms in 1..=200u64 {
            w.record(Duration::from_millis(ms));
        }
        let p = w.percentiles();
        assert_eq!(p.count, 200);
        // the window holds 101..=200
        assert_eq!(p.p50, Duration::from_millis(150));
        assert_eq!(p.p99, Duration::from_millis(199));
        assert_eq!(p.max, Duration::from_millis(200));
        assert_eq!(nearest_rank(&[5u32], 0.99), 5);
    }
}
