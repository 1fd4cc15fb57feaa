//! OpenTelemetry instruments, recorded through the API only (free when no SDK is installed).
//!
//! Depth, in-flight, status and the concurrency limit are observable instruments read from the
//! admission counters at collection time, so the success path records nothing. Rejections and waits are recorded on the
//! slow paths only.

use std::sync::Weak;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge, ObservableUpDownCounter};

use crate::config::Config;
use crate::status::QueueStatus;

/// What the observable instruments read at collection time: the admission state, which
/// implements it. A trait, so that this module needs nothing from the one that records into it.
pub(crate) trait Observed: Send + Sync + 'static {
    /// Requests waiting now.
    fn depth(&self) -> usize;
    /// Requests inside the inner service now.
    fn in_flight(&self) -> usize;
    /// The queue's status now.
    fn status(&self) -> QueueStatus;
    /// The concurrency limit now (fixed or adaptive).
    fn concurrency_limit(&self) -> usize;
}

/// The `reason` attribute of `tower.queue.rejections`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reason {
    Full = 0,
    DroppedOldest = 1,
    QueueTimeout = 2,
    #[cfg_attr(not(feature = "deadline"), allow(dead_code))]
    Deadline = 3,
    Closed = 4,
    FairShare = 5,
}

const REASONS: [&str; 6] = [
    "full",
    "dropped_oldest",
    "queue_timeout",
    "deadline",
    "closed",
    "fair_share",
];

impl Reason {
    /// The stable attribute value.
    pub(crate) fn as_str(self) -> &'static str {
        REASONS[self as usize]
    }
}

/// Boundaries for `tower.queue.wait`, in seconds (semconv's HTTP duration buckets).
const WAIT_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

pub(crate) struct Metrics {
    rejections: Counter<u64>,
    /// A waiter whose deadline passed is also `tower.deadline.exceeded{where="queued"}`, where
    /// the deadline layers count theirs.
    #[cfg(feature = "deadline")]
    deadline: tower_deadline::DeadlineMetrics,
    wait: Histogram<f64>,
    name: [KeyValue; 1],
    reasons: [[KeyValue; 2]; 6],
    _depth: ObservableUpDownCounter<i64>,
    _in_flight: ObservableUpDownCounter<i64>,
    _status: ObservableGauge<u64>,
    _limit: ObservableGauge<u64>,
    _floor: Option<ObservableGauge<u64>>,
}

impl Metrics {
    /// The observable instruments hold only a weak reference, so a dropped queue is not kept
    /// alive by the meter (its callbacks then report nothing).
    pub(crate) fn new<S: Observed>(config: &Config, shared: Weak<S>) -> Self {
        let global;
        let meter: &Meter = match &config.meter {
            Some(meter) => meter,
            None => {
                global = opentelemetry::global::meter("tower-bounded-queue");
                &global
            }
        };
        let name = KeyValue::new("tower.queue.name", config.name.clone());
        let reasons = REASONS.map(|r| [name.clone(), KeyValue::new("reason", r)]);

        let attrs = [name.clone()];
        let weak = shared.clone();
        let a = attrs.clone();
        let depth = meter
            .i64_observable_up_down_counter("tower.queue.depth")
            .with_description("Requests waiting in the queue")
            .with_unit("{request}")
            .with_callback(move |o| {
                if let Some(s) = weak.upgrade() {
                    o.observe(s.depth() as i64, &a);
                }
            })
            .build();
        let weak = shared.clone();
        let a = attrs.clone();
        let in_flight = meter
            .i64_observable_up_down_counter("tower.queue.in_flight")
            .with_description("Requests admitted into the inner service")
            .with_unit("{request}")
            .with_callback(move |o| {
                if let Some(s) = weak.upgrade() {
                    o.observe(s.in_flight() as i64, &a);
                }
            })
            .build();
        let weak = shared.clone();
        let a = attrs.clone();
        let status = meter
            .u64_observable_gauge("tower.queue.status")
            .with_description("Queue status: 0 healthy, 1 degraded, 2 overloaded, 3 critical")
            .with_callback(move |o| {
                if let Some(s) = weak.upgrade() {
                    o.observe(s.status().as_level(), &a);
                }
            })
            .build();
        // An adaptive limit's floor, so that an alert can tell a limit pinned at it.
        let floor = config.adaptive.as_ref().map(|adaptive| {
            let floor = adaptive.floor_value() as u64;
            let a = attrs.clone();
            meter
                .u64_observable_gauge("tower.queue.concurrency_floor")
                .with_description("The least an adaptive concurrency limit goes down to")
                .with_unit("{request}")
                .with_callback(move |o| o.observe(floor, &a))
                .build()
        });
        let a = attrs.clone();
        let limit = meter
            .u64_observable_gauge("tower.queue.concurrency_limit")
            .with_description(
                "Requests allowed into the inner service at once: fixed, or the adaptive limit",
            )
            .with_unit("{request}")
            .with_callback(move |o| {
                if let Some(s) = shared.upgrade() {
                    o.observe(s.concurrency_limit() as u64, &a);
                }
            })
            .build();

        let rejections = meter
            .u64_counter("tower.queue.rejections")
            .with_description("Requests answered by the queue instead of the inner service")
            .with_unit("{request}")
            .build();
        // Every reason exists from the first collection, at 0: a rate over a series that
        // appears only with its first rejection is empty, not zero. `fair_share` only where
        // fair share is on.
        let known = if config.fair {
            REASONS.len()
        } else {
            Reason::FairShare as usize
        };
        for attributes in &reasons[..known] {
            rejections.add(0, attributes);
        }
        Self {
            rejections,
            #[cfg(feature = "deadline")]
            deadline: tower_deadline::DeadlineMetrics::new(Some(meter)),
            wait: meter
                .f64_histogram("tower.queue.wait")
                .with_description("Time admitted requests spent waiting in the queue")
                .with_unit("s")
                .with_boundaries(WAIT_BOUNDARIES.to_vec())
                .build(),
            name: attrs,
            reasons,
            _depth: depth,
            _in_flight: in_flight,
            _status: status,
            _limit: limit,
            _floor: floor,
        }
    }

    pub(crate) fn rejected(&self, reason: Reason) {
        self.rejections.add(1, &self.reasons[reason as usize]);
        #[cfg(feature = "deadline")]
        if matches!(reason, Reason::Deadline) {
            self.deadline.exceeded(tower_deadline::Stage::Queued);
        }
    }

    pub(crate) fn waited(&self, seconds: f64) {
        self.wait.record(seconds, &self.name);
    }
}
