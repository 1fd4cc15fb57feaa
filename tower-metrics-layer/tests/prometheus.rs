//! `/metrics` served over HTTP by a real axum server, checked with `promtool`.
#![cfg(all(feature = "prometheus", feature = "axum"))]

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use common::{client, send, send_with, serve};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_metrics_layer::prometheus::{CONTENT_TYPE, PrometheusMetrics};
use tower_metrics_layer::{LabelGuard, MetricsBuilder, MetricsLayer};

fn app(metrics: &PrometheusMetrics) -> Router {
    let layer = MetricsBuilder::http_server(&metrics.meter("my-app"))
        .active_requests(true)
        .body_size(true)
        .label_from_header(
            "tenant",
            http::HeaderName::from_static("x-tenant-id"),
            LabelGuard::first_seen(2),
        )
        .build();
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/metrics", get(metrics.handler()))
        .layer(layer)
}

async fn traffic(addr: std::net::SocketAddr) {
    let c = client();
    for i in 0..4 {
        let t = format!("tenant-{i}");
        send_with(
            &c,
            "GET",
            format!("http://{addr}/users/{i}"),
            &[("x-tenant-id", &t)],
        )
        .await;
    }
    send(&c, "GET", format!("http://{addr}/fail")).await;
    send(&c, "PURGE", format!("http://{addr}/users/1")).await;
    send(&c, "GET", format!("http://{addr}/scan/../../etc/passwd")).await;
}

/// Fetches `/metrics` over HTTP and returns (content type, body).
async fn scrape(addr: std::net::SocketAddr) -> (String, String) {
    let res = client()
        .request(
            http::Request::get(format!("http://{addr}/metrics"))
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (ct, String::from_utf8(body.to_vec()).unwrap())
}

fn promtool_check(text: &str) {
    let (ok, report) = prometheus_server::promtool_check(text);
    assert!(
        ok,
        "promtool check metrics failed:\n{report}\n--- input ---\n{text}"
    );
}

#[tokio::test]
async fn metrics_endpoint_passes_promtool() {
    let metrics = PrometheusMetrics::builder().build().unwrap();
    let addr = serve(app(&metrics)).await;
    traffic(addr).await;
    let (ct, text) = scrape(addr).await;
    assert_eq!(ct, CONTENT_TYPE);
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("http_route=\"/users/{id}\""), "{text}");
    assert!(text.contains("le=\"0.005\""), "{text}");
    assert!(text.contains("le=\"10\""), "{text}");
    assert!(text.contains("http_request_method=\"_OTHER\""), "{text}");
    assert!(text.contains("tenant=\"other\""), "{text}");
    assert!(text.contains("error_type=\"503\""), "{text}");
    assert!(!text.contains("passwd"), "raw path leaked: {text}");
    assert!(text.contains("target_info"), "{text}");
    assert!(text.contains("otel_scope_name=\"my-app\""), "{text}");
    assert!(text.contains("http_server_active_requests"), "{text}");
    assert!(
        text.contains("http_server_response_body_size_bytes_bucket"),
        "{text}"
    );
    if std::env::var_os("PRINT_METRICS").is_some() {
        println!("{text}");
    }
    promtool_check(&text);
}

#[tokio::test]
async fn target_info_and_scope_labels_can_be_switched_off() {
    let metrics = PrometheusMetrics::builder()
        .without_target_info()
        .without_scope_labels()
        .build()
        .unwrap();
    let addr = serve(app(&metrics)).await;
    traffic(addr).await;
    let (_, text) = scrape(addr).await;
    assert!(
        text.contains("http_server_request_duration_seconds_count"),
        "{text}"
    );
    assert!(!text.contains("target_info"), "{text}");
    assert!(!text.contains("otel_scope_"), "{text}");
    promtool_check(&text);
}

#[tokio::test]
async fn long_request_preset_and_boundary_override() {
    let metrics = PrometheusMetrics::builder()
        .without_target_info()
        .build()
        .unwrap();
    let layer = MetricsBuilder::http_server(&metrics.meter("a"))
        .long_requests()
        .build();
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(layer);
    let addr = serve(app).await;
    send(&client(), "GET", format!("http://{addr}/x")).await;
    let text = metrics.render().unwrap();
    assert!(text.contains("le=\"300\""), "{text}");

    let metrics = PrometheusMetrics::builder()
        .duration_boundaries(vec![0.1, 1.0])
        .build()
        .unwrap();
    let layer = MetricsLayer::http_server(&metrics.meter("a"));
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(layer);
    let addr = serve(app).await;
    send(&client(), "GET", format!("http://{addr}/x")).await;
    let text = metrics.render().unwrap();
    assert!(text.contains("le=\"0.1\""), "{text}");
    assert!(!text.contains("le=\"0.005\""), "{text}");
}

#[tokio::test]
async fn sdk_cardinality_limit_applies_through_views() {
    let metrics = PrometheusMetrics::builder()
        .cardinality_limit(3)
        .build()
        .unwrap();
    let layer = MetricsBuilder::http_server(&metrics.meter("a"))
        .label_from_header(
            "tenant",
            http::HeaderName::from_static("x-tenant-id"),
            LabelGuard::first_seen(50),
        )
        .build();
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .layer(layer);
    let addr = serve(app).await;
    let c = client();
    for i in 0..10 {
        let t = format!("t{i}");
        send_with(
            &c,
            "GET",
            format!("http://{addr}/x"),
            &[("x-tenant-id", &t)],
        )
        .await;
    }
    let text = metrics.render().unwrap();
    assert!(text.contains("otel_metric_overflow=\"true\""), "{text}");
    let series = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
        .count();
    // Three real series, then the SDK's single overflow series.
    assert_eq!(series, 4, "{text}");
}

#[tokio::test]
async fn metrics_service_answers_get_and_head_only() {
    let metrics = PrometheusMetrics::builder().build().unwrap();
    let res = metrics
        .service()
        .oneshot(http::Request::get("/metrics").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[http::header::CONTENT_TYPE], CONTENT_TYPE);
    let res = metrics
        .service()
        .oneshot(http::Request::post("/metrics").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()[http::header::ALLOW], "GET, HEAD");
}
