//! `tower.deadline.exceeded` and `tower.deadline.invalid`, through the OpenTelemetry API only.
//! Recorded on failure paths alone, so the success path pays nothing for them.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};

use crate::Stage;

#[derive(Clone)]
pub(crate) struct Metrics(Arc<Instruments>);

struct Instruments {
    exceeded: Counter<u64>,
    invalid: Counter<u64>,
}

impl Metrics {
    /// Instruments on `meter`, or on the global meter named after this crate.
    pub(crate) fn new(meter: Option<&Meter>) -> Self {
        let global;
        let meter = match meter {
            Some(meter) => meter,
            None => {
                global = opentelemetry::global::meter("tower-deadline");
                &global
            }
        };
        let instruments = Instruments {
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
        };
        // Every series whose labels are known up front exists from the first collection, at 0:
        // a rate over a series that appears only with its first event is empty, not zero, and
        // an alert on it cannot fire or resolve.
        for stage in Stage::ALL {
            instruments
                .exceeded
                .add(0, &[KeyValue::new("where", stage.as_str())]);
        }
        instruments.invalid.add(0, &[]);
        Self(Arc::new(instruments))
    }

    /// Counted, and logged when a subscriber listens: every exceeded deadline passes here.
    pub(crate) fn exceeded(&self, stage: Stage) {
        self.0
            .exceeded
            .add(1, &[KeyValue::new("where", stage.as_str())]);
        crate::trace::exceeded(stage);
    }

    pub(crate) fn invalid(&self) {
        self.0.invalid.add(1, &[]);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}
