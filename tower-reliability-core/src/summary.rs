//! [`Summary`]: when a rate-limited `warn` summary of repeated events is due.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The shortest time between two summaries of one kind of event.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Counts events (rejections, give-ups, deadlines missed) and says when a `warn` summary of
/// them is due: on the first event, then on the first event at least [`SUMMARY_EVERY`] after
/// the previous summary. So an outage shows at `warn` without a line per request.
///
/// Lock-free: two atomics, one `fetch_add` per event. Meant for a `static`:
///
/// ```
/// use tower_reliability_core::Summary;
///
/// static REJECTIONS: Summary = Summary::new();
/// assert_eq!(REJECTIONS.count(), Some(1)); // the first event: due at once
/// assert_eq!(REJECTIONS.count(), None); // within 10 s: counted for the next summary
/// ```
#[derive(Debug)]
pub struct Summary {
    count: AtomicU64,
    /// Milliseconds since [`origin`] before which no summary is due.
    next: AtomicU64,
}

impl Summary {
    /// No event counted yet.
    pub const fn new() -> Self {
        Summary {
            count: AtomicU64::new(0),
            next: AtomicU64::new(0),
        }
    }

    /// Counts one event; when a summary is due, the number of events since the last one.
    pub fn count(&self) -> Option<u64> {
        self.count_at(origin().elapsed().as_millis() as u64)
    }

    fn count_at(&self, now: u64) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let next = self.next.load(Ordering::Relaxed);
        if now < next {
            return None;
        }
        let then = now + SUMMARY_EVERY.as_millis() as u64;
        // One thread wins the summary; the others' events go into the next one.
        self.next
            .compare_exchange(next, then, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.count.swap(0, Ordering::Relaxed))
    }
}

impl Default for Summary {
    fn default() -> Self {
        Self::new()
    }
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_once_then_once_per_period_with_the_events_between() {
        let summary = Summary::new();
        let every = SUMMARY_EVERY.as_millis() as u64;
        assert_eq!(summary.count_at(5), Some(1));
        assert_eq!(summary.count_at(6), None);
        assert_eq!(summary.count_at(every + 4), None);
        assert_eq!(summary.count_at(every + 5), Some(3));
        assert_eq!(summary.count_at(every + 6), None);
    }
}
