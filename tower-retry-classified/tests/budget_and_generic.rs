//! The retry budget (Finagle-style arithmetic on a frozen clock) and generic, non-HTTP use.

mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::TestMeter;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_retry_classified::{
    Backoff, Classification, Jitter, Reason, ReplayBody, RetryBudget, RetryLayer,
};

type Req = Request<ReplayBody<Full<Bytes>>>;
type Ready = std::future::Ready<Result<Response<()>, BoxError>>;

fn always_503(
    calls: Arc<AtomicU64>,
) -> impl Service<Req, Response = Response<()>, Error = BoxError, Future = Ready> + Clone {
    tower::service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
        calls.fetch_add(1, Ordering::Relaxed);
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        std::future::ready(Ok(resp))
    })
}

fn instant_backoff() -> Backoff {
    // Zero delays: the clock never moves, as in Finagle's budget test.
    Backoff::exponential(Duration::ZERO).jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn budget_caps_retries_at_20_percent_plus_floor_on_a_frozen_clock() {
    const REQUESTS: u64 = 10_000;
    let calls = Arc::new(AtomicU64::new(0));
    let meter = TestMeter::new();
    let layer = RetryLayer::for_http()
        .backoff(instant_backoff())
        .meter(&meter.meter());
    let start = tokio::time::Instant::now();
    // Every request goes through its own clone: the budget is shared by all of them.
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(always_503(calls.clone()));
    for _ in 0..REQUESTS {
        let req = Request::get("/").body(Full::default()).unwrap();
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 503);
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    let retries = calls.load(Ordering::Relaxed) - REQUESTS;
    // 20% of 10,000 plus the floor of 10/s over the 10 s window.
    let allowance = REQUESTS / 5 + 100;
    eprintln!("{REQUESTS} requests, {retries} retries (allowance {allowance})");
    assert!(retries <= allowance, "{retries} retries");
    assert!(retries >= allowance - 4, "{retries} retries");
    let denied = meter.sum("tower.retry.skipped", &[("reason", "budget")]);
    assert!(denied > 7_000, "{denied} denied");
    // Every request ended either by the budget or by running out of retries.
    let maxed = meter.sum("tower.retry.skipped", &[("reason", "max_retries")]);
    assert_eq!(denied + maxed, REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn budget_disabled_retries_everything() {
    let calls = Arc::new(AtomicU64::new(0));
    let svc = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http()
                .backoff(instant_backoff())
                .no_budget(),
        )
        .service(always_503(calls.clone()));
    for _ in 0..1000 {
        let req = Request::get("/").body(Full::default()).unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    assert_eq!(calls.load(Ordering::Relaxed), 5000);
}

#[tokio::test(start_paused = true)]
async fn custom_budget_is_shared_across_layers() {
    let budget = RetryBudget::new(Duration::from_secs(1), 0, 0.5);
    let calls = Arc::new(AtomicU64::new(0));
    let a = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http()
                .backoff(instant_backoff())
                .budget(budget.clone()),
        )
        .service(always_503(calls.clone()));
    let b = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http()
                .backoff(instant_backoff())
                .budget(budget.clone()),
        )
        .service(always_503(calls.clone()));
    for svc in [a.clone(), b.clone(), a, b] {
        let req = Request::get("/").body(Full::default()).unwrap();
        svc.oneshot(req).await.unwrap();
    }
    // 4 requests × 0.5 = 2 retries in total, whichever layer asked.
    assert_eq!(calls.load(Ordering::Relaxed), 6);
    assert_eq!(budget.balance(), 0);
}

#[tokio::test(start_paused = true)]
async fn generic_requests_with_a_closure_classifier() {
    let calls = Arc::new(AtomicU32::new(0));
    let flaky = tower::service_fn({
        let calls = calls.clone();
        move |job: String| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err::<String, BoxError>(io::Error::from(io::ErrorKind::ConnectionReset).into())
                } else {
                    Ok(format!("done {job}"))
                }
            }
        }
    });
    let classify = |outcome: Result<&String, &BoxError>| match outcome {
        Ok(_) => Classification::Success,
        Err(e) => Classification::of_error(&**e),
    };
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::new(classify)
                .backoff(Backoff::default().jitter(Jitter::None))
                .meter(&meter.meter()),
        )
        .service(flaky);
    let start = tokio::time::Instant::now();
    let out = svc
        .ready()
        .await
        .unwrap()
        .call("job-7".to_owned())
        .await
        .unwrap();
    assert_eq!(out, "done job-7");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(
        meter.sum(
            "tower.retry.attempts",
            &[("outcome", "failure"), ("reason", "connection_reset")]
        ),
        2
    );
}

