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
fn impossible_exporter_settings_are_refused() {
    for boundaries in [
        vec![f64::NAN],
        vec![1.0, 0.5],
        vec![0.1, 0.1],
        vec![f64::INFINITY],
    ] {
        let built = PrometheusMetrics::builder()
            .duration_boundaries(boundaries.clone())
            .build();
        assert!(built.is_err(), "{boundaries:?}");
    }
    assert!(
        PrometheusMetrics::builder()
            .cardinality_limit(0)
            .build()
            .is_err()
    );
}
