//! Connect bounds against real loopback sockets: a port nobody listens on, and a listener whose
//! accept queue is full so new connects hang (a black hole, without leaving loopback).

mod common;

use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_deadline::{ConnectDeadline, ConnectTimeout, Deadline, DeadlineExceeded};

#[tokio::test(start_paused = true)]
async fn a_black_holed_connect_is_cut_at_the_connect_budget() {
    let (addr, _held) = common::black_hole();
    let connector = ConnectDeadline::new(HttpConnector::new()).budget(Duration::from_secs(2));
    let started = Instant::now();
    let uri: Uri = format!("http://{addr}/").parse().unwrap();
    let error = connector.oneshot(uri).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let timeout = error
        .downcast_ref::<ConnectTimeout>()
        .expect("a connect timeout");
    assert_eq!(timeout.budget(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_black_holed_connect_stops_at_the_request_deadline_when_that_is_sooner() {
    let (addr, _held) = common::black_hole();
    let connector = ConnectDeadline::new(HttpConnector::new()); // 5 s budget
    let started = Instant::now();
    let uri: Uri = format!("http://{addr}/").parse().unwrap();
    let error = Deadline::after(Duration::from_millis(700))
        .scope(connector.oneshot(uri))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(700));
    let exceeded = error
        .downcast_ref::<DeadlineExceeded>()
        .expect("the request deadline");
    assert_eq!(exceeded.budget(), Duration::from_millis(700));
}

#[tokio::test(start_paused = true)]
async fn a_refused_connect_fails_at_once_with_the_real_error() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }; // closed again: nobody listens there now
    let connector = ConnectDeadline::new(HttpConnector::new());
    let uri: Uri = format!("http://{addr}/").parse().unwrap();
    let error = connector.oneshot(uri).await.unwrap_err();
    assert!(error.downcast_ref::<ConnectTimeout>().is_none(), "{error}");
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    let mut refused = false;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        source = e.source();
    }
    assert!(refused, "connection refused is in the chain: {error:?}");
}
