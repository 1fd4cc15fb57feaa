//! The embedded demo provider, so `gateway` runs with no setup: a loopback HTTP server that
//! answers `/v1/*` after a delay and fails a share of calls with 503.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::StatusCode;
use http::header::CONTENT_TYPE;

use crate::config::Demo;

/// Share of calls that are slow, and how many times slower.
const SLOW_SHARE: f64 = 0.05;
const SLOW_FACTOR: u32 = 20;

/// Starts the provider on `127.0.0.1:0` and returns its address.
pub async fn start(demo: Demo) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/v1/{*path}", any(move |request| answer(demo, request)));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "demo provider stopped");
        }
    });
    Ok(addr)
}

async fn answer(demo: Demo, request: Request) -> Response {
    let slow = fastrand::f64() < SLOW_SHARE;
    let latency = if slow {
        demo.latency * SLOW_FACTOR
    } else {
        demo.latency
    };
    let budget = request
        .headers()
        .get("x-request-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "null".to_string(), |v| format!("\"{v}\""));
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // Read (and discard) the body like a real provider would.
    let size = axum::body::to_bytes(request.into_body(), 16 << 20)
        .await
        .map_or(0, |b| b.len());
    tokio::time::sleep(latency).await;
    if fastrand::f64() < demo.failure_rate {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "demo provider: simulated failure\n",
        )
            .into_response();
    }
    let json = format!(
        "{{\"provider\":\"demo\",\"method\":\"{method}\",\"path\":{path:?},\"body_bytes\":{size},\"latency_ms\":{},\"budget_ms\":{budget}}}\n",
        latency.as_millis()
    );
    ([(CONTENT_TYPE, "application/json")], json).into_response()
}
