//! `tower.hedge.sent`, `tower.hedge.won` and `tower.hedge.refused`, through the OpenTelemetry
//! API; recorded only when a request is hedged (or would have been).

use opentelemetry::metrics::{Counter, Meter};

pub(crate) struct HedgeInstruments {
    sent: Counter<u64>,
    won: Counter<u64>,
    lost: Counter<u64>,
    refused: Counter<u64>,
}

impl HedgeInstruments {
    pub(crate) fn new(meter: Option<&Meter>) -> Self {
        let global;
        let meter = match meter {
            Some(meter) => meter,
            None => {
                global = opentelemetry::global::meter("tower-retry-classified");
                &global
            }
        };
        let counter = |name: &'static str, description: &'static str| {
            let counter = meter
                .u64_counter(name)
                .with_description(description)
                .with_unit("{request}")
                .build();
            // Present from the first collection, at 0: a rate over it is zero, not empty.
            counter.add(0, &[]);
            counter
        };
        Self {
            sent: counter("tower.hedge.sent", "Hedges sent after the hedge delay"),
            won: counter(
                "tower.hedge.won",
                "Hedged requests the hedge answered first",
            ),
            lost: counter(
                "tower.hedge.lost",
                "Hedged requests the first attempt answered first",
            ),
            refused: counter(
                "tower.hedge.refused",
                "Hedges not sent because the retry budget was exhausted",
            ),
        }
    }

    pub(crate) fn sent(&self) {
        self.sent.add(1, &[]);
    }

    pub(crate) fn won(&self) {
        self.won.add(1, &[]);
    }

    pub(crate) fn lost(&self) {
        self.lost.add(1, &[]);
    }

    pub(crate) fn refused_by_budget(&self) {
        self.refused.add(1, &[]);
    }
}
