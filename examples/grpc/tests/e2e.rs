//! client -> edge -> backend over real tonic servers on 127.0.0.1, every layer on both hops.
//!
//! Time is paused: the servers, the client and every timer share the test's clock, which
//! jumps ahead whenever all of them wait, so deadlines and backoffs are exact and instant.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use grpc_example::backend::Observed;
use grpc_example::pb::EchoRequest;
use grpc_example::pb::echo_client::EchoClient;
use grpc_example::serve::{self, Running};
use grpc_example::stack::HopSettings;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;
use tower_metrics_layer::prometheus::PrometheusMetrics;

struct Chain {
    client: EchoClient<Channel>,
    channel: Channel,
    backend: Arc<Observed>,
    metrics: PrometheusMetrics,
    _servers: (Running, Running),
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

async fn chain(backend_settings: HopSettings, edge_settings: HopSettings) -> Chain {
    let metrics = PrometheusMetrics::builder()
        .without_target_info()
        .build()
        .unwrap();
    let meter = metrics.meter("grpc-example");
    let (backend, observed) =
        serve::backend(listener().await, &backend_settings, Some(&meter)).unwrap();
    let edge = serve::edge(listener().await, backend.addr, &edge_settings, Some(&meter)).unwrap();
    let channel = Channel::from_shared(format!("http://{}", edge.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Chain {
        client: EchoClient::new(channel.clone()),
        channel,
        backend: observed,
        metrics,
        _servers: (edge, backend),
    }
}

fn echo(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_string(),
        ..Default::default()
    }
}

fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

#[tokio::test(start_paused = true)]
async fn the_backend_gets_what_is_left_of_the_callers_budget() {
    let mut chain = chain(HopSettings::default(), HopSettings::default()).await;
    let reply = chain
        .client
        .unary(with_timeout(echo("hi"), Duration::from_secs(2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "hi");
    assert!(
        reply.received_timeout_ms > 0 && reply.received_timeout_ms < 2000,
        "the edge forwards a smaller budget: {} ms",
        reply.received_timeout_ms
    );
    assert_eq!(chain.backend.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_backend_slower_than_the_budget_is_deadline_exceeded_and_its_work_dropped() {
    let mut chain = chain(HopSettings::default(), HopSettings::default()).await;
    let budget = Duration::from_millis(300);
    let started = tokio::time::Instant::now();
    let slow = EchoRequest {
        delay_ms: 2_000,
        ..echo("slow")
    };
    let status = chain
        .client
        .unary(with_timeout(slow, budget))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // The backend's deadline (the budget less the edge's margin for the way back) ends it.
    let margin = HopSettings::default().propagate_margin;
    assert!(took >= budget - margin, "{took:?}");
    assert!(took <= budget + Duration::from_millis(50), "{took:?}");
    // The backend's handler was dropped mid-sleep, not left running.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(chain.backend.dropped.load(Ordering::SeqCst), 1);
    assert_eq!(
        chain.backend.calls.load(Ordering::SeqCst),
        1,
        "never retried"
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_statuses_are_never_retried_and_unavailable_is() {
    let mut chain = chain(HopSettings::default(), HopSettings::default()).await;
    for (code, expected) in [
        (3, Code::InvalidArgument),
        (5, Code::NotFound),
        (7, Code::PermissionDenied),
    ] {
        let before = chain.backend.calls.load(Ordering::SeqCst);
        let failing = EchoRequest {
            fail_code: code,
            ..echo("x")
        };
        let status = chain.client.unary(failing).await.unwrap_err();
        assert_eq!(status.code(), expected);
        let calls = chain.backend.calls.load(Ordering::SeqCst) - before;
        assert_eq!(calls, 1, "status {code} is not worth retrying");
    }
    let before = chain.backend.calls.load(Ordering::SeqCst);
    let unavailable = EchoRequest {
        fail_code: 14,
        ..echo("x")
    };
    let status = chain.client.unary(unavailable).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let calls = chain.backend.calls.load(Ordering::SeqCst) - before;
    assert_eq!(calls, 1 + 4, "UNAVAILABLE is retried up to max_retries");
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_fails_after_its_first_message_is_not_retried() {
    let mut chain = chain(HopSettings::default(), HopSettings::default()).await;
    let request = EchoRequest {
        count: 3,
        fail_code: 14,
        fail_after: 1,
        ..echo("s")
    };
    let mut stream = chain.client.stream(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.index, 0);
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "status from the trailers");
    assert_eq!(chain.backend.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn malformed_grpc_timeouts_are_ignored_counted_and_the_call_served() {
    let chain = chain(HopSettings::default(), HopSettings::default()).await;
    let malformed: [&[u8]; 4] = [b"123456789S", b"10X", b"", b"1\xe9m"];
    for value in malformed {
        // tonic's metadata takes visible ASCII only: write the raw header below it.
        let header = http::HeaderValue::from_bytes(value).unwrap();
        let raw = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<tonic::body::Body>| {
                request.headers_mut().insert("grpc-timeout", header.clone());
                request
            })
            .service(chain.channel.clone());
        let reply = EchoClient::new(raw).unary(echo("m")).await;
        assert!(reply.is_ok(), "{value:?}: {reply:?}");
    }
    let text = chain.metrics.render().unwrap();
    let invalid: f64 = text
        .lines()
        .filter(|l| l.starts_with("tower_deadline_invalid_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        invalid, 4.0,
        "each malformed value counted once, at the edge:\n{text}"
    );
}

/// The sum of the `_count` samples of `metric` whose labels contain every one of `labels`.
fn count(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}_count{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(start_paused = true)]
async fn statuses_from_trailers_reach_the_metrics_with_the_method_from_the_path() {
    let mut chain = chain(HopSettings::default(), HopSettings::default()).await;
    let request = EchoRequest {
        count: 3,
        fail_code: 5,
        fail_after: 2,
        ..echo("s")
    };
    let mut stream = chain.client.stream(request).await.unwrap().into_inner();
    while let Ok(Some(_)) = stream.message().await {}
    chain.client.unary(echo("ok")).await.unwrap();
    let text = chain.metrics.render().unwrap();
    // OpenTelemetry's current RPC conventions: `rpc.method` is `service/method` (there is no
    // separate `rpc.service` any more) and `rpc.status_code` the status's name.
    for metric in [
        "rpc_server_call_duration_seconds",
        "rpc_client_call_duration_seconds",
    ] {
        // NOT_FOUND arrived in trailers, after two streamed messages.
        let streamed = count(
            &text,
            metric,
            &[
                "rpc_method=\"reliability.echo.v1.Echo/Stream\"",
                "rpc_status_code=\"NOT_FOUND\"",
            ],
        );
        let unary = count(
            &text,
            metric,
            &[
                "rpc_method=\"reliability.echo.v1.Echo/Unary\"",
                "rpc_status_code=\"OK\"",
            ],
        );
        // The server metrics see both hops (edge and backend); the client metrics one.
        let hops = if metric.contains("server") { 2.0 } else { 1.0 };
        assert_eq!((streamed, unary), (hops, hops), "{metric}:\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_backend_answers_unavailable_at_once_and_the_edge_retries_after_its_pushback() {
    let one_at_a_time = HopSettings {
        concurrency: 1,
        queue_capacity: 0,
        ..HopSettings::default()
    };
    let mut chain = chain(one_at_a_time, HopSettings::default()).await;
    let slow = EchoRequest {
        delay_ms: 500,
        ..echo("slow")
    };
    let mut occupant = chain.client.clone();
    let occupying = tokio::spawn(async move { occupant.unary(slow).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(chain.backend.calls.load(Ordering::SeqCst), 1);

    // Straight to the backend: turned away at once, with gRPC's pushback.
    let direct = Channel::from_shared(format!("http://{}", chain._servers.1.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let status = EchoClient::new(direct).unary(echo("x")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(5));
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "1000"
    );

    // Through the edge: its retry waits the pushback (not the 100 ms backoff), by when the
    // slot is free again.
    let started = tokio::time::Instant::now();
    let reply = chain
        .client
        .unary(echo("after"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "after");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert!(occupying.await.unwrap().is_ok());
    assert_eq!(
        chain.backend.calls.load(Ordering::SeqCst),
        2,
        "rejected attempts never reached the handler"
    );
}
