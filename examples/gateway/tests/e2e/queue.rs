//! Admission control: rejections under overload, queued deadlines, readiness.

use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::Full;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_on_rejects_the_excess_quickly_and_serves_the_rest() {
    let upstream = Upstream::fixed(200, Duration::from_secs(1)).await;
    let list = upstreams(&[("slow", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_MAX_CONCURRENCY", "2"),
            ("GATEWAY_QUEUE_CAPACITY", "2"),
        ],
    ));
    let answers = parallel(gateway.url("/v1/chat"), 20).await;
    let served = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let rejected: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(
        served + rejected.len(),
        20,
        "every request is served or rejected"
    );
    assert!(
        served >= 4,
        "2 in flight and 2 queued are served, got {served}"
    );
    assert!(
        rejected.len() >= 10,
        "the excess is rejected, got {}",
        rejected.len()
    );
    for answer in &rejected {
        assert!(answer.body.starts_with("overloaded"), "{}", answer.body);
        assert!(answer.headers.contains_key("retry-after"));
        assert!(
            answer.took < Duration::from_millis(100),
            "rejection took {:?}",
            answer.took
        );
    }
    assert_eq!(
        upstream.calls(),
        served,
        "rejected requests never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_whose_deadline_passes_gets_504_and_never_reaches_the_upstream() {
    let upstream = Upstream::fixed(200, Duration::from_millis(1500)).await;
    let list = upstreams(&[("slow", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_MAX_CONCURRENCY", "1"),
            ("GATEWAY_QUEUE_CAPACITY", "10"),
        ],
    ));
    let first = tokio::spawn(parallel(gateway.url("/v1/first"), 1));
    assert!(eventually(Duration::from_secs(5), || upstream.calls() == 1).await);
    let request = Request::get(gateway.url("/v1/second"))
        .header("x-request-timeout-ms", "200")
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
        answer.took < Duration::from_millis(1500),
        "took {:?}",
        answer.took
    );
    assert_eq!(first.await.unwrap()[0].status, StatusCode::OK);
    assert_eq!(
        upstream.calls(),
        1,
        "the expired waiter never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_off_lets_every_request_through() {
    let upstream = Upstream::fixed(200, Duration::from_millis(300)).await;
    let list = upstreams(&[("slow", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_OFF,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_MAX_CONCURRENCY", "2"),
            ("GATEWAY_QUEUE_CAPACITY", "2"),
        ],
    ));
    let answers = parallel(gateway.url("/v1/chat"), 20).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(upstream.calls(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_queue_is_full() {
    let upstream = Upstream::fixed(200, Duration::from_millis(1500)).await;
    let list = upstreams(&[("slow", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_MAX_CONCURRENCY", "1"),
            ("GATEWAY_QUEUE_CAPACITY", "1"),
        ],
    ));
    let client = client();
    assert_eq!(
        get(&client, &gateway.url("/readyz")).await.status,
        StatusCode::OK
    );
    let busy = tokio::spawn(parallel(gateway.url("/v1/chat"), 2));
    assert!(eventually(Duration::from_secs(5), || upstream.calls() == 1).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = get(&client, &gateway.url("/readyz")).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    assert_eq!(get(&client, &gateway.url("/healthz")).await.body, "ok");
    let answers = busy.await.unwrap();
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(
        get(&client, &gateway.url("/readyz")).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_share_by_tenant_serves_a_second_tenant_through_a_flood() {
    let upstream = Upstream::fixed(200, Duration::from_millis(300)).await;
    let list = upstreams(&[("slow", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_MAX_CONCURRENCY", "1"),
            ("GATEWAY_QUEUE_CAPACITY", "4"),
            ("GATEWAY_FAIR_SHARE_BY", "tenant"),
        ],
    ));
    let request = |tenant: &str| {
        Request::get(gateway.url("/v1/chat"))
            .header("x-tenant-id", tenant)
            .body(Full::default())
            .unwrap()
    };
    // Tenant a: one in flight and four waiting fill the queue; its sixth is over its share.
    let mut flood = Vec::new();
    for _ in 0..5 {
        let (client, request) = (client(), request("a"));
        flood.push(tokio::spawn(async move {
            let answer = send(&client, request).await;
            (answer.status, Instant::now())
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let over = send(&client(), request("a")).await;
    assert_eq!(over.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(over.body.contains("fair share"), "{}", over.body);
    // Tenant b, at a full queue, takes the place of a's newest waiter, and is served in turn
    // with a: before a's last waiters, not after them all.
    let b = send(&client(), request("b")).await;
    let b_done = Instant::now();
    assert_eq!(b.status, StatusCode::OK);
    let mut answers = Vec::new();
    for task in flood {
        answers.push(task.await.unwrap());
    }
    let served: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert_eq!(served.len(), 4, "{answers:?}");
    let after_b = served.iter().filter(|(_, done)| *done > b_done).count();
    assert!(
        after_b >= 2,
        "b was served after all but {after_b} of a's requests"
    );
    let text = get(&client(), &gateway.url("/metrics")).await.body;
    let fair = sample_sum(
        &text,
        "tower_queue_rejections_total",
        &["reason=\"fair_share\""],
    );
    assert_eq!(fair, 2.0, "the refused and the evicted request");
}
