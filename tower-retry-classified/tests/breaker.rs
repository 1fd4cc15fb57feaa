//! The circuit breaker against a real hyper upstream, under `tokio::time::pause`: exact trips,
//! open times, probes and recoveries; only retryable failures count; the retry layer above it
//! does not retry a refusal.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{TestMeter, Upstream, client, status};
use http::Request;
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_retry_classified::{
    Backoff, CircuitBreakerBuilder, CircuitOpen, CircuitState, Jitter, RetryLayer,
};

/// A hyper-util client with no retry layer: the breaker alone.
fn plain() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(upstream: &Upstream) -> Request<Empty<Bytes>> {
    Request::get(upstream.uri("/")).body(Empty::new()).unwrap()
}

/// Ratio 0.5 over at least 4 calls, open 5 s then 10 s..., 2 probes.
fn breaker(meter: &TestMeter) -> CircuitBreakerBuilder {
    CircuitBreakerBuilder::new()
        .failure_ratio(0.5)
        .min_volume(4)
        .open_time(Duration::from_secs(5), Duration::from_secs(60))
        .probes(2)
        .name("upstream")
        .meter(&meter.meter())
}

fn open_error(error: &BoxError) -> &CircuitOpen {
    error
        .downcast_ref::<CircuitOpen>()
        .unwrap_or_else(|| panic!("not CircuitOpen: {error}"))
}

