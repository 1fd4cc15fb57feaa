//! The queue driven directly as a tower service: exact, on tokio's paused clock where time
//! matters.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Gate, TestMetrics};
use tower::{BoxError, Service, ServiceExt, service_fn};
use tower_bounded_queue::{
    BoundedQueueBuilder, BoundedQueueLayer, Overflow, OverloadReason, Overloaded, QueueStatus,
    QueueTimeout,
};
use tower_layer::Layer;

/// A service that holds each request at the gate and answers with the request's number.
fn held(
    gate: &Gate,
) -> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone + Send + use<> {
    let gate = gate.clone();
    service_fn(move |n: u32| {
        let gate = gate.clone();
        async move {
            gate.pass().await;
            Ok::<_, Infallible>(n)
        }
    })
}

fn overloaded(error: &BoxError) -> &Overloaded {
    error
        .downcast_ref::<Overloaded>()
        .unwrap_or_else(|| panic!("expected Overloaded, got {error}"))
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_pushes_out_the_oldest_waiter() {
    let metrics = TestMetrics::new();
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1)
        .capacity(2)
        .overflow(Overflow::DropOldest)
        .meter(&metrics.meter())
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));

    let running = tokio::spawn(svc.ready().await.unwrap().call(0));
    let oldest = tokio::spawn(svc.ready().await.unwrap().call(1));
    let middle = tokio::spawn(svc.ready().await.unwrap().call(2));
    assert_eq!(handle.depth(), 2);
    let newest = tokio::spawn(svc.ready().await.unwrap().call(3));
    assert_eq!(handle.depth(), 2, "one in, one out");

    let error = oldest.await.unwrap().unwrap_err();
    let e = overloaded(&error);
    assert_eq!(e.reason(), OverloadReason::DroppedOldest);
    assert_eq!((e.capacity(), e.depth()), (2, 2));

    gate.release(3);
    assert_eq!(running.await.unwrap().unwrap(), 0);
    assert_eq!(middle.await.unwrap().unwrap(), 2);
    assert_eq!(newest.await.unwrap().unwrap(), 3);
    assert_eq!(
        gate.entered(),
        3,
        "the dropped request never reached the service"
    );
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
    assert_eq!(
        metrics.value("tower.queue.rejections", &[("reason", "dropped_oldest")]),
        Some(1.0)
    );
}

#[tokio::test(start_paused = true)]
async fn reject_newest_keeps_waiters_in_order() {
    let gate = Gate::new();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let svc = {
        let gate = gate.clone();
        let order = order.clone();
        service_fn(move |n: u32| {
            let gate = gate.clone();
            let order = order.clone();
            async move {
                order.lock().unwrap().push(n);
                gate.pass().await;
                Ok::<_, Infallible>(n)
            }
        })
    };
    let layer = BoundedQueueBuilder::new(1).capacity(3).build();
    let mut svc = layer.layer(svc);
    let calls: Vec<_> = (0..4).map(|n| tokio::spawn(svc.call(n))).collect();
    let rejected = svc.call(4).await.unwrap_err();
    assert_eq!(overloaded(&rejected).reason(), OverloadReason::Full);
    assert_eq!(overloaded(&rejected).depth(), 3);
    gate.release(4);
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), n as u32);
    }
    assert_eq!(
        *order.lock().unwrap(),
        vec![0, 1, 2, 3],
        "first come, first served"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiter_leaves_with_queue_timeout_after_max_wait() {
    let metrics = TestMetrics::new();
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1)
        .capacity(4)
        .max_wait(Duration::from_millis(250))
        .meter(&metrics.meter())
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));

    let running = tokio::spawn(svc.call(0));
    let start = tokio::time::Instant::now();
    let error = svc.call(1).await.unwrap_err();
    let timeout = error
        .downcast_ref::<QueueTimeout>()
        .expect("a QueueTimeout");
    assert_eq!(timeout.waited(), Duration::from_millis(250));
    assert_eq!(timeout.max(), Duration::from_millis(250));
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(handle.depth(), 0);
    assert_eq!(
        gate.entered(),
        1,
        "the timed-out request never reached the service"
    );
    assert_eq!(
        metrics.value("tower.queue.rejections", &[("reason", "queue_timeout")]),
        Some(1.0)
    );

    // The admitted request is not subject to the queue's max wait.
    tokio::time::sleep(Duration::from_secs(5)).await;
    gate.release(1);
    assert_eq!(running.await.unwrap().unwrap(), 0);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slot_freed_before_max_wait_admits_the_waiter() {
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1)
        .max_wait(Duration::from_secs(1))
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));
    let running = tokio::spawn(svc.call(0));
    let waiting = tokio::spawn(svc.call(1));
    tokio::time::sleep(Duration::from_millis(999)).await;
    gate.release(2);
    assert_eq!(running.await.unwrap().unwrap(), 0);
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_waiting_caller_frees_its_place_at_once() {
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1).capacity(1).build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));

    let running = svc.call(0);
    let waiting = svc.call(1);
    assert_eq!(handle.depth(), 1);
    assert_eq!(
        overloaded(&svc.call(2).await.unwrap_err()).reason(),
        OverloadReason::Full
    );
    drop(waiting);
    assert_eq!(handle.depth(), 0, "the place is free without any poll");
    let next = tokio::spawn(svc.call(3));
    tokio::task::yield_now().await;
    assert_eq!(handle.depth(), 1);
    gate.release(2);
    assert_eq!(running.await.unwrap(), 0);
    assert_eq!(next.await.unwrap().unwrap(), 3);
    assert_eq!(gate.entered(), 2, "the cancelled request never ran");
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_running_caller_frees_its_slot_and_hands_it_on() {
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1).capacity(1).build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));

    let running = tokio::spawn(svc.call(0));
    tokio::task::yield_now().await;
    assert_eq!(gate.entered(), 1);
    let waiting = tokio::spawn(svc.call(1));
    assert_eq!((handle.in_flight(), handle.depth()), (1, 1));
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    assert_eq!(
        (handle.in_flight(), handle.depth()),
        (1, 0),
        "handed to the waiter"
    );
    gate.release(1);
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_granted_but_never_polled_waiter_passes_its_slot_on_when_dropped() {
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1).capacity(2).build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));
    let running = svc.call(0);
    let first_waiter = svc.call(1);
    let second_waiter = tokio::spawn(svc.call(2));
    gate.release(1);
    assert_eq!(running.await.unwrap(), 0);
    // The slot went to `first_waiter`, which nobody polls; dropping it passes the slot on.
    assert_eq!((handle.in_flight(), handle.depth()), (1, 1));
    drop(first_waiter);
    gate.release(1);
    assert_eq!(second_waiter.await.unwrap().unwrap(), 2);
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
}

