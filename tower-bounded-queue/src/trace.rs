//! `tracing` events for admissions after a wait, for rejections and for changes of an adaptive
//! concurrency limit (cargo feature `tracing`, on by default).
//!
//! Each is one `debug` event with target `tower_bounded_queue`; rejections are also counted into
//! a `warn` summary written at most once per [`SUMMARY_EVERY`], so an overload shows at `warn`
//! without one line per rejected request. A request admitted at once writes nothing. With no
//! subscriber listening (or none for this level), each call is tracing's check of a static
//! level: nothing is formatted.

use std::time::Duration;

/// The shortest time between two `warn` summaries of rejections.
#[cfg(feature = "tracing")]
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(10);

#[cfg(feature = "tracing")]
mod enabled {
    use super::*;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    const TARGET: &str = "tower_bounded_queue";

    /// A request of queue `queue` got a slot after waiting `waited`; `depth` still wait.
    pub(crate) fn admitted_after_wait(queue: &str, waited: Duration, depth: usize) {
        tracing::debug!(
            target: TARGET,
            queue,
            waited_ms = waited.as_millis() as u64,
            depth,
            "admitted after waiting"
        );
    }

    /// Queue `queue` answered a request itself, for `reason`, with `depth` of `capacity` waiting.
    pub(crate) fn rejected(queue: &str, reason: &'static str, depth: usize, capacity: usize) {
        tracing::debug!(target: TARGET, queue, reason, depth, capacity, "rejected");
        if tracing::enabled!(target: TARGET, tracing::Level::WARN) {
            if let Some(count) = REJECTIONS.count() {
                tracing::warn!(
                    target: TARGET,
                    queue,
                    count,
                    last_reason = reason,
                    depth,
                    capacity,
                    "requests rejected by the queue (summary, at most one per {} s)",
                    SUMMARY_EVERY.as_secs()
                );
            }
        }
    }

    /// The adaptive limit of queue `queue` moved from `from` to `to` because of `cause`.
    pub(crate) fn limit_changed(queue: &str, from: usize, to: usize, cause: &'static str) {
        tracing::debug!(
            target: TARGET,
            queue,
            from,
            to,
            cause,
            "concurrency limit changed"
        );
    }

    static REJECTIONS: Summary = Summary::new();

    /// Counts events and says when a summary of them is due: on the first event, then on the
    /// first event at least [`SUMMARY_EVERY`] after the previous summary.
    struct Summary {
        count: AtomicU64,
        /// Milliseconds since [`origin`] before which no summary is due.
        next: AtomicU64,
    }

    impl Summary {
        const fn new() -> Self {
            Summary {
                count: AtomicU64::new(0),
                next: AtomicU64::new(0),
            }
        }

        /// Counts one event; the number counted since the last summary when one is due.
        fn count(&self) -> Option<u64> {
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

    fn origin() -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_summary_is_due_at_once_then_once_per_period_with_the_events_between() {
            let summary = Summary::new();
            let every = SUMMARY_EVERY.as_millis() as u64;
            assert_eq!(summary.count_at(5), Some(1));
            assert_eq!(summary.count_at(every + 4), None);
            assert_eq!(summary.count_at(every + 5), Some(2));
        }
    }
}

#[cfg(feature = "tracing")]
pub(crate) use enabled::{admitted_after_wait, limit_changed, rejected};

#[cfg(not(feature = "tracing"))]
pub(crate) fn admitted_after_wait(_: &str, _: Duration, _: usize) {}

#[cfg(not(feature = "tracing"))]
pub(crate) fn rejected(_: &str, _: &'static str, _: usize, _: usize) {}

#[cfg(not(feature = "tracing"))]
pub(crate) fn limit_changed(_: &str, _: usize, _: usize, _: &'static str) {}
