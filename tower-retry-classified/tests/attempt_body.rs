//! `RetryLayer::attempt_body`: the inner service is a real hyper-util client typed for a body
//! other than `ReplayBody`, shared with calls that do not retry.

mod common;

use bytes::Bytes;
use common::{Upstream, status};
use http::Request;
use http_body_util::{BodyExt, Either, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_retry_classified::{Attempts, ReplayBody, RetryLayer};

type Plain = Full<Bytes>;
type Shared = Either<ReplayBody<Plain>, Plain>;

#[tokio::test(start_paused = true)]
async fn a_client_typed_for_either_is_retried_and_shared_with_calls_that_are_not() {
    let upstream = Upstream::start(vec![status(503), status(200)]).await;
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(None)
        .build_http::<Shared>();
    let mut retrying = ServiceBuilder::new()
        .layer(RetryLayer::for_http().attempt_body::<Shared>())
        .service(client.clone());

    let request = Request::post(upstream.uri("/orders"))
        .header("idempotency-key", "order-7")
        .body(Full::new(Bytes::from_static(b"{\"qty\":2}")))
        .unwrap();
    let response = retrying.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(Attempts::of(&response), 2);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    for attempt in &seen {
        assert_eq!(
            attempt.body, "{\"qty\":2}",
            "each attempt sent the whole body"
        );
    }

    // The same client, without the layer, sends the caller's body as it is.
    let direct = Request::post(upstream.uri("/orders"))
        .body(Either::Right(Full::new(Bytes::from_static(b"once"))))
        .unwrap();
    let response = client.oneshot(direct).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "reply 2");
    assert_eq!(upstream.seen()[2].body, "once");
}

/// A body type of the user's own: anything implementing `From<ReplayBody<B>>` will do.
enum Outgoing {
    Retried(ReplayBody<Plain>),
}

impl From<ReplayBody<Plain>> for Outgoing {
    fn from(body: ReplayBody<Plain>) -> Self {
        Outgoing::Retried(body)
    }
}

impl http_body::Body for Outgoing {
    type Data = Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Outgoing::Retried(body) => std::pin::Pin::new(body).poll_frame(cx),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_user_body_type_with_from_is_accepted() {
    let upstream = Upstream::start(vec![status(502), status(502), status(200)]).await;
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(None)
        .build_http::<Outgoing>();
    let retrying = ServiceBuilder::new()
        .layer(RetryLayer::for_http().attempt_body::<Outgoing>())
        .service(client);
    let request = Request::put(upstream.uri("/item"))
        .body(Full::new(Bytes::from_static(b"v2")))
        .unwrap();
    let response = retrying.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(Attempts::of(&response), 3);
    assert!(upstream.seen().iter().all(|s| s.body == "v2"));
}
