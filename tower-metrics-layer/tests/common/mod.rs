//! Shared test helpers: an SDK provider with an in-memory exporter, a real axum
//! server on 127.0.0.1:0, and a hyper-util client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The in-memory meter every crate's tests share.
#[allow(unused_imports)]
pub(crate) use test_meter::{Point, TestMeter as TestMetrics};

/// Waits (bounded) until the total of sum metric `name` equals `want`; the total last seen.
pub(crate) async fn wait_for_total(metrics: &TestMetrics, name: &str, want: f64) -> f64 {
    let mut got = metrics.sum_total(name);
    for _ in 0..200 {
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        got = metrics.sum_total(name);
    }
    got
}

/// Serves `app` on 127.0.0.1 port 0 and returns its address.
pub(crate) async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

pub(crate) type TestClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and reads the whole response; returns status and body.
pub(crate) async fn send(client: &TestClient, method: &str, uri: String) -> (u16, Bytes) {
    send_with(client, method, uri, &[]).await
}

pub(crate) async fn send_with(
    client: &TestClient,
    method: &str,
    uri: String,
    headers: &[(&str, &str)],
) -> (u16, Bytes) {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}
