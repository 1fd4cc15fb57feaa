//! The `tracing` events a user sees at `debug` and `warn`, from requests to a real axum server
//! behind the queue (feature `tracing`, on by default).
#![cfg(feature = "tracing")]

mod common;

use axum::Router;
use axum::routing::get;
use common::{Gate, client, serve, wait_until};
use event_log::{EventLog, Recorded};
use tower_bounded_queue::BoundedQueueBuilder;
use tracing::Level;

#[tokio::test]
async fn a_wait_and_a_rejection_are_debug_events_and_rejections_are_summarised_at_warn() {
    // Current-thread runtime: the server's tasks run on this thread, where the subscriber is.
    let (log, events) = EventLog::new();
    let _guard = tracing::subscriber::set_default(log);
    let gate = Gate::new();
    let inner = gate.clone();
    let layer = BoundedQueueBuilder::new(1)
        .capacity(1)
        .name("web")
        .build()
        .http();
    let handle = layer.handle();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let gate = inner.clone();
                async move {
                    gate.pass().await;
                    "done"
                }
            }),
        )
        .layer(layer);
    let addr = serve(app).await;
    let client = client();

    let first = tokio::spawn({
        let client = client.clone();
        async move { common::get(&client, addr, "/").await }
    });
    wait_until("one in flight", || handle.in_flight() == 1).await;
    let second = tokio::spawn({
        let client = client.clone();
        async move { common::get(&client, addr, "/").await }
    });
    wait_until("one waiting", || handle.depth() == 1).await;
    // Nowhere to wait: three rejected at once.
    for _ in 0..3 {
        assert_eq!(common::get(&client, addr, "/").await.status, 503);
    }
    gate.release(2);
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);

    let events = events.take();
    let ours: Vec<&Recorded> = events
        .iter()
        .filter(|e| e.target == "tower_bounded_queue")
        .collect();
    let rejected: Vec<&&Recorded> = ours.iter().filter(|e| e.message == "rejected").collect();
    assert_eq!(rejected.len(), 3, "{ours:#?}");
    for event in &rejected {
        assert_eq!(event.level, Level::DEBUG);
        assert_eq!(event.field("queue"), Some("web"));
        assert_eq!(event.field("reason"), Some("full"));
        assert_eq!(event.field("depth"), Some("1"));
        assert_eq!(event.field("capacity"), Some("1"));
    }
    let admitted: Vec<&&Recorded> = ours
        .iter()
        .filter(|e| e.message == "admitted after waiting")
        .collect();
    assert_eq!(admitted.len(), 1, "{ours:#?}");
    assert_eq!(admitted[0].level, Level::DEBUG);
    assert!(admitted[0].field("waited_ms").is_some());
    assert_eq!(admitted[0].field("depth"), Some("0"));
    // The first rejection writes the summary; the next two fall in its period. The first
    // request, admitted at once, wrote nothing.
    let warnings: Vec<&&Recorded> = ours.iter().filter(|e| e.level == Level::WARN).collect();
    assert_eq!(warnings.len(), 1, "{ours:#?}");
    assert_eq!(warnings[0].field("count"), Some("1"));
    assert_eq!(warnings[0].field("last_reason"), Some("full"));
    assert_eq!(ours.len(), 3 + 1 + 1, "{ours:#?}");
    // tracing orders levels by verbosity: DEBUG > INFO > WARN.
    assert!(ours.iter().all(|e| e.level != Level::INFO), "{ours:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_change_of_an_adaptive_limit_is_a_debug_event() {
    use tower::{Layer, Service, ServiceExt};
    use tower_bounded_queue::Adaptive;

    let (log, events) = EventLog::new();
    let _guard = tracing::subscriber::set_default(log);
    let layer = BoundedQueueBuilder::new(8)
        .name("pool")
        .adaptive(Adaptive::aimd().backoff(0.5))
        .build();
    let mut svc = layer.layer(tower::service_fn(|fail: bool| async move {
        if fail { Err("down") } else { Ok(()) }
    }));
    let mut outcomes = 0;
    for fail in [false, true, false] {
        let _ = svc.ready().await.unwrap().call(fail).await;
        outcomes += 1;
    }
    assert_eq!(outcomes, 3);
    let events = events.take();
    let changes: Vec<&Recorded> = events
        .iter()
        .filter(|e| e.message == "concurrency limit changed")
        .collect();
    assert_eq!(changes.len(), 1, "{events:#?}");
    let change = changes[0];
    assert_eq!(change.level, Level::DEBUG);
    assert_eq!(change.target, "tower_bounded_queue");
    assert_eq!(change.field("queue"), Some("pool"));
    assert_eq!(change.field("from"), Some("8"));
    assert_eq!(change.field("to"), Some("4"));
    assert_eq!(change.field("cause"), Some("failed"));
}
