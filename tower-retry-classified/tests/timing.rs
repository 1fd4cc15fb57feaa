//! Backoff schedule, jitter bounds, total cap, deadline and per-attempt timeout on tokio's paused
//! clock, against a real hyper upstream.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestMeter, Upstream, client, status};
use http::Request;
use http_body_util::Full;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_retry_classified::{Attempts, Backoff, Jitter, RetryLayer};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn gaps(upstream: &Upstream) -> Vec<Duration> {
    let seen = upstream.seen();
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}

fn get(upstream: &Upstream) -> Request<Full<Bytes>> {
    Request::get(upstream.uri("/"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn delays_before_jitter_are_100_200_400_800() {
    let upstream = Upstream::start(vec![status(503)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().backoff(Backoff::default().jitter(Jitter::None)))
        .service(client::<Full<Bytes>>());
    let start = Instant::now();
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(Attempts::of(&resp), 5);
    assert_eq!(gaps(&upstream), [MS(100), MS(200), MS(400), MS(800)]);
    assert_eq!(start.elapsed(), MS(1500));
}

#[tokio::test(start_paused = true)]
async fn full_jitter_delays_lie_within_zero_and_cap() {
    for seed in 0..20 {
        let upstream = Upstream::start(vec![status(503)]).await;
        let mut svc = ServiceBuilder::new()
            .layer(RetryLayer::for_http().backoff(Backoff::default().seed(seed)))
            .service(client::<Full<Bytes>>());
        svc.ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap();
        let gaps = gaps(&upstream);
        assert_eq!(gaps.len(), 4);
        for (gap, cap) in gaps.iter().zip([100, 200, 400, 800]) {
            assert!(*gap <= MS(cap), "seed {seed}: {gaps:?}");
        }
        // Jitter really varies the delays (all at the cap would mean no jitter).
        assert_ne!(gaps, [MS(100), MS(200), MS(400), MS(800)]);
    }
}

#[tokio::test(start_paused = true)]
async fn equal_and_decorrelated_jitter_bounds() {
    let upstream = Upstream::start(vec![status(503)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().backoff(Backoff::default().jitter(Jitter::Equal).seed(9)))
        .service(client::<Full<Bytes>>());
    svc.ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap();
    for (gap, cap) in gaps(&upstream).iter().zip([100, 200, 400, 800]) {
        assert!(*gap >= MS(cap / 2) && *gap <= MS(cap), "{gap:?}");
    }

    let upstream = Upstream::start(vec![status(503)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http().backoff(Backoff::default().jitter(Jitter::Decorrelated).seed(9)),
        )
        .service(client::<Full<Bytes>>());
    svc.ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap();
    let gaps = gaps(&upstream);
    let mut prev = MS(100);
    for gap in gaps {
        assert!(gap >= MS(100) && gap <= prev * 3, "{gap:?} after {prev:?}");
        prev = gap;
    }
}

#[tokio::test(start_paused = true)]
async fn total_cap_of_30s_holds() {
    let upstream = Upstream::start(vec![status(503)]).await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http()
                .max_retries(100)
                .backoff(
                    Backoff::exponential(Duration::from_secs(1))
                        .max_delay(Duration::from_secs(10))
                        .jitter(Jitter::None),
                )
                .meter(&meter.meter()),
        )
        .service(client::<Full<Bytes>>());
    let start = Instant::now();
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    // Attempts at 0, 1, 3, 7, 15, 25 s; the next would start at 35 s > 30 s.
    assert_eq!(upstream.calls(), 6);
    assert_eq!(start.elapsed(), Duration::from_secs(25));
    assert!(start.elapsed() <= Duration::from_secs(30));
    assert_eq!(
        meter.sum("tower.retry.skipped", &[("reason", "total_cap")]),
        1
    );
}

#[cfg(feature = "deadline")]
#[tokio::test(start_paused = true)]
async fn one_second_deadline_stops_the_sequence() {
    use tower_deadline::Deadline;

    let upstream = Upstream::start(vec![status(503)]).await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http()
                .backoff(Backoff::default().jitter(Jitter::None))
                .meter(&meter.meter()),
        )
        .service(client::<Full<Bytes>>());
    let deadline = Deadline::after(Duration::from_secs(1));
    let mut req = get(&upstream);
    req.extensions_mut().insert(deadline);
    let start = Instant::now();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    // Attempts at 0, 100, 300, 700 ms; 700 + 800 would pass the deadline.
    assert_eq!(resp.status(), 503);
    assert_eq!(upstream.calls(), 4);
    assert_eq!(start.elapsed(), MS(700));
    assert!(!deadline.is_expired());
    assert_eq!(
        meter.sum("tower.retry.skipped", &[("reason", "deadline")]),
        1
    );

    // The task-local deadline counts too.
    let upstream = Upstream::start(vec![status(503)]).await;
    let resp = Deadline::after(MS(250))
        .scope(async {
            let req = get(&upstream);
            svc.ready().await.unwrap().call(req).await.unwrap()
        })
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_cuts_a_slow_attempt_and_retries() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    let calls = Arc::new(AtomicU32::new(0));
    let slow_then_fast = tower::service_fn({
        let calls = calls.clone();
        move |_req: Request<tower_retry_classified::ReplayBody<Full<Bytes>>>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, tower::BoxError>(http::Response::new(()))
            }
        }
    });
    let layer = RetryLayer::for_http()
        .backoff(Backoff::default().jitter(Jitter::None))
        .attempt_timeout(Duration::from_secs(2));
    let mut svc = ServiceBuilder::new().layer(layer).service(slow_then_fast);
    let start = Instant::now();
    let req = Request::get("/").body(Full::default()).unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(Attempts::of(&resp), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(2100));

    // Every attempt too slow: the caller gets the timeout error of the last attempt.
    let always_slow = tower::service_fn(
        |_req: Request<tower_retry_classified::ReplayBody<Full<Bytes>>>| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, tower::BoxError>(http::Response::new(()))
        },
    );
    let layer = RetryLayer::for_http()
        .max_retries(1)
        .attempt_timeout(Duration::from_secs(1));
    let mut svc = ServiceBuilder::new().layer(layer).service(always_slow);
    let req = Request::get("/").body(Full::default()).unwrap();
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    let timeout = err
        .downcast_ref::<tower_retry_classified::AttemptTimeout>()
        .unwrap();
    assert_eq!(timeout.attempt(), 2);
    assert_eq!(timeout.timeout(), Duration::from_secs(1));
}
