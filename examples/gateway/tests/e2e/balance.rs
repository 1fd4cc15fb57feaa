//! A provider with several instances: attempts go to the least loaded, an overloaded instance
//! leaves the rotation for the time it asks, and retries go to another instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::routing::any;
use http::StatusCode;

use crate::common::*;

/// An instance that sheds every request: 503 with `x-overloaded` and `Retry-After: 1`.
async fn overloaded_instance() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let app = axum::Router::new().fallback(any(move || {
        let counted = Arc::clone(&counted);
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("x-overloaded", "true"), ("retry-after", "1")],
                "overloaded\n",
            )
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_avoid_an_overloaded_and_a_slow_instance_and_callers_see_no_error() {
    let (overloaded, overloaded_calls) = overloaded_instance().await;
    let slow = Upstream::fixed(200, Duration::from_millis(200)).await;
    let healthy = Upstream::fixed(200, Duration::ZERO).await;
    let list = format!("p={overloaded}|{}|{}", slow.url(), healthy.url());
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_RETRY_BASE_MS", "10"),
        ],
    ));
    let url = gateway.url("/v1/x");

    // Four callers for 3 s; every answer is a 200.
    let started = Instant::now();
    let counts = || {
        (
            overloaded_calls.load(Ordering::SeqCst),
            slow.calls(),
            healthy.calls(),
        )
    };
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = client();
                let mut statuses = Vec::new();
                while started.elapsed() < Duration::from_secs(3) {
                    statuses.push(get(&client, &url).await.status);
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_one_second = counts();
    let mut statuses = Vec::new();
    for caller in callers {
        statuses.extend(caller.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "callers saw errors: {:?}",
        statuses
            .iter()
            .filter(|s| **s != StatusCode::OK)
            .collect::<Vec<_>>()
    );
    let end = counts();
    let (a, b, c) = (
        end.0 - after_one_second.0,
        end.1 - after_one_second.1,
        end.2 - after_one_second.2,
    );
    let total = a + b + c;
    if c as f64 <= 0.9 * total as f64 {
        let text = get(&client(), &gateway.url("/metrics")).await.body;
        for line in text.lines().filter(|l| {
            l.starts_with("gateway_balance")
                || l.starts_with("tower_retry_attempts")
                || (l.starts_with("http_client_request_duration_seconds_count"))
        }) {
            eprintln!("{line}");
        }
    }
    assert!(total > 100, "{a} {b} {c}");
    assert!(
        c as f64 >= 0.9 * total as f64,
        "after the first second: overloaded {a}, slow {b}, healthy {c}"
    );
    // The overloaded instance is tried again once its ejection ends (about once a second; the
    // four callers may all pick it in the moment before its first answer ejects it again).
    assert!(
        (1..=12).contains(&a),
        "overloaded instance got {a} after the first second"
    );

    let text = get(&client(), &gateway.url("/metrics")).await.body;
    let ejections = sample_sum(&text, "gateway_balance_ejections_total", &[]);
    assert!(ejections >= 2.0, "{ejections} ejections");
    let picks = sample_sum(&text, "gateway_balance_picks_total", &[]);
    assert!(
        picks >= statuses.len() as f64,
        "{picks} picks for {} requests",
        statuses.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_goes_to_another_instance_than_the_one_that_failed() {
    // Two instances answering 503 once each, then 200: a request's retry never returns to the
    // instance that just failed it.
    let first = Upstream::start(vec![status(503)], status(200)).await;
    let second = Upstream::start(vec![status(503)], status(200)).await;
    let list = format!("p={}|{}", first.url(), second.url());
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[("GATEWAY_UPSTREAMS", &list), ("GATEWAY_RETRY_BASE_MS", "1")],
    ));
    let answer = get(&client(), &gateway.url("/v1/x")).await;
    assert_eq!(answer.status, StatusCode::OK);
    // One attempt failed on one instance; the retry went to the other, which had not failed
    // yet, and failed there once too; the third attempt went back to the first, now healthy.
    assert_eq!(first.calls() + second.calls(), 3);
    assert!(
        first.calls() >= 1 && second.calls() >= 1,
        "{} and {}",
        first.calls(),
        second.calls()
    );
}
