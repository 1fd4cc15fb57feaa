//! Absurd configuration: zero and maximal caps, guards that admit nothing or everything,
//! impossible bucket boundaries and cardinality limits. Each is refused with a typed error or
//! taken as documented, and the layer still records; nothing panics.

mod common;

use std::convert::Infallible;

use common::TestMetrics;
use http::{Request, Response};
use tower::{Layer, ServiceExt};
#[cfg(feature = "prometheus")]
use tower_metrics_layer::prometheus::PrometheusMetrics;
use tower_metrics_layer::{LabelGuard, MetricsBuilder, MetricsLayer};

async fn one_request(layer: MetricsLayer, path: &str) {
    let service = layer.layer(tower::service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let request = Request::get(path)
        .header("x-tenant", "acme")
        .body(())
        .unwrap();
    service.oneshot(request).await.unwrap();
}

#[tokio::test]
async fn zero_and_maximal_caps_still_record_every_request() {
    for (targets, series) in [(0, 0), (usize::MAX, usize::MAX), (1, 0), (0, 1)] {
        let m = TestMetrics::new();
        let layer = MetricsBuilder::http_client(&m.meter())
            .max_targets(targets)
            .max_series(series)
            .build();
        one_request(layer.clone(), "http://a.example/x").await;
        one_request(layer, "http://b.example/y").await;
        let points = m.points("http.client.request.duration");
        let recorded: u64 = points.iter().map(|p| p.count).sum();
        assert_eq!(
            recorded, 2,
            "targets {targets}, series {series}: {points:?}"
        );
    }
}

#[tokio::test]
async fn guards_that_admit_nothing_or_everything() {
    for guard in [
        LabelGuard::first_seen(0),
        LabelGuard::first_seen(usize::MAX),
        LabelGuard::allowlist(Vec::<String>::new()),
    ] {
        let m = TestMetrics::new();
        let layer = MetricsBuilder::http_server(&m.meter())
            .label_from_header("tenant", http::HeaderName::from_static("x-tenant"), guard)
            .build();
        one_request(layer, "/x").await;
        let points = m.points("http.server.request.duration");
        assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), 1);
    }
}

#[cfg(feature = "prometheus")]
#[test]
fn absurd_exporter_settings_are_clamped() {
    use opentelemetry::metrics::MeterProvider as _;

    // Unsorted, duplicated, non-finite and negative boundaries: the rest, sorted.
    let metrics = PrometheusMetrics::builder()
        .without_target_info()
        .duration_boundaries(vec![1.0, f64::NAN, 0.5, 0.5, -1.0, f64::INFINITY])
        .cardinality_limit(0)
        .build()
        .expect("clamped settings build");
    let histogram = metrics
        .meter_provider()
        .meter("t")
        .f64_histogram("job.duration")
        .build();
    histogram.record(0.7, &[opentelemetry::KeyValue::new("k", "a")]);
    // A cardinality limit of 0 is 1: a second series folds into the overflow series.
    histogram.record(0.7, &[opentelemetry::KeyValue::new("k", "b")]);
    let text = metrics.render().unwrap();
    let buckets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("job_duration_bucket") && !l.contains("otel_metric_overflow"))
        .collect();
    assert_eq!(buckets.len(), 3, "0.5, 1 and +Inf: {text}");
    assert!(
        buckets[0].contains("le=\"0.5\"") && buckets[0].ends_with(" 0"),
        "{text}"
    );
    assert!(
        buckets[1].contains("le=\"1\"") && buckets[1].ends_with(" 1"),
        "{text}"
    );
    assert!(text.contains("otel_metric_overflow=\"true\""), "{text}");
}
