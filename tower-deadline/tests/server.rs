//! The server layer against real clients on loopback: gRPC answers, requests expired on arrival,
//! malformed headers, the server cap, and what gets counted.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_deadline::{Deadline, DeadlineExceeded, DeadlineLayer, InvalidDeadlineHeader, Stage};

/// A server whose handler counts its calls, reports the budget it got in a header, and works
/// for `work`.
async fn start(
    layer: DeadlineLayer<tower_reliability_core::HttpMode>,
    work: Duration,
) -> (std::net::SocketAddr, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let app = Router::new()
        .fallback(any(move |request: Request<Body>| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let budget = Deadline::from_extensions(request.extensions())
                    .unwrap()
                    .remaining();
                tokio::time::sleep(work).await;
                ([("x-budget-ms", budget.as_millis().to_string())], "done")
            }
        }))
        .layer(layer);
    (common::serve(app).await, calls)
}

fn request(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::post(format!("http://{addr}/svc/Method"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn grpc_request_past_its_deadline_gets_status_4_in_http_200() {
    let (addr, calls) = start(DeadlineLayer::new().http(), Duration::from_secs(10)).await;
    let client = common::h2_client();
    let started = Instant::now();
    let response = client
        .request(request(
            addr,
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-timeout", "50m"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "4");
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn plain_http_past_its_deadline_gets_504_with_a_body() {
    let metrics = common::TestMetrics::new();
    let layer = DeadlineLayer::new().http().meter(&metrics.meter());
    let (addr, _) = start(layer, Duration::from_secs(10)).await;
    let response = common::client()
        .request(request(addr, &[("x-envoy-expected-rq-timeout-ms", "250")]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    // The error's own words, with its numbers, as every layer of the family answers.
    assert_eq!(
        &body[..],
        b"deadline exceeded while handling the request: budget 250ms, elapsed 250ms\n"
    );
    assert_eq!(
        metrics.sum("tower.deadline.exceeded", &[("where", "handling")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn expired_on_arrival_never_reaches_the_inner_service() {
    let metrics = common::TestMetrics::new();
    let layer = DeadlineLayer::new().http().meter(&metrics.meter());
    let (addr, calls) = start(layer, Duration::ZERO).await;
    let http = common::client();
    let response = http
        .request(request(addr, &[("x-request-timeout-ms", "0")]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);

    let grpc = common::h2_client();
    for zero in ["0n", "0S", "00000000H"] {
        let response = grpc
            .request(request(
                addr,
                &[
                    ("content-type", "application/grpc+proto"),
                    ("grpc-timeout", zero),
                ],
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "4", "{zero}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no expired request reached the handler"
    );
    assert_eq!(
        metrics.sum("tower.deadline.exceeded", &[("where", "arrival")]),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_header_is_ignored_and_counted_by_default() {
    let metrics = common::TestMetrics::new();
    let layer = DeadlineLayer::new()
        .http()
        .max(Duration::from_secs(3))
        .meter(&metrics.meter());
    let (addr, calls) = start(layer, Duration::ZERO).await;
    let client = common::client();
    for bad in ["abc", "-5", "1.5", "", "99999999999999999999x"] {
        let response = client
            .request(request(addr, &[("x-request-timeout-ms", bad)]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{bad:?}");
        assert_eq!(
            response.headers()["x-budget-ms"],
            "3000",
            "the cap applies to {bad:?}"
        );
    }
    let response = client
        .request(request(addr, &[("grpc-timeout", "1h")]))
        .await
        .unwrap();
    assert_eq!(response.headers()["x-budget-ms"], "3000");
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    assert_eq!(metrics.sum("tower.deadline.invalid", &[]), 6);
}

#[tokio::test(start_paused = true)]
async fn strict_mode_refuses_malformed_headers() {
    let (addr, calls) = start(DeadlineLayer::new().http().strict(true), Duration::ZERO).await;
    let response = common::client()
        .request(request(addr, &[("x-request-timeout-ms", "soon")]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let response = common::h2_client()
        .request(request(
            addr,
            &[
                ("content-type", "application/grpc"),
                ("grpc-timeout", "123456789S"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "3");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn the_server_cap_bounds_what_callers_ask_for() {
    let (addr, _) = start(
        DeadlineLayer::new().http().max(Duration::from_secs(2)),
        Duration::ZERO,
    )
    .await;
    let client = common::client();
    let asked = |ms: &'static str| client.request(request(addr, &[("x-request-timeout-ms", ms)]));
    assert_eq!(
        asked("60000").await.unwrap().headers()["x-budget-ms"],
        "2000"
    );
    assert_eq!(
        asked("1500").await.unwrap().headers()["x-budget-ms"],
        "1500"
    );
    let no_header = client.request(request(addr, &[])).await.unwrap();
    assert_eq!(no_header.headers()["x-budget-ms"], "2000");
}

#[tokio::test(start_paused = true)]
async fn error_mode_returns_a_typed_error_with_the_numbers() {
    let service = ServiceBuilder::new()
        .layer(DeadlineLayer::new())
        .service(service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, std::convert::Infallible>(())
        }));
    let request = Request::builder()
        .header("grpc-timeout", "1S")
        .body(())
        .unwrap();
    let error = service.oneshot(request).await.unwrap_err();
    let exceeded = error
        .downcast_ref::<DeadlineExceeded>()
        .expect("typed error");
    assert_eq!(exceeded.stage(), Stage::Handling);
    assert_eq!(exceeded.budget(), Duration::from_secs(1));
    assert_eq!(exceeded.elapsed(), Duration::from_secs(1));

    let strict = ServiceBuilder::new()
        .layer(DeadlineLayer::new().strict(true))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(())
        }));
    let request = Request::builder()
        .header("grpc-timeout", "1 S")
        .body(())
        .unwrap();
    let error = strict.oneshot(request).await.unwrap_err();
    assert_eq!(
        error
            .downcast_ref::<InvalidDeadlineHeader>()
            .unwrap()
            .header(),
        "grpc-timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_unchanged() {
    #[derive(Debug)]
    struct Upstream;
    impl std::fmt::Display for Upstream {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("upstream broke")
        }
    }
    impl std::error::Error for Upstream {}

    let service = ServiceBuilder::new()
        .layer(DeadlineLayer::new().http())
        .service(service_fn(|_: Request<()>| async {
            Err::<http::Response<String>, _>(Upstream)
        }));
    let error = service.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(error.to_string(), "upstream broke");
}

#[test]
fn every_stage_and_the_invalid_counter_are_series_at_zero_from_the_start() {
    use tower::Layer;
    let metrics = common::TestMetrics::new();
    let _service = DeadlineLayer::new()
        .meter(&metrics.meter())
        .layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }));
    for stage in tower_deadline::Stage::ALL {
        let points = metrics.matching("tower.deadline.exceeded", &[("where", stage.as_str())]);
        assert_eq!(points.len(), 1, "{stage}");
        assert_eq!(points[0].sum, 0.0, "{stage}");
    }
    assert_eq!(metrics.points("tower.deadline.invalid").len(), 1);
    assert_eq!(metrics.sum("tower.deadline.invalid", &[]), 0);
}
