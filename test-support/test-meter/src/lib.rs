//! An OpenTelemetry SDK meter that records into memory, and what a test asks of it: the points
//! of one instrument, their sums, counts and last values. Every crate's tests use this one.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

/// What kind of aggregation a point comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A counter or up-down counter.
    Sum,
    /// A gauge (synchronous or observed).
    Gauge,
    /// A histogram.
    Histogram,
}

/// One data point of the latest collection.
#[derive(Clone, Debug)]
pub struct Point {
    /// Its attributes, as strings.
    pub attrs: BTreeMap<String, String>,
    /// Sum or gauge: the value; histogram: the sum of the recordings.
    pub sum: f64,
    /// Histogram: the number of recordings; 0 otherwise.
    pub count: u64,
    /// Where it comes from.
    pub kind: Kind,
}

impl Point {
    /// The value of attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }

    /// Whether the point carries every `(key, value)` of `want`.
    pub fn has(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.attr(k) == Some(v))
    }
}

/// An SDK meter provider whose only reader exports to memory when a test asks.
#[derive(Debug)]
pub struct TestMeter {
    /// The provider, for code that takes one.
    pub provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Default for TestMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl TestMeter {
    /// A fresh provider; nothing is exported until a test reads.
    pub fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        // Collections happen when a test reads, never on a timer in the middle of a test.
        let reader = PeriodicReader::builder(exporter.clone())
            .with_interval(Duration::from_secs(3600))
            .build();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        Self { provider, exporter }
    }

    /// A meter of this provider.
    pub fn meter(&self) -> Meter {
        self.provider.meter("test")
    }

    /// Every point of instrument `name` in a collection made now.
    pub fn points(&self, name: &str) -> Vec<Point> {
        self.exporter.reset();
        self.provider.force_flush().expect("flush the test meter");
        let batches = self
            .exporter
            .get_finished_metrics()
            .expect("exported metrics");
        let Some(last) = batches.last() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for scope in last.scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == name) {
                collect(metric.data(), &mut out);
            }
        }
        out
    }

    /// The points of `name` carrying every attribute of `want`.
    pub fn matching(&self, name: &str, want: &[(&str, &str)]) -> Vec<Point> {
        self.points(name)
            .into_iter()
            .filter(|p| p.has(want))
            .collect()
    }

    /// The total of counter `name` over the points carrying every attribute of `want` (0 when
    /// none was recorded).
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> u64 {
        self.matching(name, want)
            .iter()
            .filter(|p| p.kind == Kind::Sum)
            .map(|p| p.sum as u64)
            .sum()
    }

    /// The total over every point of sum or gauge `name`, as recorded (negative allowed).
    pub fn sum_total(&self, name: &str) -> f64 {
        self.points(name).iter().map(|p| p.sum).sum()
    }

    /// The first point of `name` carrying every attribute of `want`: a sum's or gauge's value,
    /// a histogram's count.
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, want).first().map(|p| match p.kind {
            Kind::Histogram => p.count as f64,
            Kind::Sum | Kind::Gauge => p.sum,
        })
    }

    /// The value of gauge `name` (its first point; 0 when absent).
    pub fn gauge(&self, name: &str) -> u64 {
        self.points(name)
            .iter()
            .find(|p| p.kind == Kind::Gauge)
            .map_or(0, |p| p.sum as u64)
    }

    /// How many recordings histogram `name` has, over all its points.
    pub fn histogram_count(&self, name: &str) -> u64 {
        self.points(name)
            .iter()
            .filter(|p| p.kind == Kind::Histogram)
            .map(|p| p.count)
            .sum()
    }
}

fn attrs<'a>(it: impl Iterator<Item = &'a KeyValue>) -> BTreeMap<String, String> {
    it.map(|kv| (kv.key.as_str().to_owned(), kv.value.as_str().into_owned()))
        .collect()
}

fn collect(data: &AggregatedMetrics, out: &mut Vec<Point>) {
    macro_rules! points {
        ($data:expr) => {
            match $data {
                MetricData::Histogram(h) => out.extend(h.data_points().map(|p| Point {
                    attrs: attrs(p.attributes()),
                    sum: p.sum() as f64,
                    count: p.count(),
                    kind: Kind::Histogram,
                })),
                MetricData::Sum(s) => out.extend(s.data_points().map(|p| Point {
                    attrs: attrs(p.attributes()),
                    sum: p.value() as f64,
                    count: 0,
                    kind: Kind::Sum,
                })),
                MetricData::Gauge(g) => out.extend(g.data_points().map(|p| Point {
                    attrs: attrs(p.attributes()),
                    sum: p.value() as f64,
                    count: 0,
                    kind: Kind::Gauge,
                })),
                _ => {}
            }
        };
    }
    match data {
        AggregatedMetrics::F64(d) => points!(d),
        AggregatedMetrics::U64(d) => points!(d),
        AggregatedMetrics::I64(d) => points!(d),
    }
}
