//! Absurd configuration: endless retries, zero and endless total time, zero and endless attempt
//! timeouts, overflowing backoffs, nonsense budgets, no replay buffer. Each is refused with a
//! typed `ConfigError` or taken as documented, and a retrying service built with it still ends;
//! nothing panics, overflows or retries forever.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt};
use tower_retry_classified::{
    Backoff, ConfigError, MAX_RETRIES_LIMIT, ReplayBody, RetryBudget, RetryLayer,
};

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
    let layer = RetryLayer::http()
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
    let layer = RetryLayer::http()
        .max_retries(u32::MAX)
        .max_total_time(Duration::MAX);
    let (status, calls) = against_unavailable(layer, get()).await;
    assert_eq!(status, 503);
    assert!(calls <= 1 + MAX_RETRIES_LIMIT as usize);
}

#[tokio::test(start_paused = true)]
async fn zero_total_time_means_one_attempt() {
    let layer = RetryLayer::http().max_total_time(Duration::ZERO);
    let (status, calls) = against_unavailable(layer, get()).await;
    assert_eq!(status, 503);
    assert_eq!(calls, 1);
}

#[test]
fn impossible_attempt_timeouts_are_refused() {
    for timeout in [Duration::ZERO, Duration::MAX, Duration::from_secs(30)] {
        let refused = RetryLayer::http().attempt_timeout(timeout).err();
        assert!(
            matches!(refused, Some(ConfigError::AttemptTimeout { .. })),
            "{timeout:?}: {refused:?}"
        );
    }
}

#[test]
fn nonsense_budgets_are_refused() {
    let cases = [
        (Duration::ZERO, 10, 0.2),
        (Duration::MAX, 10, 0.2),
        (Duration::from_secs(10), 10, f64::NAN),
        (Duration::from_secs(10), 10, -1.0),
        (Duration::from_secs(10), 10, f64::INFINITY),
    ];
    for (window, floor, ratio) in cases {
        assert!(
            RetryBudget::new(window, floor, ratio).is_err(),
            "({window:?}, {floor}, {ratio})"
        );
    }
    assert!(RetryBudget::new(Duration::from_secs(1), u32::MAX, 1000.0).is_ok());
}

#[tokio::test(start_paused = true)]
async fn overflowing_backoffs_saturate() {
    let backoff = Backoff::exponential(Duration::MAX)
        .factor(u32::MAX)
        .max_delay(Duration::MAX);
    let layer = RetryLayer::http()
        .backoff(backoff)
        .max_total_time(Duration::from_secs(60));
    let (status, calls) = against_unavailable(layer, get()).await;
    // A delay that does not fit the total time is not slept: the 503 comes back at once.
    assert_eq!(status, 503);
    assert!(calls <= 2);
}

#[tokio::test(start_paused = true)]
async fn no_replay_buffer_sends_bodies_once() {
    let layer = RetryLayer::http().max_replay_body(0);
    let request = Request::put("http://upstream/")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"payload",
        )))
        .unwrap();
    let (status, calls) = against_unavailable(layer, request).await;
    assert_eq!(status, 503);
    assert_eq!(calls, 1, "a body that cannot be replayed is sent once");
}
