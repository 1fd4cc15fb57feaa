//! The queue against tower's usual admission stacks, with the same trivial inner service:
//! `LoadShed<Buffer<_>>` (buffer 1024) and `LoadShed<ConcurrencyLimit<_>>`; and with an adaptive
//! limit (`Adaptive::aimd()`, starting at 64) against `tower-resilience-adaptive`'s AIMD limiter
//! (initial 64, the same bounds).
//!
//! `cargo bench -p tower-bounded-queue --bench queue -- --warm-up-time 1 --measurement-time 3`
//!
//! With 64 concurrent callers the rejections each stack produced (while nothing was close to
//! full) are printed to stderr at the end.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tower::buffer::Buffer;
use tower::limit::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::{Service, ServiceExt};
use tower_bounded_queue::{Adaptive, BoundedQueueBuilder};
use tower_layer::Layer;
use tower_resilience_adaptive::{AdaptiveLimiterLayer, Aimd};

/// The trivial inner service every stack wraps.
#[derive(Clone, Copy)]
struct Echo;

impl Service<u32> for Echo {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        ready(Ok(request))
    }
}

const CALLERS: u64 = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Calls `n` times in sequence; returns the number of errors (rejections).
async fn calls<S>(svc: &mut S, n: u64) -> u64
where
    S: Service<u32>,
{
    let mut rejected = 0;
    for i in 0..n {
        let result = match svc.ready().await {
            Ok(svc) => svc.call(i as u32).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            rejected += 1;
        }
    }
    rejected
}

/// `iters` calls spread over 64 concurrent tasks; returns elapsed time and adds rejections.
async fn concurrent<S>(svc: &S, iters: u64, rejected: &AtomicU64, total: &AtomicU64) -> Duration
where
    S: Service<u32> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    let per_caller = iters.div_ceil(CALLERS);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move { calls(&mut svc, per_caller).await })
        })
        .collect();
    for task in tasks {
        rejected.fetch_add(task.await.unwrap(), Ordering::Relaxed);
    }
    total.fetch_add(per_caller * CALLERS, Ordering::Relaxed);
    start.elapsed()
}

