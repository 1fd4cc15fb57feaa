//! Real servers and clients on 127.0.0.1 for the integration tests.

#![allow(dead_code)]

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_deadline::ConnectDeadline;

/// Serves `app` on a fresh loopback port.
pub(crate) async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A loopback address whose accept queue is full: further connects get no answer.
pub(crate) fn black_hole() -> (std::net::SocketAddr, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Never accepted; leaked so the listener stays open for the test's lifetime.
    std::mem::forget(listener);
    let mut filled = Vec::new();
    for _ in 0..64 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            Ok(stream) => filled.push(stream),
            Err(_) => return (addr, filled),
        }
    }
    panic!("the accept queue never filled up");
}

pub(crate) type HttpClient = Client<ConnectDeadline<HttpConnector>, Body>;

/// An HTTP/1.1 client whose connects are bounded by the deadline.
pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(ConnectDeadline::new(HttpConnector::new()))
}

/// An HTTP/2 (prior knowledge) client, as gRPC uses.
pub(crate) fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(ConnectDeadline::new(HttpConnector::new()))
}

/// The in-memory meter every crate's tests share.
#[allow(unused_imports)]
pub(crate) use test_meter::TestMeter as TestMetrics;
