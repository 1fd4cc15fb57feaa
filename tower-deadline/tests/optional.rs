//! `optional`: a deadline layer switched by a flag, served by a real server either way with one
//! service type, and only present when on.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, service_fn};
use tower_deadline::DeadlineLayer;
use tower_reliability_core::optional;

/// Serves a handler that takes two seconds, behind the deadline layer when `on`.
async fn start(on: bool) -> std::net::SocketAddr {
    let slow = service_fn(|_: Request<Body>| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok::<_, Infallible>(Response::new(Body::from("done")))
    });
    let deadline = on.then(|| DeadlineLayer::new().http().max(Duration::from_secs(30)));
    // With `ServiceBuilder::option_layer` this would not compile: `tower::util::Either` needs
    // both branches to answer one type, and the layer's body is not the handler's. Here the
    // body is `Either<ResponseBody<Body>, Body>` whatever the flag, and nothing is boxed.
    let service = ServiceBuilder::new()
        .layer(optional(deadline))
        .service(slow);
    common::serve(Router::new().fallback_service(service)).await
}

async fn ask(addr: std::net::SocketAddr) -> (StatusCode, bytes::Bytes) {
    let request = Request::get(format!("http://{addr}/"))
        .header("x-request-timeout-ms", "100")
        .body(Body::empty())
        .unwrap();
    let response = common::client().request(request).await.unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(start_paused = true)]
async fn on_enforces_the_deadline_and_off_is_the_bare_service() {
    let (status, _) = ask(start(true).await).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "layer present");
    let (status, body) = ask(start(false).await).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "layer absent: the header means nothing"
    );
    assert_eq!(body, "done");
}
