//! A peer's own overload rejection (`x-overloaded`, as `tower-bounded-queue` marks its 503s) is
//! not retried: the peer already shed the request, and only one layer should decide.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::client;
use http::{Request, Response};
use http_body_util::{Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bounded_queue::BoundedQueueBuilder;
use tower_retry_classified::{
    Attempts, Classification, HttpClassifier, Reason, RetryLayer, X_OVERLOADED,
};

/// A hop with a queue of one slot and no waiting room in front of a handler that holds its
/// slot until `release` has a permit; counts every request that reached the hop.
struct Hop {
    addr: std::net::SocketAddr,
    arrived: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
}

async fn hop() -> Hop {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrived = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let handler = {
        let release = Arc::clone(&release);
        tower::service_fn(move |_: Request<hyper::body::Incoming>| {
            let release = Arc::clone(&release);
            async move {
                release.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
            }
        })
    };
    let counted = {
        let arrived = Arc::clone(&arrived);
        ServiceBuilder::new()
            .map_request(move |request: Request<hyper::body::Incoming>| {
                arrived.fetch_add(1, Ordering::SeqCst);
                request
            })
            .layer(BoundedQueueBuilder::new(1).capacity(0).build().http())
            .service(handler)
    };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper_util::service::TowerToHyperService::new(counted.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Hop {
        addr,
        arrived,
        release,
    }
}

#[test]
fn the_marker_has_the_queues_wire_name() {
    assert_eq!(X_OVERLOADED, tower_bounded_queue::X_OVERLOADED);
}

#[tokio::test(start_paused = true)]
async fn a_peers_overload_rejection_is_answered_once_and_not_retried() {
    let hop = hop().await;
    let url = format!("http://{}/", hop.addr);
    // Take the hop's only slot.
    let occupant = {
        let url = url.clone();
        tokio::spawn(async move {
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build_http::<Empty<Bytes>>()
                .request(Request::get(url).body(Empty::new()).unwrap())
                .await
        })
    };
    while hop.arrived.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }

    let mut retrying = ServiceBuilder::new()
        .layer(RetryLayer::for_http())
        .service(client::<Empty<Bytes>>());
    let request = Request::get(url.as_str()).body(Empty::new()).unwrap();
    let response = retrying.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[&X_OVERLOADED], "true");
    assert_eq!(Attempts::of(&response), 1, "never retried");
    assert_eq!(
        hop.arrived.load(Ordering::SeqCst),
        2,
        "the occupant and one attempt"
    );

    // A hop that is the only one retrying may opt in, and then retries like any 503.
    let mut opted_in = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http()
                .classifier(HttpClassifier::new().retry_overloaded_peers(true))
                .max_retries(2),
        )
        .service(client::<Empty<Bytes>>());
    let request = Request::get(url.as_str()).body(Empty::new()).unwrap();
    let response = opted_in.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(Attempts::of(&response), 3);
    assert_eq!(hop.arrived.load(Ordering::SeqCst), 2 + 3);

    hop.release.add_permits(1);
    assert_eq!(occupant.await.unwrap().unwrap().status(), 200);
}

#[test]
fn only_would_be_retries_look_for_the_marker() {
    let classifier = HttpClassifier::new();
    let mut marked = http::HeaderMap::new();
    marked.insert(X_OVERLOADED, "true".parse().unwrap());
    let verdict = classifier.classify_response(http::StatusCode::SERVICE_UNAVAILABLE, &marked);
    assert_eq!(verdict.reason(), Reason::PEER_OVERLOADED);
    assert!(!verdict.is_retryable());
    // A marked success is a success; a marked 404 stays a client error.
    assert_eq!(
        classifier.classify_response(http::StatusCode::OK, &marked),
        Classification::Success
    );
    assert_eq!(
        classifier
            .classify_response(http::StatusCode::NOT_FOUND, &marked)
            .reason(),
        Reason::CLIENT_ERROR
    );
    let mut grpc = marked.clone();
    grpc.insert("grpc-status", "14".parse().unwrap());
    assert_eq!(
        classifier
            .classify_response(http::StatusCode::OK, &grpc)
            .reason(),
        Reason::PEER_OVERLOADED
    );
    assert!(
        classifier
            .retry_overloaded_peers(true)
            .classify_response(http::StatusCode::OK, &grpc)
            .is_retryable()
    );
}
