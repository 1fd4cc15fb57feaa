//! A real Prometheus server scrapes the real gateway; its answers must match what was sent.
//!
//! Needs `/usr/bin/prometheus` (Debian's `prometheus` package; `.ci/run` installs it).

use gateway_harness as common;

use std::time::{Duration, Instant};

use http::StatusCode;

use common::*;
use prometheus_server::Prometheus;

/// The whole test stays well under this.
const BUDGET: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_requests_and_latency_the_test_sent() {
    let started = Instant::now();
    // 10% of calls take 300 ms, the rest 20 ms: the p99 lies in the (0.25, 0.5] bucket.
    let mut script = Vec::new();
    for i in 0..100 {
        let delay = if i % 10 == 0 { 300 } else { 20 };
        script.push(slow(200, Duration::from_millis(delay)));
    }
    // The warm-up request answers like the fast ones.
    script.insert(0, slow(200, Duration::from_millis(20)));
    let upstream = Upstream::start(script, status(200)).await;
    let list = format!("a={}", upstream.url());
    let gateway = Gateway::start(&[
        ("CP2_OBSERVABILITY_METRICS_ENABLED", "true"),
        ("CP2_QUEUE_MANAGEMENT_ENABLED", "true"),
        ("CP2_COMPLETE_TIMEOUT_ENABLED", "true"),
        ("CP2_ADVANCED_RETRY_ENABLED", "true"),
        ("GATEWAY_UPSTREAMS", &list),
    ]);
    let client = client();
    let prometheus = Prometheus::start("gateway", &gateway.addr.to_string(), &[]).await;

    // One request first, so the series exist (and are scraped) before the traffic whose rate
    // Prometheus must compute.
    assert_eq!(
        get(&client, &gateway.url("/v1/warm-up")).await.status,
        StatusCode::OK
    );
    let count = "sum(http_server_request_duration_seconds_count{http_route=\"/v1/{*path}\"})";
    let mut scraped = false;
    while started.elapsed() < Duration::from_secs(20) {
        if prometheus.sample(count).await == Some(1.0) {
            scraped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(scraped, "Prometheus never scraped the gateway");

    // 100 requests, 10 at a time: in order, so exactly every tenth is slow.
    for batch in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..10 {
            let url = gateway.url(&format!("/v1/item-{}", batch * 10 + i));
            let client = client.clone();
            tasks.push(tokio::spawn(async move { get(&client, &url).await.status }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), StatusCode::OK);
        }
    }
    assert_eq!(upstream.calls(), 101);

    let mut total = None;
    while started.elapsed() < BUDGET - Duration::from_secs(5) {
        total = prometheus.sample(count).await;
        if total == Some(101.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(total, Some(101.0), "request count seen by Prometheus");

    let p99 = prometheus
        .sample(
            "histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{http_route=\"/v1/{*path}\"}[1m])))",
        )
        .await
        .expect("a p99");
    assert!(
        p99 > 0.25 && p99 <= 0.5,
        "p99 {p99} s: 10 of 100 requests took 300 ms"
    );
    let p50 = prometheus
        .sample(
            "histogram_quantile(0.5, sum by (le) (rate(http_server_request_duration_seconds_bucket{http_route=\"/v1/{*path}\"}[1m])))",
        )
        .await
        .expect("a p50");
    assert!(
        p50 > 0.005 && p50 <= 0.1,
        "p50 {p50} s: 90 of 100 requests took 20 ms"
    );
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}
