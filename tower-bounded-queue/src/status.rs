//! The queue's load, as a coarse signal an upstream router or a dashboard can act on.

use std::fmt;

/// How full the wait queue is.
///
/// With the default thresholds: healthy under 50% of capacity, degraded from 50% to 80%,
/// overloaded from 80% up to (not including) full, critical when full. A queue with capacity 0
/// is healthy while a concurrency slot is free and critical when none is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueStatus {
    /// Little or no waiting.
    Healthy,
    /// The queue is filling up.
    Degraded,
    /// The queue is close to full.
    Overloaded,
    /// The queue is full: new requests are being rejected (or old ones dropped).
    Critical,
}

impl QueueStatus {
    /// The stable lower-case name, used in the optional response header.
    pub fn as_str(&self) -> &'static str {
        match self {
            QueueStatus::Healthy => "healthy",
            QueueStatus::Degraded => "degraded",
            QueueStatus::Overloaded => "overloaded",
            QueueStatus::Critical => "critical",
        }
    }

    /// The value of the `tower.queue.status` gauge: 0 healthy to 3 critical.
    pub fn as_level(&self) -> u64 {
        match self {
            QueueStatus::Healthy => 0,
            QueueStatus::Degraded => 1,
            QueueStatus::Overloaded => 2,
            QueueStatus::Critical => 3,
        }
    }
}

impl fmt::Display for QueueStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fill fractions at which the status changes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Thresholds {
    pub(crate) degraded: f64,
    pub(crate) overloaded: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            degraded: 0.5,
            overloaded: 0.8,
        }
    }
}

impl Thresholds {
    /// Clamps both fractions to `[0, 1]` and orders them; NaN falls back to the default.
    pub(crate) fn new(degraded: f64, overloaded: f64) -> Self {
        let defaults = Self::default();
        let clamp = |v: f64, default: f64| {
            if v.is_nan() {
                default
            } else {
                v.clamp(0.0, 1.0)
            }
        };
        let a = clamp(degraded, defaults.degraded);
        let b = clamp(overloaded, defaults.overloaded);
        Self {
            degraded: a.min(b),
            overloaded: a.max(b),
        }
    }

    pub(crate) fn status(
        &self,
        depth: usize,
        capacity: usize,
        in_flight: usize,
        concurrency: usize,
    ) -> QueueStatus {
        if capacity == 0 {
            return if in_flight >= concurrency {
                QueueStatus::Critical
            } else {
                QueueStatus::Healthy
            };
        }
        if depth >= capacity {
            return QueueStatus::Critical;
        }
        let fill = depth as f64 / capacity as f64;
        if fill >= self.overloaded {
            QueueStatus::Overloaded
        } else if fill >= self.degraded {
            QueueStatus::Degraded
        } else {
            QueueStatus::Healthy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_thresholds_follow_the_brief() {
        let t = Thresholds::default();
        let s = |depth| t.status(depth, 10, 2, 2);
        assert_eq!(s(0), QueueStatus::Healthy);
        assert_eq!(s(4), QueueStatus::Healthy);
        assert_eq!(s(5), QueueStatus::Degraded);
        assert_eq!(s(7), QueueStatus::Degraded);
        assert_eq!(s(8), QueueStatus::Overloaded);
        assert_eq!(s(9), QueueStatus::Overloaded);
        assert_eq!(s(10), QueueStatus::Critical);
    }

    #[test]
    fn zero_capacity_is_critical_only_when_saturated() {
        let t = Thresholds::default();
        assert_eq!(t.status(0, 0, 1, 2), QueueStatus::Healthy);
        assert_eq!(t.status(0, 0, 2, 2), QueueStatus::Critical);
    }

    #[test]
    fn absurd_thresholds_are_clamped_and_ordered() {
        let t = Thresholds::new(2.0, -1.0);
        assert_eq!((t.degraded, t.overloaded), (0.0, 1.0));
        let t = Thresholds::new(f64::NAN, 0.9);
        assert_eq!((t.degraded, t.overloaded), (0.5, 0.9));
    }
}