type Stats = Arc<Mutex<Vec<(&'static str, u64, u64)>>>;

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let stats: Stats = Arc::default();

    let ours = BoundedQueueBuilder::new(64)
        .capacity(1000)
        .build()
        .layer(Echo);
    let ours_queueing = BoundedQueueBuilder::new(8)
        .capacity(1000)
        .build()
        .layer(Echo);
    // Fair share over 16 keys: keyed only when a request has to wait.
    let ours_fair = BoundedQueueBuilder::new(64)
        .capacity(1000)
        .fair_by(|n: &u32| Some(n % 16))
        .build()
        .layer(Echo);
    let shed_limit = LoadShed::new(ConcurrencyLimit::new(Echo, 64));
    let shed_buffer = LoadShed::new(Buffer::new(Echo, 1024));
    // Adaptive limits: both start at 64 and move within [1, 1000]. tower-resilience's waits in
    // `poll_ready` for a permit (it never rejects); its latency threshold is absolute.
    let ours_adaptive = BoundedQueueBuilder::new(64)
        .capacity(1000)
        .adaptive(Adaptive::aimd().floor(1).ceiling(1000))
        .build()
        .layer(Echo);
    let resilience_adaptive = AdaptiveLimiterLayer::new(
        Aimd::builder()
            .initial_limit(64)
            .min_limit(1)
            .max_limit(1000)
            .latency_threshold(Duration::from_millis(100))
            .build()
            .unwrap(),
    )
    .layer(Echo);

    let mut group = c.benchmark_group("sequential");
    group.bench_function("inner", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut svc = Echo;
                let start = Instant::now();
                calls(&mut svc, iters).await;
                start.elapsed()
            })
        })
    });
    macro_rules! sequential {
        ($name:literal, $svc:expr) => {
            group.bench_function($name, |b| {
                b.iter_custom(|iters| {
                    // On a runtime worker, as a server's request task would be.
                    let mut svc = $svc.clone();
                    rt.block_on(tokio::spawn(async move {
                        let start = Instant::now();
                        calls(&mut svc, iters).await;
                        start.elapsed()
                    }))
                    .unwrap()
                })
            });
        };
    }
    sequential!("bounded_queue", ours);
    sequential!("bounded_queue_fair", ours_fair);
    sequential!("bounded_queue_adaptive", ours_adaptive);
    sequential!("tower_resilience_adaptive", resilience_adaptive);
    sequential!("load_shed_concurrency_limit", shed_limit);
    sequential!("load_shed_buffer_1024", shed_buffer);
    group.finish();

    macro_rules! concurrent {
        ($group:ident, $group_name:literal, $name:literal, $svc:expr) => {
            let rejected = AtomicU64::new(0);
            let total = AtomicU64::new(0);
            $group.bench_function($name, |b| {
                b.iter_custom(|iters| rt.block_on(concurrent(&$svc, iters, &rejected, &total)))
            });
            stats.lock().unwrap().push((
                concat!($group_name, "/", $name),
                rejected.load(Ordering::Relaxed),
                total.load(Ordering::Relaxed),
            ));
        };
    }
    let mut group = c.benchmark_group("concurrent_64");
    concurrent!(group, "concurrent_64", "inner", Echo);
    concurrent!(group, "concurrent_64", "bounded_queue", ours);
    concurrent!(group, "concurrent_64", "bounded_queue_fair", ours_fair);
    concurrent!(
        group,
        "concurrent_64",
        "bounded_queue_adaptive",
        ours_adaptive
    );
    concurrent!(
        group,
        "concurrent_64",
        "tower_resilience_adaptive",
        resilience_adaptive
    );
    concurrent!(
        group,
        "concurrent_64",
        "bounded_queue_concurrency_8",
        ours_queueing
    );
    concurrent!(
        group,
        "concurrent_64",
        "load_shed_concurrency_limit",
        shed_limit
    );
    concurrent!(group, "concurrent_64", "load_shed_buffer_1024", shed_buffer);
    group.finish();

    // An inner service that yields once, so callers interleave, tasks spend their coop budget
    // and (with concurrency 8) requests really wait in the queue.
    let yielding = tower::service_fn(|request: u32| async move {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(request)
    });
    let ours = BoundedQueueBuilder::new(64)
        .capacity(1000)
        .build()
        .layer(yielding);
    let ours_queueing = BoundedQueueBuilder::new(8)
        .capacity(1000)
        .build()
        .layer(yielding);
    let ours_queueing_fair = BoundedQueueBuilder::new(8)
        .capacity(1000)
        .fair_by(|n: &u32| Some(n % 16))
        .build()
        .layer(yielding);
    let shed_limit = LoadShed::new(ConcurrencyLimit::new(yielding, 64));
    let shed_buffer = LoadShed::new(Buffer::new(yielding, 1024));
    let mut g = c.benchmark_group("concurrent_64_yielding");
    concurrent!(g, "concurrent_64_yielding", "inner", yielding);
    concurrent!(g, "concurrent_64_yielding", "bounded_queue", ours);
    concurrent!(
        g,
        "concurrent_64_yielding",
        "bounded_queue_concurrency_8",
        ours_queueing
    );
    concurrent!(
        g,
        "concurrent_64_yielding",
        "bounded_queue_fair_concurrency_8",
        ours_queueing_fair
    );
    concurrent!(
        g,
        "concurrent_64_yielding",
        "load_shed_concurrency_limit",
        shed_limit
    );
    concurrent!(
        g,
        "concurrent_64_yielding",
        "load_shed_buffer_1024",
        shed_buffer
    );
    g.finish();

    // The cost of saying no: the only slot is taken and nobody may wait.
    let mut group = c.benchmark_group("rejection");
    let layer = BoundedQueueBuilder::new(1).capacity(0).build();
    let mut full = layer.layer(Echo);
    let _held = full.call(0);
    group.bench_function("bounded_queue", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let rejected = calls(&mut full, iters).await;
                assert_eq!(rejected, iters);
                start.elapsed()
            })
        })
    });
    let mut limit_full = LoadShed::new(ConcurrencyLimit::new(Echo, 1));
    let _permit_holder = {
        let mut holder = limit_full.clone();
        rt.block_on(holder.ready()).unwrap().call(0)
    };
    group.bench_function("load_shed_concurrency_limit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let rejected = calls(&mut limit_full, iters).await;
                assert_eq!(rejected, iters);
                start.elapsed()
            })
        })
    });
    group.finish();

    for (name, rejected, total) in stats.lock().unwrap().iter() {
        let pct = if *total == 0 {
            0.0
        } else {
            *rejected as f64 * 100.0 / *total as f64
        };
        eprintln!("{name}: {rejected} of {total} calls rejected ({pct:.2}%)");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
