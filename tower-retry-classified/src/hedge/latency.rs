//! The observed latency percentile a hedge waits for: a histogram of recent latencies with
//! exponentially spaced buckets, counted with atomics, its percentile recomputed every
//! [`RECOMPUTE_EVERY`] samples, then halved so that it follows what the dependency does now.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Bucket `i` holds latencies below `FIRST_US * GROWTH^i` microseconds: 50 µs to about 30 min.
const BUCKETS: usize = 80;
const FIRST_US: f64 = 50.0;
const GROWTH: f64 = 1.25;
/// Samples between two recomputations of the percentile.
pub(crate) const RECOMPUTE_EVERY: u32 = 128;

#[derive(Debug)]
pub(crate) struct Latencies {
    percentile: f64,
    counts: [AtomicU32; BUCKETS],
    since: AtomicU32,
    /// The current percentile, in microseconds; 0 until enough samples were seen.
    current_us: AtomicU64,
}

impl Latencies {
    pub(crate) fn new(percentile: f64) -> Self {
        Self {
            percentile,
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
            since: AtomicU32::new(0),
            current_us: AtomicU64::new(0),
        }
    }

    /// The percentile of recent latencies (an upper bucket bound), if known yet.
    pub(crate) fn current(&self) -> Option<Duration> {
        match self.current_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        let us = latency.as_micros() as f64;
        let index = if us < FIRST_US {
            0
        } else {
            (((us / FIRST_US).ln() / GROWTH.ln()) as usize + 1).min(BUCKETS - 1)
        };
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        if self.since.fetch_add(1, Ordering::Relaxed) + 1 >= RECOMPUTE_EVERY {
            self.since.store(0, Ordering::Relaxed);
            self.recompute();
        }
    }

    fn recompute(&self) {
        let counts: Vec<u32> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        if total == 0 {
            return;
        }
        let wanted = (self.percentile * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, &count) in counts.iter().enumerate() {
            seen += u64::from(count);
            if seen >= wanted {
                let bound = FIRST_US * GROWTH.powi(i as i32);
                self.current_us
                    .store(bound.ceil() as u64, Ordering::Relaxed);
                break;
            }
        }
        // Halve the history: older samples weigh less with every recomputation.
        for count in &self.counts {
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c / 2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_is_the_bucket_bound_above_it_and_follows_recent_samples() {
        let l = Latencies::new(0.95);
        assert_eq!(l.current(), None);
        for i in 0..RECOMPUTE_EVERY {
            // 6 of 128 (4.7%) at 1 s, the rest at 10 ms: the 95th percentile is a fast one.
            let ms = if i % 25 == 0 { 1000 } else { 10 };
            l.record(Duration::from_millis(ms));
        }
        let p95 = l.current().unwrap();
        assert!(
            p95 >= Duration::from_millis(10) && p95 <= Duration::from_micros(12_500),
            "{p95:?}"
        );
        // The dependency slows down: the percentile follows within a few rounds.
        for _ in 0..4 * RECOMPUTE_EVERY {
            l.record(Duration::from_millis(200));
        }
        let p95 = l.current().unwrap();
        assert!(
            p95 >= Duration::from_millis(200) && p95 <= Duration::from_millis(250),
            "{p95:?}"
        );
    }
}
