//! CP2_CIRCUIT_BREAKER_ENABLED: a provider that keeps failing is cut off after the breaker's
//! volume of failed attempts, callers get 503 + Retry-After at once, and the state is on
//! /metrics.

use http::StatusCode;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_is_cut_off_after_twenty_failed_attempts() {
    let upstream = Upstream::fixed(503, std::time::Duration::ZERO).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_RETRY_BASE_MS", "1"),
            ("CP2_CIRCUIT_BREAKER_ENABLED", "true"),
        ],
    ));
    let client = client();
    let mut by_status = std::collections::BTreeMap::new();
    let mut refused = 0;
    for _ in 0..10 {
        let answer = get(&client, &gateway.url("/v1/chat")).await;
        *by_status.entry(answer.status).or_insert(0) += 1;
        if answer.body.contains("circuit open") {
            refused += 1;
            assert_eq!(
                answer.headers["retry-after"], "5",
                "the open time left, in seconds"
            );
        }
    }
    assert_eq!(
        by_status.values().sum::<i32>(),
        10,
        "one answer per request"
    );
    assert_eq!(by_status.get(&StatusCode::SERVICE_UNAVAILABLE), Some(&10));
    // Default breaker: opens at a 50% failure share once 20 attempts were seen.
    assert_eq!(
        upstream.calls(),
        20,
        "the provider sees no call once the breaker is open"
    );
    assert!(
        refused >= 5,
        "later requests are refused at once: {refused}"
    );

    let metrics = get(&client, &gateway.url("/metrics")).await.body;
    let state = metrics
        .lines()
        .find(|l| l.starts_with("tower_circuit_state{") && l.contains("tower_circuit_name=\"a\""))
        .unwrap_or_else(|| panic!("no tower_circuit_state for a:\n{metrics}"));
    assert!(state.ends_with(" 2"), "open: {state}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tower_circuit_transitions_total{")
                && l.contains("from=\"closed\"")
                && l.contains("to=\"open\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_every_request_still_reaches_the_failing_provider() {
    let upstream = Upstream::fixed(503, std::time::Duration::ZERO).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[("GATEWAY_UPSTREAMS", &list), ("GATEWAY_RETRY_BASE_MS", "1")],
    ));
    let client = client();
    for _ in 0..10 {
        let answer = get(&client, &gateway.url("/v1/chat")).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!answer.body.contains("circuit open"));
    }
    assert!(upstream.calls() > 20, "{} calls", upstream.calls());
}
