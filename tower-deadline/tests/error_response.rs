//! `error_response` in a real proxy: an axum server whose handler calls an upstream through
//! `PropagateDeadlineLayer` and a hyper-util client with `ConnectDeadline`, and answers the
//! call's error with `error_response` (502 for anything else), for plain HTTP and gRPC callers.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_deadline::{ConnectDeadline, Deadline, PropagateDeadlineLayer};
use tower_reliability_core::{Protocol, error_response};

/// The proxy's budget for one upstream call, and its connect budget.
const CALL_BUDGET: Duration = Duration::from_millis(300);
const CONNECT_BUDGET: Duration = Duration::from_millis(100);

async fn proxy(State(upstream): State<SocketAddr>, request: Request) -> Response {
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let client = ServiceBuilder::new()
        .layer(PropagateDeadlineLayer::new())
        .service(
            Client::builder(TokioExecutor::new())
                .build(ConnectDeadline::new(HttpConnector::new()).budget(CONNECT_BUDGET)),
        );
    let mut outgoing = http::Request::get(format!("http://{upstream}/"))
        .body(Body::empty())
        .unwrap();
    outgoing
        .extensions_mut()
        .insert(Deadline::after(CALL_BUDGET));
    match client.oneshot(outgoing).await {
        Ok(response) => response.map(Body::new),
        Err(error) => match error_response::<Body>(
            &*error,
            if grpc { Protocol::Grpc } else { Protocol::Http },
        ) {
            Some(answer) => answer.map(Body::new),
            None => {
                let mut bad_gateway = Response::new(Body::from("upstream failed\n"));
                *bad_gateway.status_mut() = StatusCode::BAD_GATEWAY;
                bad_gateway
            }
        },
    }
}

/// Starts a proxy in front of `upstream`.
async fn start_proxy(upstream: SocketAddr) -> SocketAddr {
    common::serve(Router::new().fallback(any(proxy)).with_state(upstream)).await
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

async fn ask(proxy: SocketAddr, grpc: bool) -> Answer {
    let mut request = http::Request::post(format!("http://{proxy}/pkg.Svc/Call"));
    if grpc {
        request = request.header("content-type", "application/grpc");
    }
    let response = common::client()
        .request(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn assert_safe_grpc_message(answer: &Answer) {
    let message = answer.headers["grpc-message"].to_str().unwrap();
    assert!(
        message.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "{message:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_upstream_past_the_call_deadline_is_504_or_grpc_4() {
    let slow = common::serve(Router::new().fallback(any(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    })))
    .await;
    let proxy = start_proxy(slow).await;

    let plain = ask(proxy, false).await;
    assert_eq!(plain.status, StatusCode::GATEWAY_TIMEOUT);
    let text = std::str::from_utf8(&plain.body).unwrap();
    assert!(text.contains("300"), "the numbers behind it: {text}");

    let grpc = ask(proxy, true).await;
    assert_eq!(grpc.status, StatusCode::OK);
    assert_eq!(grpc.headers["grpc-status"], "4");
    assert_eq!(grpc.headers["content-type"], "application/grpc");
    assert_safe_grpc_message(&grpc);
    assert!(grpc.body.is_empty(), "trailers-only");
}

#[tokio::test(start_paused = true)]
async fn a_black_holed_connect_is_504_or_grpc_14() {
    let (black_hole, _held) = common::black_hole();
    let proxy = start_proxy(black_hole).await;

    let plain = ask(proxy, false).await;
    assert_eq!(plain.status, StatusCode::GATEWAY_TIMEOUT);
    let grpc = ask(proxy, true).await;
    assert_eq!(grpc.status, StatusCode::OK);
    assert_eq!(
        grpc.headers["grpc-status"], "14",
        "nothing was sent: UNAVAILABLE, which a gRPC client may retry"
    );
    assert_safe_grpc_message(&grpc);
}

#[tokio::test(start_paused = true)]
async fn other_errors_are_left_to_the_proxy() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let proxy = start_proxy(closed).await;
    let plain = ask(proxy, false).await;
    assert_eq!(plain.status, StatusCode::BAD_GATEWAY);
    assert_eq!(plain.body, "upstream failed\n");
}
