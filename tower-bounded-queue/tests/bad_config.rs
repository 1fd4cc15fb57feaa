//! Absurd configuration: zero and maximal sizes, zero and endless waits, nonsense thresholds.
//! Each is clamped or taken as documented, and a queue built with it still serves, rejects or
//! times out; nothing panics or hangs.

use std::convert::Infallible;
use std::time::Duration;

use tower::{Layer, Service, ServiceExt};
use tower_bounded_queue::{BoundedQueueLayer, QueueStatus, QueueTimeout};

fn instant() -> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone {
    tower::service_fn(|n: u32| async move { Ok::<_, Infallible>(n) })
}

#[tokio::test(start_paused = true)]
async fn zero_and_maximal_sizes_are_clamped_and_serve() {
    // Concurrency 0 would admit nothing, ever: it is taken as 1.
    let none = BoundedQueueLayer::new(0);
    assert_eq!(none.layer(instant()).oneshot(7).await.unwrap(), 7);
    let huge = BoundedQueueLayer::new(usize::MAX).capacity(usize::MAX);
    assert_eq!(huge.handle().capacity(), 1 << 30, "documented clamp");
    assert_eq!(huge.layer(instant()).oneshot(8).await.unwrap(), 8);
    // Capacity 0: pure load shedding, still serving what fits.
    let shed = BoundedQueueLayer::new(1).capacity(0);
    assert_eq!(shed.layer(instant()).oneshot(9).await.unwrap(), 9);
}

#[tokio::test(start_paused = true)]
async fn zero_and_endless_waits() {
    let pending = tower::service_fn(|_: u32| std::future::pending::<Result<u32, Infallible>>());
    // A zero maximum wait: a request that must queue times out at once.
    let mut svc = BoundedQueueLayer::new(1)
        .max_wait(Duration::ZERO)
        .layer(pending);
    let _busy = svc.ready().await.unwrap().call(1);
    let waited = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(waited.is::<QueueTimeout>(), "{waited}");

    // Duration::MAX waits without overflowing the clock; it just keeps waiting.
    let mut svc = BoundedQueueLayer::new(1)
        .max_wait(Duration::MAX)
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
        let layer = BoundedQueueLayer::new(1)
            .capacity(10)
            .status_thresholds(degraded, overloaded);
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
    let layer = BoundedQueueLayer::new(1).http().retry_after(Duration::MAX);
    let _ = layer.handle();
}
