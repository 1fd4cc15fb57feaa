//! `tracing` events for every retry decision (cargo feature `tracing`, on by default).
//!
//! Each decision is one `debug` event with target `tower_retry_classified`. A give-up of a
//! retryable failure is also counted into a `warn` summary written at most once per
//! [`SUMMARY_EVERY`](tower_reliability_core::SUMMARY_EVERY), so an outage shows at `warn` without one line per request. Nothing is
//! written at `info` or above on the success path. With no subscriber listening (or none for
//! this level), each call is tracing's check of a static level: nothing is formatted.

use std::time::Duration;

use crate::budget::RetryBudget;
use crate::classify::Reason;
use crate::metrics::SkipReason;

#[cfg(feature = "tracing")]
mod enabled {
    use super::*;
    use tower_reliability_core::{SUMMARY_EVERY, Summary};

    const TARGET: &str = "tower_retry_classified";

    /// `attempt` failed (1 for the first) for `reason`; the next is sent after `backoff`, which
    /// came from the answer (`Retry-After`, `grpc-retry-pushback-ms`) when `hint_honoured`.
    pub(crate) fn scheduled(
        attempt: u32,
        reason: Reason,
        backoff: Duration,
        hint_honoured: bool,
        budget: Option<&RetryBudget>,
    ) {
        // The fields, the budget's balance included, are only evaluated when a subscriber wants
        // the event.
        tracing::debug!(
            target: TARGET,
            attempt,
            reason = reason.as_str(),
            backoff_ms = backoff.as_millis() as u64,
            hint_honoured,
            budget_left = budget.map(RetryBudget::balance),
            "retry scheduled"
        );
    }

    /// The outcome of `attempt`, failed for `reason`, is returned as it is, for `why`.
    pub(crate) fn not_retried(attempt: u32, reason: Reason, why: SkipReason) {
        let reason = reason.as_str();
        tracing::debug!(
            target: TARGET,
            attempt,
            reason,
            why = why.as_str(),
            "not retried"
        );
        // A permanent failure is the caller's, not an outage: no summary.
        if why != SkipReason::Permanent && tracing::enabled!(target: TARGET, tracing::Level::WARN) {
            if let Some(count) = GIVE_UPS.count() {
                tracing::warn!(
                    target: TARGET,
                    count,
                    last_why = why.as_str(),
                    last_reason = reason,
                    "requests failed after retrying was given up (summary, at most one per {} s)",
                    SUMMARY_EVERY.as_secs()
                );
            }
        }
    }

    /// Breaker `name` refused a call; a probe may go through in `retry_after`.
    #[cfg(feature = "breaker")]
    pub(crate) fn circuit_refused(name: &str, retry_after: Duration) {
        tracing::debug!(
            target: TARGET,
            circuit = name,
            retry_after_ms = retry_after.as_millis() as u64,
            "circuit open: call refused"
        );
    }

    /// Breaker `name` changed state. Opening is a dependency failing: `warn`; the rest `info`
    /// (rare, never per request).
    #[cfg(feature = "breaker")]
    pub(crate) fn circuit_changed(name: &str, from: &'static str, to: &'static str) {
        if to == "open" {
            tracing::warn!(target: TARGET, circuit = name, from, to, "circuit opened");
        } else {
            tracing::info!(target: TARGET, circuit = name, from, to, "circuit state changed");
        }
    }

    static GIVE_UPS: Summary = Summary::new();
}

#[cfg(all(feature = "tracing", feature = "breaker"))]
pub(crate) use enabled::{circuit_changed, circuit_refused};
#[cfg(feature = "tracing")]
pub(crate) use enabled::{not_retried, scheduled};

#[cfg(not(feature = "tracing"))]
pub(crate) fn scheduled(_: u32, _: Reason, _: Duration, _: bool, _: Option<&RetryBudget>) {}

#[cfg(not(feature = "tracing"))]
pub(crate) fn not_retried(_: u32, _: Reason, _: SkipReason) {}

#[cfg(all(not(feature = "tracing"), feature = "breaker"))]
pub(crate) fn circuit_refused(_: &str, _: Duration) {}

#[cfg(all(not(feature = "tracing"), feature = "breaker"))]
pub(crate) fn circuit_changed(_: &str, _: &'static str, _: &'static str) {}
