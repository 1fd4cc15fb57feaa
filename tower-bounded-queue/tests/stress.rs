//! Stress test of the admission state machine (in place of loom, which cannot model tokio's
//! runtime): many tasks calling, cancelling at random points (before the first poll, while
//! waiting, while running), timing out and being dropped as oldest, with the invariants
//! `depth <= capacity` and `in_flight <= concurrency` checked after every step and inside the
//! inner service. Bounded in count. The last case adds an adaptive limit between 1 and
//! `CONCURRENCY` that moves all the while (answers over 100 µs count as slow), exercising the
//! retired slots of a shrinking limit and the waiters a growing one admits.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower::{Service, service_fn};
use tower_bounded_queue::{Adaptive, BoundedQueueBuilder, Overflow, QueueHandle};
use tower_layer::Layer;

const CONCURRENCY: usize = 3;
const CAPACITY: usize = 5;
const TASKS: u64 = 32;
const STEPS: usize = 300;

#[derive(Default)]
struct Tally {
    served: AtomicUsize,
    errors: AtomicUsize,
    cancelled: AtomicUsize,
}

fn check(handle: &QueueHandle) {
    let (depth, in_flight) = (handle.depth(), handle.in_flight());
    assert!(depth <= CAPACITY, "depth {depth} > capacity");
    assert!(
        in_flight <= CONCURRENCY,
        "in_flight {in_flight} > concurrency"
    );
}

async fn run(overflow: Overflow, max_wait: Option<Duration>, adaptive: bool) {
    let inside = Arc::new(AtomicUsize::new(0));
    let mut builder = BoundedQueueBuilder::new(CONCURRENCY)
        .capacity(CAPACITY)
        .overflow(overflow);
    if let Some(max_wait) = max_wait {
        builder = builder.max_wait(max_wait);
    }
    if adaptive {
        builder = builder.adaptive(
            Adaptive::aimd()
                .floor(1)
                .ceiling(CONCURRENCY)
                .backoff(0.5)
                .max_latency(Duration::from_micros(100)),
        );
    }
    let layer = builder.build();
    let handle = layer.handle();
    let svc = layer.layer(service_fn({
        let inside = inside.clone();
        move |work: u64| {
            let inside = inside.clone();
            async move {
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(now <= CONCURRENCY, "{now} requests inside the service");
                struct Leave(Arc<AtomicUsize>);
                impl Drop for Leave {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _leave = Leave(inside);
                for _ in 0..work % 4 {
                    tokio::task::yield_now().await;
                }
                if work % 7 == 0 {
                    tokio::time::sleep(Duration::from_micros(work % 300)).await;
                }
                Ok::<_, Infallible>(work)
            }
        }
    }));
    let tally = Arc::new(Tally::default());

    let tasks: Vec<_> = (0..TASKS)
        .map(|seed| {
            let mut svc = svc.clone();
            let handle = handle.clone();
            let tally = tally.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed);
                for _ in 0..STEPS {
                    let work = rng.u64(..1000);
                    let future = svc.call(work);
                    check(&handle);
                    match rng.u8(..10) {
                        // Dropped before its first poll.
                        0 => {
                            drop(future);
                            tally.cancelled.fetch_add(1, Ordering::Relaxed);
                        }
                        // Cancelled after a short while, wherever it is.
                        1 | 2 => {
                            let limit = Duration::from_micros(rng.u64(..200));
                            match tokio::time::timeout(limit, future).await {
                                Ok(Ok(_)) => tally.served.fetch_add(1, Ordering::Relaxed),
                                Ok(Err(_)) => tally.errors.fetch_add(1, Ordering::Relaxed),
                                Err(_) => tally.cancelled.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                        _ => {
                            match future.await {
                                Ok(n) => {
                                    assert_eq!(n, work);
                                    tally.served.fetch_add(1, Ordering::Relaxed)
                                }
                                Err(_) => tally.errors.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                    }
                    check(&handle);
                }
            })
        })
        .collect();

    let lowest_limit = Arc::new(AtomicUsize::new(CONCURRENCY));
    let monitor = {
        let handle = handle.clone();
        let lowest_limit = lowest_limit.clone();
        tokio::spawn(async move {
            loop {
                check(&handle);
                lowest_limit.fetch_min(handle.concurrency_limit(), Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    monitor.abort();

    let total = tally.served.load(Ordering::Relaxed)
        + tally.errors.load(Ordering::Relaxed)
        + tally.cancelled.load(Ordering::Relaxed);
    assert_eq!(total, TASKS as usize * STEPS, "every call accounted for");
    assert!(tally.served.load(Ordering::Relaxed) > 0);
    assert_eq!(
        (handle.in_flight(), handle.depth()),
        (0, 0),
        "no leaked slot or place"
    );
    assert_eq!(inside.load(Ordering::SeqCst), 0);
    if adaptive {
        assert!(
            lowest_limit.load(Ordering::Relaxed) < CONCURRENCY,
            "the adaptive limit moved"
        );
    }
    // Still serving afterwards.
    let mut svc = svc;
    assert_eq!(svc.call(7).await.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_newest_under_random_cancellation() {
    run(Overflow::RejectNewest, None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_under_random_cancellation() {
    run(Overflow::DropOldest, None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_under_random_cancellation() {
    run(Overflow::DropOldest, Some(Duration::from_micros(50)), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_limit_under_random_cancellation() {
    run(Overflow::DropOldest, Some(Duration::from_micros(50)), true).await;
}
