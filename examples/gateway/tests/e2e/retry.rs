//! Retry on and off: which upstream failures are retried, and how often the upstream is called.

use http::StatusCode;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_turns_503_then_200_into_200_after_two_calls() {
    let upstream = Upstream::start(vec![status(503)], status(200)).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(ALL_ON, &[("GATEWAY_UPSTREAMS", &list)]));
    let answer = get(&client(), &gateway.url("/v1/chat")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_calls_a_404_upstream_exactly_once() {
    let upstream = Upstream::start(vec![status(404)], status(200)).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(ALL_ON, &[("GATEWAY_UPSTREAMS", &list)]));
    let answer = get(&client(), &gateway.url("/v1/missing")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_off_returns_the_503_after_one_call() {
    let upstream = Upstream::start(vec![status(503)], status(200)).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(ALL_OFF, &[("GATEWAY_UPSTREAMS", &list)]));
    let answer = get(&client(), &gateway.url("/v1/chat")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body, "upstream 503\n", "the upstream's own answer");
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_recovers_from_429_and_a_reset_connection() {
    let upstream = Upstream::start(vec![status(429), Action::Reset], status(200)).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_RETRY_BASE_MS", "10"),
        ],
    ));
    let answer = get(&client(), &gateway.url("/v1/chat")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_off_answers_a_reset_with_502_after_one_call() {
    let upstream = Upstream::start(vec![Action::Reset], status(200)).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(ALL_OFF, &[("GATEWAY_UPSTREAMS", &list)]));
    let answer = get(&client(), &gateway.url("/v1/chat")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_upstream_port_is_a_502_in_both_modes() {
    let closed = closed_port().await;
    let list = format!("down=http://{closed}");
    for flags in [ALL_ON, ALL_OFF] {
        let gateway = Gateway::start(&env(
            flags,
            &[("GATEWAY_UPSTREAMS", &list), ("GATEWAY_RETRY_BASE_MS", "5")],
        ));
        let answer = get(&client(), &gateway.url("/v1/chat")).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
        assert!(
            answer.body.contains("down"),
            "names the provider: {}",
            answer.body
        );
    }
}