#[derive(Debug)]
struct Invalid;
impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid job")
    }
}
impl std::error::Error for Invalid {}

#[tokio::test(start_paused = true)]
async fn permanent_errors_come_back_unchanged_and_downcastable() {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = tower::service_fn({
        let calls = calls.clone();
        move |_: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), Invalid>(Invalid) }
        }
    });
    let classify = |outcome: Result<&(), &BoxError>| match outcome {
        Ok(_) => Classification::Success,
        Err(e) if e.is::<Invalid>() => Classification::permanent(Reason::new("invalid")),
        Err(_) => Classification::retryable(Reason::OTHER_ERROR),
    };
    let err = ServiceBuilder::new()
        .layer(RetryLayer::new(classify))
        .service(svc)
        .oneshot(1)
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<Invalid>().is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_backoff_stops_retrying() {
    let calls = Arc::new(AtomicU64::new(0));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().backoff(Backoff::default().jitter(Jitter::None)))
        .service(always_503(calls.clone()));
    let req = Request::get("/").body(Full::default()).unwrap();
    let fut = svc.oneshot(req);
    // Cut it off during the first backoff sleep.
    let cut = tokio::time::timeout(Duration::from_millis(50), fut).await;
    assert!(cut.is_err());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn inner_poll_ready_failure_on_retry_is_returned() {
    // An inner service that works once, then reports itself broken.
    #[derive(Clone)]
    struct BreaksAfterOne(Arc<AtomicU32>);
    impl Service<Request<ReplayBody<Full<Bytes>>>> for BreaksAfterOne {
        type Response = Response<()>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Response<()>, BoxError>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), BoxError>> {
            if self.0.load(Ordering::SeqCst) == 0 {
                std::task::Poll::Ready(Ok(()))
            } else {
                std::task::Poll::Ready(Err("inner closed".into()))
            }
        }
        fn call(&mut self, _: Request<ReplayBody<Full<Bytes>>>) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut resp = Response::new(());
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            std::future::ready(Ok(resp))
        }
    }
    let err = ServiceBuilder::new()
        .layer(RetryLayer::for_http())
        .service(BreaksAfterOne(Arc::new(AtomicU32::new(0))))
        .oneshot(Request::get("/").body(Full::default()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "inner closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_holds_under_concurrent_callers() {
    const TASKS: u64 = 16;
    const PER_TASK: u64 = 500;
    let calls = Arc::new(AtomicU64::new(0));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().backoff(instant_backoff()))
        .service(always_503(calls.clone()));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for _ in 0..PER_TASK {
                    let req = Request::get("/").body(Full::default()).unwrap();
                    svc.clone().oneshot(req).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let requests = TASKS * PER_TASK;
    let retries = calls.load(Ordering::Relaxed) - requests;
    // 20% plus the 10 s floor; concurrent withdrawals may overshoot by at most one per caller.
    // (The window is 10 s and this test takes well under that, so nothing expires.)
    let allowance = requests / 5 + 100;
    assert!(retries <= allowance + TASKS, "{retries} retries");
    assert!(retries >= allowance - 4 * TASKS, "{retries} retries");
}
