//! Absurd configuration: endless retries, zero and endless total time, zero and endless attempt
//! timeouts, overflowing backoffs, nonsense budgets, no replay buffer. Each is clamped to its
//! documented bound (the family's one configuration rule), whatever order the settings come in,
//! and a retrying service built with it still ends; nothing panics, overflows or retries forever.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt};
use tower_retry_classified::{Backoff, MAX_RETRIES_LIMIT, ReplayBody, RetryBudget, RetryLayer};

type Body = ReplayBody<http_body_util::Full<bytes::Bytes>>;

/// Always 503; counts calls.
fn unavailable(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<Request<Body>, Response = Response<()>, Error = Infallible, Future: Send> + Clone
{
    tower::service_fn(move |_: Request<Body>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async {
            let mut response = Response::new(());
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, Infallible>(response)
        }
    })
}

fn get() -> Request<http_body_util::Full<bytes::Bytes>> {
    Request::get("http://upstream/")
        .body(Default::default())
        .unwrap()
}

/// `request` through `layer` in front of an upstream that always answers 503: the final
/// status and how many calls the upstream took.
async fn against_unavailable(
    layer: RetryLayer,
    request: Request<http_body_util::Full<bytes::Bytes>>,
) -> (StatusCode, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let response = layer
        .layer(unavailable(calls.clone()))
        .oneshot(request)
        .await
        .unwrap();
    (response.status(), calls.load(Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn endless_retries_end_at_the_total_time_or_the_budget() {
    let layer = RetryLayer::for_http()
        .max_retries(u32::MAX)
        .no_budget()
        .max_total_time(Duration::from_secs(10));
    let (status, calls) = against_unavailable(layer, get()).await;
    assert_eq!(status, 503, "the last real answer");
    assert!(
        (2..=40).contains(&calls),
        "{calls} attempts within 10 s of backoff"
    );

    // No time cap either: the budget's floor alone would let a lone caller retry forever;
    // the retry count is clamped to MAX_RETRIES_LIMIT, so the loop ends.
    let layer = RetryLayer::for_http()
        .max_retries(u32::MAX)
        .max_total_time(Duration::MAX);
    let (status, calls) = against_unavailable(layer, get()).await;
    assert_eq!(status, 503);
    assert!(calls <= 1 + MAX_RETRIES_LIMIT as usize);
}

#[tokio::test(start_paused = true)]
async fn zero_total_time_means_one_attempt() {
    let layer = RetryLayer::for_http().max_total_time(Duration::ZERO);
    let (status, calls) = against_unavailable(layer, get()).await;
    assert_eq!(status, 503);
    assert_eq!(calls, 1);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_are_clamped_whatever_the_order_they_are_set_in() {
    use tower_retry_classified::AttemptTimeout;

    let hang = tower::service_fn(|_: http::Request<ReplayBody<String>>| {
        std::future::pending::<Result<http::Response<String>, tower::BoxError>>()
    });
    let cases = [
        // Zero is raised to 1 ms.
        (
            Duration::ZERO,
            Duration::from_secs(30),
            Duration::from_millis(1),
        ),
        // Longer than the total retry time: cut at the total.
        (
            Duration::MAX,
            Duration::from_secs(2),
            Duration::from_secs(2),
        ),
        (
            Duration::from_secs(30),
            Duration::from_secs(30),
            Duration::from_secs(30),
        ),
    ];
    for (timeout, total, cut_after) in cases {
        let timeout_first = RetryLayer::for_http()
            .max_retries(0)
            .attempt_timeout(timeout)
            .max_total_time(total);
        let total_first = RetryLayer::for_http()
            .max_retries(0)
            .max_total_time(total)
            .attempt_timeout(timeout);
        for layer in [timeout_first, total_first] {
            let started = tokio::time::Instant::now();
            let error = layer
                .layer(hang)
                .oneshot(
                    http::Request::get("http://upstream/")
                        .body(String::new())
                        .unwrap(),
                )
                .await
                .unwrap_err();
            assert!(error.is::<AttemptTimeout>(), "{timeout:?}: {error}");
            assert_eq!(
                started.elapsed(),
                cut_after,
                "{timeout:?} with total {total:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn nonsense_budgets_are_clamped() {
    // (window, floor per second, ratio, requests deposited) -> retries allowed
    let cases = [
        // A zero window is 1 s: the floor allows 1.
        ((Duration::ZERO, 1, 0.2, 0), 1),
        // An endless window is 60 s: the floor allows 60.
        ((Duration::MAX, 1, 0.2, 0), 60),
        // NaN is the default ratio, 0.2: 2 retries for 10 requests.
        ((Duration::from_secs(10), 0, f64::NAN, 10), 2),
        // Negative is 0.
        ((Duration::from_secs(10), 0, -1.0, 10), 0),
        // Infinite is 1000.
        ((Duration::from_secs(10), 0, f64::INFINITY, 1), 1000),
    ];
    for ((window, floor, ratio, requests), allowed) in cases {
        let budget = RetryBudget::new(window, floor, ratio);
        for _ in 0..requests {
            budget.deposit();
        }
        assert_eq!(
            budget.balance(),
            allowed,
            "({window:?}, {floor}, {ratio}, {requests})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn overflowing_backoffs_saturate() {
    let backoff = Backoff::exponential(Duration::MAX)
        .factor(u32::MAX)
        .max_delay(Duration::MAX);
    let layer = RetryLayer::for_http()
        .backoff(backoff)
        .max_total_time(Duration::from_secs(60));
    let (status, calls) = against_unavailable(layer, get()).await;
    // A delay that does not fit the total time is not slept: the 503 comes back at once.
    assert_eq!(status, 503);
    assert!(calls <= 2);
}

#[tokio::test(start_paused = true)]
async fn no_replay_buffer_sends_bodies_once() {
    let layer = RetryLayer::for_http().max_replay_body(0);
    let request = Request::put("http://upstream/")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"payload",
        )))
        .unwrap();
    let (status, calls) = against_unavailable(layer, request).await;
    assert_eq!(status, 503);
    assert_eq!(calls, 1, "a body that cannot be replayed is sent once");
}
