//! `tracing` events for admissions after a wait, for rejections and for changes of an adaptive
//! concurrency limit (cargo feature `tracing`, on by default).
//!
//! Each is one `debug` event with target `tower_bounded_queue`; rejections are also counted into
//! a `warn` summary written at most once per
//! [`SUMMARY_EVERY`](tower_reliability_core::SUMMARY_EVERY), so an overload shows at `warn`
//! without one line per rejected request. A request admitted at once writes nothing. With no
//! subscriber listening (or none for this level), each call is tracing's check of a static
//! level: nothing is formatted.

use std::time::Duration;

#[cfg(feature = "tracing")]
mod enabled {
    use super::*;
    use tower_reliability_core::{SUMMARY_EVERY, Summary};

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
}

#[cfg(feature = "tracing")]
pub(crate) use enabled::{admitted_after_wait, limit_changed, rejected};

#[cfg(not(feature = "tracing"))]
pub(crate) fn admitted_after_wait(_: &str, _: Duration, _: usize) {}

#[cfg(not(feature = "tracing"))]
pub(crate) fn rejected(_: &str, _: &'static str, _: usize, _: usize) {}

#[cfg(not(feature = "tracing"))]
pub(crate) fn limit_changed(_: &str, _: usize, _: usize, _: &'static str) {}
