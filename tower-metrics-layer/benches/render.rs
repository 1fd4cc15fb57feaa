//! Rendering `/metrics` with 1,000 histogram series.
//!
//! cargo bench -p tower-metrics-layer --features prometheus --bench render -- --warm-up-time 1 --measurement-time 3

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::KeyValue;
use tower_metrics_layer::DEFAULT_DURATION_BOUNDARIES;
use tower_metrics_layer::prometheus::PrometheusMetrics;

fn bench(c: &mut Criterion) {
    let metrics = PrometheusMetrics::builder().build().unwrap();
    let histogram = metrics
        .meter("bench")
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .with_boundaries(DEFAULT_DURATION_BOUNDARIES.to_vec())
        .build();
    for route in 0..100 {
        for status in [200, 201, 204, 301, 302, 400, 401, 404, 500, 503] {
            let attrs = [
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("http.response.status_code", status as i64),
                KeyValue::new("http.route", format!("/route/{route}")),
            ];
            histogram.record(0.042, &attrs);
        }
    }
    let text = metrics.render().unwrap();
    let series = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
        .count();
    assert_eq!(series, 1000);
    eprintln!(
        "/metrics with {series} histogram series: {} bytes",
        text.len()
    );
    c.bench_function("render_metrics_1000_histogram_series", |b| {
        b.iter(|| metrics.render().unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
