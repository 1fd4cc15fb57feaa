//! `/metrics`: promtool-valid, bounded cardinality, 404 when off.

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;

use crate::common::*;
use prometheus_server::promtool_check;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_unknown_paths_add_no_label() {
    let upstream = Upstream::start(vec![status(503)], status(200)).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("METRICS_TENANT_LABEL_ALLOWLIST", "acme"),
        ],
    ));
    let client = client();
    for tenant in ["acme", "globex"] {
        let request = Request::get(gateway.url("/v1/chat"))
            .header("x-tenant-id", tenant)
            .body(Full::default())
            .unwrap();
        assert_eq!(send(&client, request).await.status, StatusCode::OK);
    }
    // One request of each kind first, so each kind's series exist before the distinct paths.
    assert_eq!(
        get(&client, &gateway.url("/unknown")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&client, &gateway.url("/v1/known")).await.status,
        StatusCode::OK
    );
    // ... and a scrape, whose own series appears once it has been answered.
    assert_eq!(
        get(&client, &gateway.url("/metrics")).await.status,
        StatusCode::OK
    );
    let before = get(&client, &gateway.url("/metrics")).await;
    assert_eq!(before.status, StatusCode::OK);
    let series_before = before.body.lines().filter(|l| !l.starts_with('#')).count();

    // 1,000 distinct paths: half unknown to the gateway (404), half proxied under /v1/.
    for i in 0..1000 {
        let path = if i % 2 == 0 {
            format!("/unknown-{i}")
        } else {
            format!("/v1/unknown-{i}")
        };
        let answer = get(&client, &gateway.url(&path)).await;
        let expected = if i % 2 == 0 { 404 } else { 200 };
        assert_eq!(answer.status.as_u16(), expected, "{path}");
    }
    let after = get(&client, &gateway.url("/metrics")).await.body;
    let (ok, report) = promtool_check(&after);
    assert!(ok, "promtool check metrics failed:\n{report}");

    let values = label_values(&after);
    assert!(
        values.iter().all(|v| !v.contains("unknown-")),
        "a path became a label value"
    );
    let series_after = after.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(
        series_after, series_before,
        "no series added by 1,000 distinct paths"
    );
    assert!(after.contains("http_route=\"/v1/{*path}\""));
    assert!(after.contains("tenant=\"acme\""));
    assert!(!after.contains("tenant=\"globex\""), "not on the allowlist");
    assert!(after.contains("tenant=\"other\""));
    // One retry happened (the first 503), recorded by the retry layer on the same registry.
    assert!(
        sample_sum(
            &after,
            "tower_retry_attempts_total",
            &["outcome=\"failure\""]
        ) >= 1.0
    );
    assert!(after.contains("tower_queue_depth"));
    assert!(after.contains("http_client_request_duration_seconds_bucket"));
    assert!(after.contains("provider_name=\"a\""));
    assert!(
        after.contains("server_address=\"127.0.0.1\""),
        "server.address is where the call went, the provider's name is provider.name"
    );
    assert!(after.contains(&format!("server_port=\"{}\"", upstream.addr.port())));
    assert!(after.contains("gateway_routing_duration_seconds_bucket"));
    assert!(
        sample_sum(&after, "gateway_runtime_alive_tasks", &[]) >= 1.0,
        "the workers' live tasks, for soak tests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_answers_404_on_metrics() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(ALL_OFF, &[("GATEWAY_UPSTREAMS", &list)]));
    let client = client();
    assert_eq!(
        get(&client, &gateway.url("/v1/x")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&client, &gateway.url("/metrics")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&client, &gateway.url("/healthz")).await.body, "ok");
}