#[tokio::test]
async fn inner_errors_pass_through_unchanged_and_free_the_slot() {
    #[derive(Debug)]
    struct AppError;
    impl std::fmt::Display for AppError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("app error")
        }
    }
    impl std::error::Error for AppError {}

    let layer = BoundedQueueBuilder::new(1).capacity(0).build();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|_: ()| async { Err::<(), _>(AppError) }));
    for _ in 0..3 {
        let error = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(error.is::<AppError>(), "got {error}");
    }
    assert_eq!(handle.in_flight(), 0);
}

/// An inner service whose `poll_ready` fails: the error is the inner one, and the slot is freed.
#[tokio::test]
async fn inner_readiness_errors_pass_through() {
    #[derive(Clone)]
    struct Broken;
    impl Service<()> for Broken {
        type Response = ();
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<(), std::io::Error>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Err(std::io::Error::other("closed inner service")))
        }
        fn call(&mut self, _: ()) -> Self::Future {
            unreachable!("never ready")
        }
    }
    let layer = BoundedQueueBuilder::new(1).capacity(0).build();
    let handle = layer.handle();
    let mut svc = layer.layer(Broken);
    for _ in 0..3 {
        let error = svc.call(()).await.unwrap_err();
        assert_eq!(error.to_string(), "closed inner service");
        assert!(error.is::<std::io::Error>());
    }
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn status_follows_queue_fill_and_thresholds_are_configurable() {
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1).capacity(10).build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));
    let mut calls = vec![svc.call(0)];
    let mut seen = Vec::new();
    for n in 1..=10 {
        calls.push(svc.call(n));
        seen.push((handle.depth(), handle.status()));
    }
    assert_eq!(seen[3], (4, QueueStatus::Healthy));
    assert_eq!(seen[4], (5, QueueStatus::Degraded));
    assert_eq!(seen[7], (8, QueueStatus::Overloaded));
    assert_eq!(seen[9], (10, QueueStatus::Critical));
    drop(calls);
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));

    let layer = BoundedQueueBuilder::new(1)
        .capacity(10)
        .status_thresholds(0.1, 0.2)
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));
    let _calls: Vec<_> = (0..3).map(|n| svc.call(n)).collect();
    assert_eq!(handle.status(), QueueStatus::Overloaded);
}

#[tokio::test]
async fn absurd_configuration_is_clamped() {
    let handle = BoundedQueueBuilder::new(0)
        .capacity(usize::MAX)
        .build()
        .handle();
    assert_eq!(
        handle.concurrency(),
        1,
        "zero concurrency would admit nothing"
    );
    assert_eq!(handle.capacity(), 1 << 30);

    // A maximum wait too large for the clock means no limit (no overflow panic).
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1).max_wait(Duration::MAX).build();
    let mut svc = layer.layer(held(&gate));
    let running = svc.call(0);
    let waiting = tokio::spawn(svc.call(1));
    tokio::task::yield_now().await;
    gate.release(2);
    assert_eq!(running.await.unwrap(), 0);
    assert_eq!(waiting.await.unwrap().unwrap(), 1);

    // Capacity 0: pure load shedding, critical while the slot is taken.
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1).capacity(0).build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));
    let running = svc.call(0);
    assert_eq!(handle.status(), QueueStatus::Critical);
    assert_eq!(overloaded(&svc.call(1).await.unwrap_err()).capacity(), 0);
    drop(running);
    assert_eq!(handle.status(), QueueStatus::Healthy);
}

