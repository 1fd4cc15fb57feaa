//! Absurd configuration: zero and maximal sizes, zero and endless waits, nonsense thresholds.
//! Each is clamped or taken as documented, and a queue built with it still serves, rejects or
//! times out; nothing panics or hangs.

use std::convert::Infallible;
use std::time::Duration;

use tower::{Layer, Service, ServiceExt};
use tower_bounded_queue::{BoundedQueueBuilder, BoundedQueueLayer, QueueStatus, QueueTimeout};

fn instant() -> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone {
    tower::service_fn(|n: u32| async move { Ok::<_, Infallible>(n) })
}

#[tokio::test(start_paused = true)]
async fn zero_and_maximal_sizes_are_clamped_and_serve() {
    // Concurrency 0 would admit nothing, ever: it is taken as 1.
    let none = BoundedQueueLayer::new(0);
    assert_eq!(none.layer(instant()).oneshot(7).await.unwrap(), 7);
    let huge = BoundedQueueBuilder::new(usize::MAX)
        .capacity(usize::MAX)
        .build();
    assert_eq!(huge.handle().capacity(), 1 << 30, "documented clamp");
    assert_eq!(huge.layer(instant()).oneshot(8).await.unwrap(), 8);
    // Capacity 0: pure load shedding, still serving what fits.
    let shed = BoundedQueueBuilder::new(1).capacity(0).build();
    assert_eq!(shed.layer(instant()).oneshot(9).await.unwrap(), 9);
}

#[tokio::test(start_paused = true)]
async fn zero_and_endless_waits() {
    let pending = tower::service_fn(|_: u32| std::future::pending::<Result<u32, Infallible>>());
    // A zero maximum wait: a request that must queue times out at once.
    let mut svc = BoundedQueueBuilder::new(1)
        .max_wait(Duration::ZERO)
        .build()
        .layer(pending);
    let _busy = svc.ready().await.unwrap().call(1);
    let waited = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(waited.is::<QueueTimeout>(), "{waited}");

    // Duration::MAX waits without overflowing the clock; it just keeps waiting.
    let mut svc = BoundedQueueBuilder::new(1)
        .max_wait(Duration::MAX)
        .build()
        .layer(pending);
    let _busy = svc.ready().await.unwrap().call(1);
    let waiting = svc.ready().await.unwrap().call(2);
    let still = tokio::time::timeout(Duration::from_secs(3600), waiting).await;
    assert!(still.is_err(), "still waiting an hour later, no panic");
}

#[test]
fn nonsense_thresholds_fall_back_or_are_ordered() {
    for (degraded, overloaded) in [
        (f64::NAN, f64::NAN),
        (0.9, 0.1),
        (-5.0, 7.0),
        (f64::INFINITY, f64::NEG_INFINITY),
    ] {
        let layer = BoundedQueueBuilder::new(1)
            .capacity(10)
            .status_thresholds(degraded, overloaded)
            .build();
        // Clamped to [0, 1] and ordered: an empty queue is at worst degraded (a degraded
        // threshold clamped to 0 means "degraded from empty"), never overloaded or critical.
        let status = layer.handle().status();
        assert!(
            matches!(status, QueueStatus::Healthy | QueueStatus::Degraded),
            "({degraded}, {overloaded}): {status:?}"
        );
    }
}

#[test]
fn an_absurd_retry_after_saturates() {
    let layer = BoundedQueueBuilder::new(1)
        .retry_after(Duration::MAX)
        .build()
        .http();
    let _ = layer.handle();
}

