//! The one `tracing` event of this crate: a label guard's first refusal, logged once at `warn`
//! however many values it refuses afterwards (feature `tracing`, on by default).
#![cfg(feature = "tracing")]

mod common;

use axum::Router;
use axum::routing::get;
use common::{TestMetrics, client, send, send_with, serve};
use event_log::EventLog;
use tower_metrics_layer::{LabelGuard, MetricsBuilder};
use tracing::Level;

#[tokio::test]
async fn a_full_label_guard_warns_once_naming_the_label_and_the_first_refused_value() {
    // Current-thread runtime: the server's tasks run on this thread, where the subscriber is.
    let (log, events) = EventLog::new();
    let _guard = tracing::subscriber::set_default(log);
    let m = TestMetrics::new();
    let guard = LabelGuard::allowlist(["acme"]);
    let layer = MetricsBuilder::http_server(&m.meter())
        .label_from_header(
            "tenant",
            http::HeaderName::from_static("x-tenant-id"),
            guard.clone(),
        )
        .build();
    let addr = serve(
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer),
    )
    .await;
    let c = client();
    let url = format!("http://{addr}/");
    send(&c, "GET", url.clone()).await;
    send_with(&c, "GET", url.clone(), &[("x-tenant-id", "acme")]).await;
    let ours = |events: Vec<event_log::Recorded>| -> Vec<event_log::Recorded> {
        // The OpenTelemetry SDK logs through tracing too.
        events
            .into_iter()
            .filter(|e| e.target == "tower_metrics_layer")
            .collect()
    };
    assert!(
        ours(events.take()).is_empty(),
        "nothing while every value fits"
    );
    for tenant in ["globex", "initech", "umbrella", "globex"] {
        send_with(&c, "GET", url.clone(), &[("x-tenant-id", tenant)]).await;
    }
    assert_eq!(guard.refused(), 4);

    let events = ours(events.take());
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event.level, Level::WARN);
    assert_eq!(event.target, "tower_metrics_layer");
    assert_eq!(event.field("label"), Some("tenant"));
    assert_eq!(event.field("first_refused"), Some("globex"));
    assert_eq!(event.field("admitted"), Some("1"));
}