#[tokio::test]
async fn close_rejects_new_work_and_drain_returns_at_once_when_idle() {
    let layer = BoundedQueueLayer::new(1);
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, Infallible>(n) }));
    assert_eq!(svc.call(1).await.unwrap(), 1);
    handle.drain().await;
    let error = svc.call(2).await.unwrap_err();
    assert_eq!(overloaded(&error).reason(), OverloadReason::Closed);
}

#[tokio::test(start_paused = true)]
async fn named_queues_are_independent_and_labelled() {
    let metrics = TestMetrics::new();
    let cpu = BoundedQueueBuilder::new(1)
        .capacity(0)
        .name("cpu")
        .meter(&metrics.meter())
        .build();
    let io = BoundedQueueBuilder::new(1)
        .capacity(0)
        .name("io")
        .meter(&metrics.meter())
        .build();
    let gate = Gate::new();
    let mut cpu_svc = cpu.layer(held(&gate));
    let mut io_svc = io.layer(held(&gate));
    let _busy = cpu_svc.call(0);
    assert!(cpu_svc.call(1).await.is_err());
    assert!(cpu_svc.call(2).await.is_err());
    let _io_busy = io_svc.call(3);
    assert!(io_svc.call(4).await.is_err());
    assert_eq!(cpu.handle().name(), "cpu");
    assert_eq!(
        metrics.sum("tower.queue.rejections", &[("tower.queue.name", "cpu")]),
        2
    );
    assert_eq!(
        metrics.sum("tower.queue.rejections", &[("tower.queue.name", "io")]),
        1
    );
    assert_eq!(
        metrics.value("tower.queue.in_flight", &[("tower.queue.name", "io")]),
        Some(1.0)
    );
}

/// The coop-budget check: with 64 concurrent callers and a queue that never fills,
/// nothing is rejected (`LoadShed` over `Buffer` rejects 13 to 41% here). The assertion is on the
/// count, not on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_callers_see_zero_rejections_while_the_queue_is_not_full() {
    let served = Arc::new(AtomicUsize::new(0));
    let layer = BoundedQueueBuilder::new(8).capacity(1000).build();
    let handle = layer.handle();
    let svc = layer.layer(service_fn({
        let served = served.clone();
        move |n: u32| {
            let served = served.clone();
            async move {
                // Yield so callers interleave and tasks burn their coop budget.
                tokio::task::yield_now().await;
                served.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Infallible>(n)
            }
        }
    }));
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                let mut rejected = 0;
                for n in 0..200 {
                    match svc.ready().await.unwrap().call(n).await {
                        Ok(_) => {}
                        Err(_) => rejected += 1,
                    }
                }
                rejected
            })
        })
        .collect();
    let mut rejected = 0;
    for caller in callers {
        rejected += caller.await.unwrap();
    }
    assert_eq!(rejected, 0);
    assert_eq!(served.load(Ordering::Relaxed), 64 * 200);
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn http_mode_answers_queue_timeouts_with_503_and_configurable_retry_after() {
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Empty};

    let gate = Gate::new();
    let inner = {
        let gate = gate.clone();
        service_fn(move |_: Request<Empty<bytes::Bytes>>| {
            let gate = gate.clone();
            async move {
                gate.pass().await;
                Ok::<_, Infallible>(Response::new(Empty::<bytes::Bytes>::new()))
            }
        })
    };
    let layer = BoundedQueueBuilder::new(1)
        .max_wait(Duration::from_millis(100))
        .retry_after(Duration::from_millis(2500))
        .build()
        .http();
    let mut svc = layer.layer(inner.clone());
    let _running = svc.call(Request::new(Empty::new()));

    let response = svc.call(Request::new(Empty::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()[http::header::RETRY_AFTER],
        "3",
        "rounded up"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        b"waited 100ms in the queue, the maximum is 100ms\n"
    );

    let mut grpc = Request::new(Empty::new());
    grpc.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    let response = svc.call(grpc).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "14");
    assert!(!response.headers().contains_key(http::header::RETRY_AFTER));
    assert_eq!(response.headers()["grpc-retry-pushback-ms"], "3000");

    // Zero leaves the header out.
    let layer = BoundedQueueBuilder::new(1)
        .capacity(0)
        .retry_after(Duration::ZERO)
        .build()
        .http();
    let mut svc = layer.layer(inner);
    let _running = svc.call(Request::new(Empty::new()));
    let response = svc.call(Request::new(Empty::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!response.headers().contains_key(http::header::RETRY_AFTER));
    assert_eq!(gate.entered(), 0, "nothing polled the admitted requests");
}
