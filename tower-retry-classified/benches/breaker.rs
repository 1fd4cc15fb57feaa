//! The circuit breaker's success path (closed, every call succeeding) against
//! tower-resilience's `CircuitBreakerLayer`, sequential and with 64 tasks on 2 threads.
//!
//! `cargo bench -p tower-retry-classified --bench breaker`

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_retry_classified::CircuitBreakerLayer;

#[derive(Clone, Copy)]
struct Trivial;

impl Service<Request<()>> for Trivial {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        drop(req);
        ready(Ok(Response::new(())))
    }
}

async fn one<S>(svc: &mut S)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let response = svc.ready().await.unwrap().call(Request::new(())).await;
    std::hint::black_box(response.unwrap());
}

/// 64 tasks sharing one breaker (each with its own clone of the service); time per call.
fn concurrent<S>(rt: &tokio::runtime::Runtime, svc: S, iters: u64) -> Duration
where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    const TASKS: u64 = 64;
    let per_task = iters.div_ceil(TASKS);
    rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let mut svc = svc.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        one(&mut svc).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let ours = rt.block_on(async { CircuitBreakerLayer::new().layer(Trivial) });
    let theirs = rt.block_on(async {
        tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
            .failure_rate_threshold(0.5)
            .build()
            .unwrap()
            .layer(Trivial)
    });

    let mut group = c.benchmark_group("breaker_success_sequential");
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter(|| async { one(&mut Trivial).await })
    });
    group.bench_function("classified_breaker", |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = ours.clone();
            async move { one(&mut svc).await }
        })
    });
    group.bench_function("tower_resilience", |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = theirs.clone();
            async move { one(&mut svc).await }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("breaker_success_concurrent_64");
    group.bench_function("bare", |b| b.iter_custom(|n| concurrent(&rt, Trivial, n)));
    group.bench_function("classified_breaker", |b| {
        b.iter_custom(|n| concurrent(&rt, ours.clone(), n))
    });
    group.bench_function("tower_resilience", |b| {
        b.iter_custom(|n| concurrent(&rt, theirs.clone(), n))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
