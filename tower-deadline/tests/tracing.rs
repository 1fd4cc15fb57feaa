//! The `tracing` events a user sees at `debug` and `warn`, from requests to a real axum server
//! behind the deadline layer (feature `tracing`, on by default).
#![cfg(feature = "tracing")]

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use event_log::{EventLog, Recorded};
use http::{Request, StatusCode};
use tower_deadline::DeadlineLayer;
use tracing::Level;

fn request(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(format!("http://{addr}/"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn reads_malformed_headers_and_misses_are_debug_events_and_misses_are_summarised_at_warn() {
    // Current-thread runtime: the server's tasks run on this thread, where the subscriber is.
    let (log, events) = EventLog::new();
    let _guard = tracing::subscriber::set_default(log);
    let app = Router::new()
        .fallback(any(|| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            "done"
        }))
        .layer(DeadlineLayer::new().http().max(Duration::from_secs(3)));
    let addr = common::serve(app).await;
    let client = common::client();
    let cases: [(&[(&str, &str)], StatusCode); 6] = [
        (&[("x-request-timeout-ms", "500")], StatusCode::OK),
        (&[("grpc-timeout", "1H")], StatusCode::OK),
        (&[], StatusCode::OK),
        (&[("x-request-timeout-ms", "abc\t1")], StatusCode::OK),
        (
            &[("x-request-timeout-ms", "50")],
            StatusCode::GATEWAY_TIMEOUT,
        ),
        (
            &[("x-request-timeout-ms", "60")],
            StatusCode::GATEWAY_TIMEOUT,
        ),
    ];
    for (headers, status) in cases {
        let response = client.request(request(addr, headers)).await.unwrap();
        assert_eq!(response.status(), status, "{headers:?}");
    }

    let events = events.take();
    let ours: Vec<&Recorded> = events
        .iter()
        .filter(|e| e.target == "tower_deadline")
        .collect();
    let named = |message: &str| -> Vec<&Recorded> {
        ours.iter()
            .copied()
            .filter(|e| e.message == message)
            .collect()
    };
    let read = named("deadline read");
    assert_eq!(read.len(), 6, "{ours:#?}");
    let expected = [
        ("x-request-timeout-ms", Some("500"), "500", "false"),
        ("grpc-timeout", Some("3600000"), "3000", "true"),
        ("none", None, "3000", "true"),
        ("none", None, "3000", "true"),
        ("x-request-timeout-ms", Some("50"), "50", "false"),
        ("x-request-timeout-ms", Some("60"), "60", "false"),
    ];
    for (event, (source, announced, budget, capped)) in read.iter().zip(expected) {
        assert_eq!(event.level, Level::DEBUG);
        assert_eq!(event.field("source"), Some(source));
        assert_eq!(event.field("announced_ms"), announced);
        assert_eq!(event.field("budget_ms"), Some(budget));
        assert_eq!(event.field("capped"), Some(capped));
    }

    let malformed = named("malformed deadline header");
    assert_eq!(malformed.len(), 1, "{ours:#?}");
    assert_eq!(malformed[0].level, Level::DEBUG);
    assert_eq!(malformed[0].field("header"), Some("x-request-timeout-ms"));
    // Escaped: a control byte in a header cannot reach the log as it is.
    assert_eq!(malformed[0].field("value"), Some("abc\\t1"));
    assert_eq!(malformed[0].field("rejected"), Some("false"));

    let exceeded = named("deadline exceeded");
    assert_eq!(exceeded.len(), 2, "{ours:#?}");
    for event in &exceeded {
        assert_eq!(event.level, Level::DEBUG);
        assert_eq!(event.field("where"), Some("handling"));
    }
    // One summary for both misses: the second falls in the first one's period.
    let warnings: Vec<&&Recorded> = ours.iter().filter(|e| e.level == Level::WARN).collect();
    assert_eq!(warnings.len(), 1, "{ours:#?}");
    assert_eq!(warnings[0].field("count"), Some("1"));
    assert_eq!(warnings[0].field("last_where"), Some("handling"));
    assert_eq!(ours.len(), 6 + 1 + 2 + 1, "{ours:#?}");
}
