//! `tower.deadline.exceeded` and `tower.deadline.invalid`, through the OpenTelemetry API only.
//! Recorded on failure paths alone, so the success path pays nothing for them.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};

use crate::Stage;

/// The crate's two instruments, `tower.deadline.exceeded` (attribute `where`) and
/// `tower.deadline.invalid`, on one meter: for code outside this crate's layers that stops work
/// on a deadline, so that it counts it where every layer does. `tower-bounded-queue` counts a
/// waiter whose deadline passed as [`Stage::Queued`] through it.
///
/// ```
/// use tower_deadline::{DeadlineMetrics, Stage};
///
/// let metrics = DeadlineMetrics::new(Some(&opentelemetry::global::meter("my-queue")));
/// metrics.exceeded(Stage::Queued);
/// ```
#[derive(Clone)]
pub struct DeadlineMetrics(Arc<Instruments>);

pub(crate) type Metrics = DeadlineMetrics;

struct Instruments {
    exceeded: Counter<u64>,
    invalid: Counter<u64>,
}

impl DeadlineMetrics {
    /// Instruments on `meter`, or on the global meter named after this crate. Every `where` of
    /// `tower.deadline.exceeded`, and `tower.deadline.invalid`, are series at 0 from the first
    /// collection.
    pub fn new(meter: Option<&Meter>) -> Self {
        let metrics = Self::instruments(meter);
        // Every series whose labels are known up front exists from the first collection, at 0:
        // a rate over a series that appears only with its first event is empty, not zero, and
        // an alert on it cannot fire or resolve.
        for stage in Stage::ALL {
            metrics
                .0
                .exceeded
                .add(0, &[KeyValue::new("where", stage.as_str())]);
        }
        metrics.0.invalid.add(0, &[]);
        metrics
    }

    /// The instruments alone, for one event on a failure path (`enforce`): the zero series are
    /// the layers' business, made once when they are built, not on every miss.
    pub(crate) fn instruments(meter: Option<&Meter>) -> Self {
        let global;
        let meter = match meter {
            Some(meter) => meter,
            None => {
                global = opentelemetry::global::meter("tower-deadline");
                &global
            }
        };
        Self(Arc::new(Instruments {
            exceeded: meter
                .u64_counter("tower.deadline.exceeded")
                .with_description("Work stopped because its deadline passed, by where it was")
                .with_unit("{request}")
                .build(),
            invalid: meter
                .u64_counter("tower.deadline.invalid")
                .with_description("Incoming deadline headers that could not be parsed")
                .with_unit("{header}")
                .build(),
        }))
    }

    /// Counts work stopped at `stage` because its deadline passed (and logs it when a
    /// subscriber listens): every exceeded deadline passes here.
    pub fn exceeded(&self, stage: Stage) {
        self.0
            .exceeded
            .add(1, &[KeyValue::new("where", stage.as_str())]);
        crate::trace::exceeded(stage);
    }

    pub(crate) fn invalid(&self) {
        self.0.invalid.add(1, &[]);
    }
}

impl std::fmt::Debug for DeadlineMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeadlineMetrics")
    }
}
