//! The circuit breaker in HTTP mode in front of a real tonic server, called by a real tonic
//! client: once open it answers gRPC callers the way the queue does, with status 14
//! UNAVAILABLE, `grpc-retry-pushback-ms` and `x-overloaded`, and the backend sees no call.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use grpc_example::backend::Backend;
use grpc_example::pb::EchoRequest;
use grpc_example::pb::echo_client::EchoClient;
use grpc_example::pb::echo_server::EchoServer;
use http::Response;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::service::Routes;
use tonic::transport::Channel;
use tower::ServiceBuilder;
use tower_reliability_core::ResponseBody;
use tower_retry_classified::{CircuitBreakerBuilder, CircuitState};

fn failing(code: u32) -> EchoRequest {
    EchoRequest {
        message: "x".to_string(),
        fail_code: code,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_answers_a_tonic_client_with_unavailable_and_pushback() {
    let backend = Backend::new();
    let observed = backend.observed();
    let router = Routes::new(EchoServer::new(backend))
        .prepare()
        .into_axum_router();
    let breaker = CircuitBreakerBuilder::new()
        .min_volume(4)
        .failure_ratio(0.5)
        .open_time(Duration::from_secs(5), Duration::from_secs(60))
        .build()
        .http();
    let handle = breaker.handle();
    let service = ServiceBuilder::new()
        .map_response(|response: Response<ResponseBody<Body>>| response.map(Body::new))
        .layer(breaker)
        .service(router);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tokio::spawn(async move { axum::serve(listener, tower::make::Shared::new(service)).await });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = EchoClient::new(channel);

    // Four UNAVAILABLE answers from the backend itself: retryable failures, so they count.
    for _ in 0..4 {
        let status = client.unary(failing(14)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("asked to fail"), "{status:?}");
    }
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(observed.calls.load(Ordering::SeqCst), 4);

    // Now the breaker answers for the backend: UNAVAILABLE with gRPC's pushback and the
    // overload marker, so that a retrying caller waits and a retry layer leaves it alone.
    let status = client.unary(failing(0)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("circuit open"), "{status:?}");
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "5000"
    );
    assert_eq!(status.metadata().get("x-overloaded").unwrap(), "true");
    assert_eq!(
        observed.calls.load(Ordering::SeqCst),
        4,
        "the refused call never reached the backend"
    );

    // After the open time a probe goes through and is answered by the backend.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reply = client.unary(failing(0)).await.unwrap();
    assert_eq!(reply.into_inner().message, "x");
    assert_eq!(observed.calls.load(Ordering::SeqCst), 5);
    server.abort();
}
