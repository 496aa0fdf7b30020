//! [`NegotiatedLagHistogram`]: how long facts took to reach a relay sharing a store.

/// Upper bounds of the buckets, in milliseconds (the last bucket holds everything above).
const BOUNDS_MS: [u64; 11] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000];

/// Counts of delays by bucket (1, 2, 5, 10, 20, 50, 100, 200, 500, 1,000, 2,000 ms and
/// above): enough to read a median and a tail off without keeping every sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegotiatedLagHistogram {
    counts: [u64; BOUNDS_MS.len() + 1],
}

impl NegotiatedLagHistogram {
    /// Counts one delay.
    pub fn record(&mut self, ms: u64) {
        let bucket = BOUNDS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(BOUNDS_MS.len());
        self.counts[bucket] += 1;
    }

    /// Delays counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1) of the delays, in
    /// milliseconds (`u64::MAX`: above the last bound); `None` before any delay.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(BOUNDS_MS.get(bucket).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds() {
        let mut h = NegotiatedLagHistogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for ms in [0, 3, 3, 4, 40, 5_000] {
            h.record(ms);
        }
        assert_eq!(h.count(), 6);
        assert_eq!(h.quantile_ms(0.5), Some(5));
        assert_eq!(h.quantile_ms(0.8), Some(50));
        assert_eq!(h.quantile_ms(1.0), Some(u64::MAX));
    }
}
