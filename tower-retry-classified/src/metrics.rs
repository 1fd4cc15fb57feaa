//! OpenTelemetry instruments: `tower.retry.attempts`, `tower.retry.retries`,
//! `tower.retry.skipped`, `tower.retry.backoff`, and the budget's `tower.retry.budget.balance`.
//!
//! Recorded through the OpenTelemetry API only, so they cost next to nothing when no SDK is
//! installed. Attribute values are static strings (no allocation per recording).

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};

use crate::budget::RetryBudget;

use crate::classify::Reason;

/// Why a retry was not attempted: the `reason` attribute of `tower.retry.skipped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// The failure was classified permanent.
    Permanent,
    /// The retry budget was exhausted.
    Budget,
    /// The next attempt would start past the request's deadline.
    Deadline,
    /// The next attempt would start past the total retry time.
    TotalCap,
    /// A response-level failure of a non-idempotent request without `Idempotency-Key`.
    NonIdempotent,
    /// The body was larger than the replay buffer.
    BodyTooLarge,
    /// The body failed while being read, so it cannot be sent again.
    BodyError,
    /// All retries were used.
    MaxRetries,
}

impl SkipReason {
    /// Every reason.
    pub const ALL: [SkipReason; 8] = [
        SkipReason::Permanent,
        SkipReason::Budget,
        SkipReason::Deadline,
        SkipReason::TotalCap,
        SkipReason::NonIdempotent,
        SkipReason::BodyTooLarge,
        SkipReason::BodyError,
        SkipReason::MaxRetries,
    ];

    /// The stable attribute value.
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::Permanent => "permanent",
            SkipReason::Budget => "budget",
            SkipReason::Deadline => "deadline",
            SkipReason::TotalCap => "total_cap",
            SkipReason::NonIdempotent => "non_idempotent",
            SkipReason::BodyTooLarge => "body_too_large",
            SkipReason::BodyError => "body_error",
            SkipReason::MaxRetries => "max_retries",
        }
    }
}

/// The reasons the built-in classifier retries: the series of `tower.retry.retries` made at 0
/// with the instruments. A custom classifier's own reasons appear with their first retry.
const RETRIED_FROM_START: [Reason; 16] = [
    Reason::REQUEST_TIMEOUT,
    Reason::TOO_MANY_REQUESTS,
    Reason::INTERNAL_SERVER_ERROR,
    Reason::BAD_GATEWAY,
    Reason::SERVICE_UNAVAILABLE,
    Reason::GATEWAY_TIMEOUT,
    Reason::CONNECTION_REFUSED,
    Reason::CONNECTION_RESET,
    Reason::CONNECTION_ABORTED,
    Reason::BROKEN_PIPE,
    Reason::UNEXPECTED_EOF,
    Reason::INCOMPLETE_MESSAGE,
    Reason::CONNECT_ERROR,
    Reason::CONNECT_TIMEOUT,
    Reason::REFUSED_STREAM,
    Reason::ATTEMPT_TIMEOUT,
];

#[derive(Clone, Debug)]
pub(crate) struct Instruments {
    meter: Meter,
    /// `tower.retry.budget.balance`, made by the first service of a layer with a budget.
    budget: std::sync::Arc<std::sync::OnceLock<ObservableGauge<u64>>>,
    attempts: Counter<u64>,
    retries: Counter<u64>,
    skipped: Counter<u64>,
    backoff: Histogram<f64>,
    /// The success series, bound once: the one recorded on every request's hot path.
    #[cfg(feature = "bound-instruments")]
    success: std::sync::Arc<std::sync::OnceLock<opentelemetry::metrics::BoundCounter<u64>>>,
}

impl Instruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        let instruments = Self {
            meter: meter.clone(),
            budget: Default::default(),
            attempts: meter
                .u64_counter("tower.retry.attempts")
                .with_description("Attempts sent to the inner service, by outcome and reason")
                .with_unit("{attempt}")
                .build(),
            retries: meter
                .u64_counter("tower.retry.retries")
                .with_description("Retries scheduled, by the reason of the failure retried")
                .with_unit("{retry}")
                .build(),
            skipped: meter
                .u64_counter("tower.retry.skipped")
                .with_description("Failed attempts that were not retried, by reason")
                .with_unit("{retry}")
                .build(),
            backoff: meter
                .f64_histogram("tower.retry.backoff")
                .with_description("Delay slept before a retry")
                .with_unit("s")
                .with_boundaries(vec![
                    0.0, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 2.0, 5.0, 10.0, 30.0,
                ])
                .build(),
            #[cfg(feature = "bound-instruments")]
            success: Default::default(),
        };
        // Every reason exists from the first collection, at 0 (a rate over a series that
        // appears only with its first event is empty, not zero), and so does the success series.
        for reason in SkipReason::ALL {
            instruments
                .skipped
                .add(0, &[KeyValue::new("reason", reason.as_str())]);
        }
        for reason in RETRIED_FROM_START {
            instruments
                .retries
                .add(0, &[KeyValue::new("reason", reason.as_str())]);
        }
        instruments.attempts.add(
            0,
            &[
                KeyValue::new("outcome", "success"),
                KeyValue::new("reason", Reason::OK.as_str()),
            ],
        );
        instruments
    }

    pub(crate) fn attempt(&self, success: bool, reason: Reason) {
        #[cfg(feature = "bound-instruments")]
        if success && reason == Reason::OK {
            let bound = self.success.get_or_init(|| {
                self.attempts.bind(&[
                    KeyValue::new("outcome", "success"),
                    KeyValue::new("reason", Reason::OK.as_str()),
                ])
            });
            bound.add(1);
            return;
        }
        let outcome = if success { "success" } else { "failure" };
        self.attempts.add(
            1,
            &[
                KeyValue::new("outcome", outcome),
                KeyValue::new("reason", reason.as_str()),
            ],
        );
    }

    pub(crate) fn skipped(&self, reason: SkipReason) {
        self.skipped
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
    }

    /// Observes `budget`'s balance as `tower.retry.budget.balance` (retries it allows now),
    /// once per layer: a budget running dry shows before `skipped{reason="budget"}` climbs.
    pub(crate) fn observe(&self, budget: &RetryBudget) {
        self.budget.get_or_init(|| {
            let budget = budget.downgrade();
            self.meter
                .u64_observable_gauge("tower.retry.budget.balance")
                .with_description("Retries the retry budget allows right now")
                .with_unit("{retry}")
                .with_callback(move |observer| {
                    if let Some(budget) = budget.upgrade() {
                        observer.observe(crate::budget::balance(&budget), &[]);
                    }
                })
                .build()
        });
    }

    /// A retry scheduled after a failure classified `reason`, `delay` from now.
    pub(crate) fn retried(&self, reason: Reason, delay: Duration) {
        self.retries
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
        self.backoff.record(delay.as_secs_f64(), &[]);
    }
}
