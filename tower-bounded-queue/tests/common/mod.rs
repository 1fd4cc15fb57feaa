//! Shared test support: a real axum server on 127.0.0.1, a hyper client, an inner handler the
//! test holds and releases, and an in-memory OpenTelemetry reader.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

/// Holds every request until the test releases it; counts how many got in.
#[derive(Clone)]
pub(crate) struct Gate {
    pub permits: Arc<Semaphore>,
    pub entered: Arc<AtomicUsize>,
    pub finished: Arc<AtomicUsize>,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(0)),
            entered: Arc::default(),
            finished: Arc::default(),
        }
    }

    pub(crate) async fn pass(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.permits.acquire().await.unwrap().forget();
        self.finished.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }

    pub(crate) fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }
}

pub(crate) async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

pub(crate) type HttpClient = Client<HttpConnector, Empty<bytes::Bytes>>;

pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub(crate) struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

pub(crate) async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> Answer {
    request(client, addr, path, None).await
}

pub(crate) async fn request(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
) -> Answer {
    let mut builder = http::Request::get(format!("http://{addr}{path}"));
    if let Some(ct) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, ct);
    }
    let response = client
        .request(builder.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// Waits (bounded, real time) until `condition` holds; panics with `what` otherwise.
pub(crate) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The in-memory meter every crate's tests share.
#[allow(unused_imports)]
pub(crate) use test_meter::TestMeter as TestMetrics;
