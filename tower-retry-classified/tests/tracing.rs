//! The `tracing` events a user sees at `debug` and `warn`, from requests through a real hyper
//! upstream (feature `tracing`, on by default).
#![cfg(feature = "tracing")]

mod common;

use bytes::Bytes;
use common::{Upstream, client, status};
use event_log::{EventLog, Recorded};
use http::Request;
use http_body_util::Empty;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_retry_classified::{Backoff, Jitter, RetryLayer};
use tracing::Level;

fn named<'a>(events: &'a [Recorded], message: &str) -> Vec<&'a Recorded> {
    events.iter().filter(|e| e.message == message).collect()
}

#[tokio::test(start_paused = true)]
async fn each_retry_is_a_debug_event_with_its_attempt_reason_backoff_hint_and_budget() {
    let (log, events) = EventLog::new();
    let _guard = tracing::subscriber::set_default(log);
    let upstream = Upstream::start(vec![
        status(503).header("retry-after", "1"),
        status(503),
        status(200),
    ])
    .await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().backoff(Backoff::default().jitter(Jitter::None)))
        .service(client::<Empty<Bytes>>());
    let req = Request::get(upstream.uri("/")).body(Empty::new()).unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);

    let events = events.take();
    let ours: Vec<&Recorded> = events
        .iter()
        .filter(|e| e.target == "tower_retry_classified")
        .collect();
    assert_eq!(ours.len(), 2, "{ours:#?}");
    let scheduled = named(&events, "retry scheduled");
    assert_eq!(scheduled.len(), 2);
    for (event, attempt, backoff, hint) in [
        (scheduled[0], "1", "1000", "true"),
        (scheduled[1], "2", "200", "false"),
    ] {
        assert_eq!(event.level, Level::DEBUG);
        assert_eq!(event.field("attempt"), Some(attempt));
        assert_eq!(event.field("reason"), Some("service_unavailable"));
        assert_eq!(event.field("backoff_ms"), Some(backoff));
        assert_eq!(event.field("hint_honoured"), Some(hint));
        // The default budget's reserve (10 per second over 10 s) less what was withdrawn.
        let left: u64 = event.field("budget_left").unwrap().parse().unwrap();
        assert!(left > 0 && left <= 100, "budget_left {left}");
    }
    assert!(
        events.iter().all(|e| e.level > Level::INFO),
        "nothing at info or above: {events:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_a_debug_event_and_never_a_warning() {
    let (log, events) = EventLog::new();
    let _guard = tracing::subscriber::set_default(log);
    let upstream = Upstream::start(vec![status(404)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http())
        .service(client::<Empty<Bytes>>());
    let req = Request::get(upstream.uri("/")).body(Empty::new()).unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 404);

    let events = events.take();
    let not = named(&events, "not retried");
    assert_eq!(not.len(), 1, "{events:#?}");
    assert_eq!(not[0].level, Level::DEBUG);
    assert_eq!(not[0].field("why"), Some("permanent"));
    assert_eq!(not[0].field("reason"), Some("client_error"));
    assert_eq!(not[0].field("attempt"), Some("1"));
    // tracing orders levels by verbosity: DEBUG > INFO > WARN.
    assert!(events.iter().all(|e| e.level > Level::INFO), "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn give_ups_are_debug_events_summarised_at_warn_once_per_period() {
    let (log, events) = EventLog::new();
    let _guard = tracing::subscriber::set_default(log);
    let upstream = Upstream::start(vec![status(503)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().max_retries(1))
        .service(client::<Empty<Bytes>>());
    for _ in 0..5 {
        let req = Request::get(upstream.uri("/")).body(Empty::new()).unwrap();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(resp.status(), 503);
    }

    let events = events.take();
    let not = named(&events, "not retried");
    assert_eq!(not.len(), 5, "{events:#?}");
    for event in &not {
        assert_eq!(event.field("why"), Some("max_retries"));
        assert_eq!(event.field("attempt"), Some("2"));
    }
    // The summary is per process and its period is wall-clock time: the five give-ups of this
    // test (it is the only one in this binary that gives up a retryable failure) fall in one
    // period, so exactly one warning, written on the first.
    let warnings: Vec<&Recorded> = events.iter().filter(|e| e.level == Level::WARN).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0].field("count"), Some("1"));
    assert_eq!(warnings[0].field("last_why"), Some("max_retries"));
    assert_eq!(
        warnings[0].field("last_reason"),
        Some("service_unavailable")
    );
}
