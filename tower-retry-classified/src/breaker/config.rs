//! The breaker's settings, clamped to workable values when set.

use std::time::Duration;

/// Settings of a [`CircuitBreakerLayer`](super::CircuitBreakerLayer); see its builder methods
/// for the defaults and the clamps.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BreakerConfig {
    /// Share of retryable failures among the window's calls that opens the breaker, in
    /// (0, 1].
    pub(crate) failure_ratio: f64,
    /// Fewest calls in the window before the ratio counts, at least 1.
    pub(crate) min_volume: u32,
    /// How far back outcomes count, 1 s to 1 h.
    pub(crate) window: Duration,
    /// Slices of the window (old outcomes leave a slice at a time), 1 to 60.
    pub(crate) buckets: u32,
    /// Open time after the first trip, 1 ms to `open_max`.
    pub(crate) open_base: Duration,
    /// Longest open time, however many trips in a row; at most 1 h.
    pub(crate) open_max: Duration,
    /// Probe calls let through while half-open; that many successes close the breaker. 1 to
    /// 1,000.
    pub(crate) probes: u32,
}

pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// The default share of failures that opens a breaker.
pub(crate) const DEFAULT_FAILURE_RATIO: f64 = 0.5;

/// The smallest share accepted: below it one failure in a hundred calls would open the breaker.
pub(crate) const MIN_FAILURE_RATIO: f64 = 0.01;

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_ratio: DEFAULT_FAILURE_RATIO,
            min_volume: 20,
            window: Duration::from_secs(10),
            buckets: 10,
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(60),
            probes: 3,
        }
    }
}

impl BreakerConfig {
    pub(crate) fn failure_ratio(&mut self, ratio: f64) {
        // Clamped to a share a breaker can act on; NaN is no share at all, so the default. The
        // result never depends on what was set before.
        self.failure_ratio = if ratio.is_nan() {
            DEFAULT_FAILURE_RATIO
        } else {
            ratio.clamp(MIN_FAILURE_RATIO, 1.0)
        };
    }

    pub(crate) fn window(&mut self, window: Duration, buckets: u32) {
        self.window = window.clamp(Duration::from_secs(1), MAX_WINDOW);
        self.buckets = buckets.clamp(1, 60);
    }

    pub(crate) fn open_time(&mut self, base: Duration, max: Duration) {
        self.open_max = max.clamp(Duration::from_millis(1), MAX_WINDOW);
        self.open_base = base.clamp(Duration::from_millis(1), self.open_max);
    }
}
