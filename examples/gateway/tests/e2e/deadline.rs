//! Deadlines: enforced at the gateway, propagated to the upstream, or absent with the flag off.

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_on_answers_504_before_a_slow_upstream_and_propagates_a_smaller_budget() {
    let upstream = Upstream::fixed(200, Duration::from_secs(2)).await;
    let list = upstreams(&[("slow", &upstream)]);
    let gateway = Gateway::start(&env(ALL_ON, &[("GATEWAY_UPSTREAMS", &list)]));
    let request = Request::get(gateway.url("/v1/chat"))
        .header("x-request-timeout-ms", "300")
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.body
    );
    assert!(
        answer.took < Duration::from_secs(1),
        "took {:?}",
        answer.took
    );
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "a deadline exceeded is never retried");
    let budget: u64 = seen[0].headers["x-request-timeout-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(budget > 0 && budget < 300, "upstream saw {budget} ms");
    // The provider call was cut short: counted as `outgoing`, as the dashboard says, and not
    // as `handling` (the gateway itself had time left to answer).
    let metrics = get(&client(), &gateway.url("/metrics")).await.body;
    let exceeded = |stage: &str| {
        sample_sum(
            &metrics,
            "tower_deadline_exceeded_total",
            &[&format!("where=\"{stage}\"")],
        )
    };
    assert_eq!(exceeded("outgoing"), 1.0, "{metrics}");
    assert_eq!(exceeded("handling"), 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_off_forwards_the_header_untouched_and_waits_for_the_upstream() {
    let upstream = Upstream::fixed(200, Duration::from_millis(600)).await;
    let list = upstreams(&[("slow", &upstream)]);
    let gateway = Gateway::start(&env(ALL_OFF, &[("GATEWAY_UPSTREAMS", &list)]));
    let request = Request::get(gateway.url("/v1/chat"))
        .header("x-request-timeout-ms", "300")
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "no deadline layer: {}",
        answer.body
    );
    assert!(answer.took >= Duration::from_millis(600));
    assert_eq!(upstream.seen()[0].headers["x-request-timeout-ms"], "300");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_cap_bounds_requests_without_a_header() {
    let upstream = Upstream::fixed(200, Duration::from_secs(2)).await;
    let list = upstreams(&[("slow", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[("GATEWAY_UPSTREAMS", &list), ("GATEWAY_TIMEOUT_MS", "200")],
    ));
    let answer = get(&client(), &gateway.url("/v1/chat")).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    let budget: u64 = upstream.seen()[0].headers["x-request-timeout-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(budget <= 200, "upstream saw {budget} ms");
}