#[tokio::test(start_paused = true)]
async fn opens_at_the_ratio_once_the_volume_is_reached_then_refuses_at_once() {
    let upstream = Upstream::start(vec![status(503)]).await;
    let meter = TestMeter::new();
    let layer = breaker(&meter).build();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(plain());
    let mut outcomes = 0;
    for i in 0..4 {
        let answer = svc
            .ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap();
        assert_eq!(answer.status(), 503);
        outcomes += 1;
        let expected = if i < 3 {
            CircuitState::Closed
        } else {
            CircuitState::Open
        };
        assert_eq!(handle.state(), expected, "after call {}", i + 1);
    }
    for _ in 0..10 {
        let error = svc
            .ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap_err();
        assert_eq!(open_error(&error).retry_after(), Duration::from_secs(5));
        outcomes += 1;
    }
    assert_eq!(outcomes, 14);
    assert_eq!(
        upstream.calls(),
        4,
        "refused calls never reach the upstream"
    );
    assert_eq!(meter.gauge("tower.circuit.state"), 2);
    assert_eq!(
        meter.sum(
            "tower.circuit.transitions",
            &[
                ("from", "closed"),
                ("to", "open"),
                ("tower.circuit.name", "upstream")
            ]
        ),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_never_open_it() {
    let upstream = Upstream::start(vec![status(404)]).await;
    let meter = TestMeter::new();
    let layer = breaker(&meter).build();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(plain());
    for _ in 0..50 {
        let answer = svc
            .ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(upstream.calls(), 50);
}

#[tokio::test(start_paused = true)]
async fn half_opens_after_the_open_time_and_closes_when_the_probes_succeed() {
    let upstream = Upstream::start(vec![
        status(503),
        status(503),
        status(503),
        status(503),
        status(200),
    ])
    .await;
    let meter = TestMeter::new();
    let layer = breaker(&meter).build();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(plain());
    for _ in 0..4 {
        svc.ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap();
    }
    assert_eq!(handle.state(), CircuitState::Open);
    tokio::time::sleep(Duration::from_millis(4999)).await;
    let error = svc
        .ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap_err();
    assert_eq!(open_error(&error).retry_after(), Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!handle.refuses(), "the open time is over");
    // Two probes, both 200: closed again.
    for _ in 0..2 {
        let answer = svc
            .ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(upstream.calls(), 6);
    for (from, to) in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ] {
        assert_eq!(
            meter.sum("tower.circuit.transitions", &[("from", from), ("to", to)]),
            1,
            "{from} -> {to}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_it_for_twice_as_long() {
    let upstream = Upstream::start(vec![status(503)]).await;
    let meter = TestMeter::new();
    let layer = breaker(&meter).build();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(plain());
    for _ in 0..4 {
        svc.ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap();
    }
    let mut open_for = Duration::from_secs(5);
    // 10 s, 20 s, 40 s, then the 60 s maximum.
    for trip in 1..=4 {
        tokio::time::sleep(open_for).await;
        // The probe goes through and fails: open again, for twice as long.
        let answer = svc
            .ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap();
        assert_eq!(answer.status(), 503);
        open_for = (open_for * 2).min(Duration::from_secs(60));
        assert_eq!(handle.state(), CircuitState::Open, "trip {trip}");
        let error = svc
            .ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap_err();
        assert_eq!(open_error(&error).retry_after(), open_for, "trip {trip}");
    }
    assert_eq!(upstream.calls(), 4 + 4);
}

#[tokio::test(start_paused = true)]
async fn http_mode_answers_503_with_retry_after_and_a_retrying_caller_leaves_it_alone() {
    // A server whose handler fails (its own dependency is down), behind an HTTP-mode breaker.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { http::StatusCode::SERVICE_UNAVAILABLE }
            }),
        )
        .layer(
            CircuitBreakerBuilder::new()
                .failure_ratio(0.5)
                .min_volume(3)
                .open_time(Duration::from_millis(2500), Duration::from_secs(60))
                .build()
                .http(),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The caller retries 503s: three attempts reach the handler and open the server's
    // breaker; the fourth is refused there, marked, and the caller stops.
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http()
                .backoff(Backoff::default().jitter(Jitter::None))
                .meter(&meter.meter()),
        )
        .service(client::<Full<Bytes>>());
    let answer = svc
        .ready()
        .await
        .unwrap()
        .call(
            Request::get(format!("http://{addr}/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "3", "2.5 s rounded up");
    assert_eq!(answer.headers()["x-overloaded"], "true");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        meter.sum("tower.retry.skipped", &[("reason", "permanent")]),
        1,
        "the refusal is not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn the_retry_layer_does_not_retry_a_refusal_in_error_mode() {
    let upstream = Upstream::start(vec![status(503)]).await;
    let meter = TestMeter::new();
    let layer = breaker(&meter).build();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().max_retries(10).meter(&meter.meter()))
        .layer(layer)
        .service(client::<Full<Bytes>>());
    let error = svc
        .ready()
        .await
        .unwrap()
        .call(
            Request::get(upstream.uri("/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap_err();
    open_error(&error);
    assert_eq!(
        upstream.calls(),
        4,
        "four attempts trip it; the fifth is refused, not retried"
    );
    assert_eq!(
        meter.sum("tower.retry.attempts", &[("reason", "circuit_open")]),
        1
    );
}

/// Calls a breaker with `ratio` in front of an upstream answering 200, 200, 200, 503, 200, 503,
/// 200, 503 and says after how many calls it opened (0: never). The share of failures is 1/4
/// after 4 calls, then 1/5, 2/6, 2/7, 3/8.
async fn opens_after(ratio: f64) -> usize {
    let script = [200, 200, 200, 503, 200, 503, 200, 503]
        .map(status)
        .to_vec();
    let upstream = Upstream::start(script).await;
    let layer = CircuitBreakerBuilder::new()
        .min_volume(4)
        .failure_ratio(ratio)
        .build();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(plain());
    for calls in 1..=8 {
        svc.ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap();
        if handle.state() == CircuitState::Open {
            return calls;
        }
    }
    0
}

#[tokio::test(start_paused = true)]
async fn failure_ratios_are_clamped_and_nan_is_the_default() {
    assert_eq!(opens_after(0.25).await, 4);
    assert_eq!(opens_after(0.3).await, 6);
    // NaN is the default, 0.5: never reached.
    assert_eq!(opens_after(f64::NAN).await, 0);
    // Below the floor is the floor, 0.01: opens as soon as the volume is reached.
    assert_eq!(opens_after(-1.0).await, 4);
    assert_eq!(opens_after(0.0).await, 4);
    // Above 1 is 1: never reached while any call in the window succeeded.
    assert_eq!(opens_after(7.0).await, 0);
}

#[tokio::test(start_paused = true)]
async fn absurd_settings_are_clamped_to_a_working_breaker() {
    let upstream = Upstream::start(vec![status(503)]).await;
    let layer = CircuitBreakerBuilder::new()
        .failure_ratio(f64::NAN)
        .failure_ratio(-1.0)
        .min_volume(0)
        .probes(0)
        .window(Duration::ZERO, 0)
        .open_time(Duration::ZERO, Duration::MAX)
        .build();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(plain());
    // The last ratio (-1) is clamped to 0.01; volume 1; the first failure opens it for 1 ms.
    svc.ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap();
    assert_eq!(handle.state(), CircuitState::Open);
    let error = svc
        .ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap_err();
    assert_eq!(open_error(&error).retry_after(), Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(1)).await;
    // One probe (0 means 1), failing: open for 2 ms.
    svc.ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap();
    let error = svc
        .ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap_err();
    assert_eq!(open_error(&error).retry_after(), Duration::from_millis(2));
}

#[tokio::test(start_paused = true)]
async fn a_key_function_gives_each_upstream_its_own_breaker() {
    let failing = Upstream::start(vec![status(503)]).await;
    let healthy = Upstream::start(vec![status(200)]).await;
    let meter = TestMeter::new();
    let layer = breaker(&meter)
        .key_fn(|request: &Request<Empty<Bytes>>| request.uri().authority().map(|a| a.as_str()))
        .build();
    let mut svc = ServiceBuilder::new().layer(layer.clone()).service(plain());
    for _ in 0..4 {
        svc.ready()
            .await
            .unwrap()
            .call(get(&failing))
            .await
            .unwrap();
    }
    // The failing upstream's breaker is open; the healthy one's calls go through.
    let error = svc
        .ready()
        .await
        .unwrap()
        .call(get(&failing))
        .await
        .unwrap_err();
    open_error(&error);
    for _ in 0..10 {
        let answer = svc
            .ready()
            .await
            .unwrap()
            .call(get(&healthy))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let key = |u: &Upstream| u.addr.to_string();
    assert_eq!(
        layer.handle_of(&key(&failing)).unwrap().state(),
        CircuitState::Open
    );
    assert_eq!(
        layer.handle_of(&key(&healthy)).unwrap().state(),
        CircuitState::Closed
    );
    assert_eq!(
        layer.handle().state(),
        CircuitState::Closed,
        "the layer's own breaker"
    );
    assert_eq!((failing.calls(), healthy.calls()), (4, 10));
    // The breaker is named by its key.
    assert_eq!(
        meter.sum(
            "tower.circuit.transitions",
            &[("to", "open"), ("tower.circuit.name", &key(&failing))]
        ),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn keys_past_the_maximum_share_the_layers_own_breaker() {
    let first = Upstream::start(vec![status(200)]).await;
    let second = Upstream::start(vec![status(503)]).await;
    let layer = CircuitBreakerBuilder::new()
        .min_volume(4)
        .max_keys(1)
        .key_fn(|request: &Request<Empty<Bytes>>| request.uri().authority().map(|a| a.as_str()))
        .build();
    let mut svc = ServiceBuilder::new().layer(layer.clone()).service(plain());
    svc.ready().await.unwrap().call(get(&first)).await.unwrap();
    for _ in 0..4 {
        svc.ready().await.unwrap().call(get(&second)).await.unwrap();
    }
    // The second key has no breaker of its own: its failures opened the layer's.
    assert_eq!(layer.handle().state(), CircuitState::Open);
    assert_eq!(second.calls(), 4);
}