#[tokio::test(start_paused = true)]
async fn absurd_adaptive_settings_are_clamped_and_serve() {
    use tower_bounded_queue::Adaptive;

    let failing = || tower::service_fn(|_: u32| async { Err::<u32, &str>("down") });
    // Floor 0 is 1 (a limit of 0 would admit nothing, ever); a floor above the ceiling swaps
    // the two; NaN factors mean the defaults.
    let layer = BoundedQueueBuilder::new(100)
        .adaptive(
            Adaptive::aimd()
                .floor(0)
                .ceiling(0)
                .backoff(f64::NAN)
                .tolerance(f64::NAN),
        )
        .build();
    let expected = Adaptive::aimd().floor(1).ceiling(1);
    assert_eq!(layer.handle().adaptive(), Some(&expected));
    assert_eq!(
        layer.handle().concurrency_limit(),
        1,
        "started within the bounds"
    );
    let layer = BoundedQueueBuilder::new(100)
        .adaptive(
            Adaptive::aimd()
                .floor(8)
                .ceiling(2)
                .backoff(f64::NAN)
                .tolerance(-3.0),
        )
        .build();
    let handle = layer.handle();
    assert_eq!(
        handle.adaptive(),
        Some(
            &Adaptive::aimd()
                .floor(2)
                .ceiling(8)
                .backoff(0.9)
                .tolerance(1.0)
        )
    );
    assert_eq!(handle.concurrency_limit(), 8, "100 clamped to the ceiling");
    let mut svc = layer.layer(failing());
    let mut outcomes = 0;
    for expected in [7, 6, 5, 4, 3, 2, 2] {
        assert!(svc.ready().await.unwrap().call(1).await.is_err());
        outcomes += 1;
        assert_eq!(handle.concurrency_limit(), expected, "backoff 0.9, floor 2");
    }
    assert_eq!(outcomes, 7);

    // Out-of-range factors and sizes are clamped: backoff to [0, 0.99], the ceiling to 2^30.
    let layer = BoundedQueueBuilder::new(usize::MAX)
        .adaptive(Adaptive::aimd().ceiling(usize::MAX).backoff(7.0))
        .build();
    let handle = layer.handle();
    assert_eq!(handle.concurrency_limit(), 1 << 30);
    assert_eq!(
        handle.adaptive(),
        Some(&Adaptive::aimd().ceiling(1 << 30).backoff(0.99))
    );
    let mut svc = layer.layer(failing());
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    assert_eq!(handle.concurrency_limit(), 1_063_004_405, "2^30 * 0.99");
    let layer = BoundedQueueBuilder::new(50)
        .adaptive(Adaptive::aimd().backoff(1.5))
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(failing());
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    assert_eq!(
        handle.concurrency_limit(),
        49,
        "backoff 0.99: 49.5 rounded down"
    );
    let layer = BoundedQueueBuilder::new(50)
        .adaptive(
            Adaptive::aimd()
                .floor(3)
                .backoff(-1.0)
                .tolerance(f64::INFINITY),
        )
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(failing());
    assert!(svc.ready().await.unwrap().call(1).await.is_err());
    assert_eq!(
        handle.concurrency_limit(),
        3,
        "backoff 0: straight to the floor"
    );

    // A zero latency threshold: every answer is slow, the limit sits at the floor, and the
    // queue still serves.
    let layer = BoundedQueueBuilder::new(4)
        .adaptive(Adaptive::aimd().floor(1).max_latency(Duration::ZERO))
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(tower::service_fn(|n: u32| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok::<_, Infallible>(n)
    }));
    let mut served = 0;
    for n in 0..5 {
        assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
        served += 1;
    }
    assert_eq!(served, 5);
    assert_eq!(handle.concurrency_limit(), 1);
}

#[tokio::test]
async fn clones_and_modes_of_a_layer_share_its_one_queue() {
    let layer = BoundedQueueBuilder::new(1).capacity(0).build();
    // A clone, even turned into HTTP mode, is the same queue: it cannot fork it.
    let http = layer.clone().http();
    let mut svc = layer.layer(tower::service_fn(|_: u32| {
        std::future::pending::<Result<u32, Infallible>>()
    }));
    let _busy = svc.ready().await.unwrap().call(1);
    assert_eq!(http.handle().in_flight(), 1);
    assert_eq!(layer.clone().handle().in_flight(), 1);
}

#[test]
fn every_rejection_reason_is_a_series_at_zero_from_the_start() {
    let metrics = test_meter::TestMeter::new();
    let layer = BoundedQueueBuilder::new(1)
        .name("api")
        .meter(&metrics.meter())
        .build();
    let reasons: Vec<String> = metrics
        .matching("tower.queue.rejections", &[("tower.queue.name", "api")])
        .iter()
        .map(|p| format!("{}={}", p.attr("reason").unwrap(), p.sum))
        .collect();
    assert_eq!(
        reasons.len(),
        5,
        "full, dropped_oldest, queue_timeout, deadline, closed: {reasons:?}"
    );
    assert!(reasons.iter().all(|r| r.ends_with("=0")), "{reasons:?}");
    drop(layer);

    // With fair share, its reason too.
    let layer = BoundedQueueBuilder::new(1)
        .name("fair")
        .meter(&metrics.meter())
        .fair_by(|n: &u32| Some(*n))
        .build();
    let fair = metrics.matching(
        "tower.queue.rejections",
        &[("tower.queue.name", "fair"), ("reason", "fair_share")],
    );
    assert_eq!(fair.len(), 1);
    assert_eq!(fair[0].sum, 0.0);
    drop(layer);
}
