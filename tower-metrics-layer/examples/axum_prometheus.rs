//! An axum app with request metrics and a Prometheus `/metrics` endpoint.
//!
//! cargo run -p tower-metrics-layer --example axum_prometheus --features axum,prometheus
//! then: curl -H 'x-tenant-id: acme' localhost:3000/users/1; curl localhost:3000/metrics

use axum::{Router, routing::get};
use http::HeaderName;
use tower_metrics_layer::{LabelGuard, MetricsBuilder, prometheus::PrometheusMetrics};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = PrometheusMetrics::builder().build()?;
    let meter = metrics.meter("axum-example");

    let app = Router::new()
        .route("/users/{id}", get(|| async { "user\n" }))
        .route("/metrics", get(metrics.handler()))
        .layer(
            MetricsBuilder::http_server(&meter)
                .active_requests(true)
                .body_size(true)
                .label_from_header(
                    "tenant",
                    HeaderName::from_static("x-tenant-id"),
                    LabelGuard::first_seen(20),
                )
                .build(),
        );

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
