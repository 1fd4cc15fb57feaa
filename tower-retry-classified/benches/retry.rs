//! Success path: our retry layer against `tower::retry::Retry` with a policy that clones the
//! request and never retries, same trivial inner service, sequential and with 64 concurrent
//! callers; and our layer with the retry budget on and off.
//!
//! `cargo bench -p tower-retry-classified --bench retry -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::{Policy, Retry};
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_retry_classified::RetryLayer;

/// The trivial inner service: answers 200 at once, whatever the body type.
#[derive(Clone, Copy)]
struct Trivial;

impl<B> Service<Request<B>> for Trivial {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        drop(req);
        ready(Ok(Response::new(())))
    }
}

/// tower's closest equivalent: clone the request up front, never retry.
#[derive(Clone, Copy)]
struct CloneNeverRetry;

impl<B: Clone, Res, E> Policy<Request<B>, Res, E> for CloneNeverRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Request<B>, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

/// tower's `Retry` with its `TpsBudget`, deposited on every response as tower's docs show.
#[derive(Clone)]
struct TpsNeverRetry(std::sync::Arc<TpsBudget>);

impl<B: Clone, Res, E> Policy<Request<B>, Res, E> for TpsNeverRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Request<B>, _: &mut Result<Res, E>) -> Option<Self::Future> {
        self.0.deposit();
        None
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

fn request(headers: usize) -> Request<Full<Bytes>> {
    let mut builder = Request::get("http://upstream.internal/v1/items?page=2");
    for (name, value) in [
        ("accept", "application/json"),
        ("user-agent", "bench/1.0"),
        ("x-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("authorization", "Bearer abcdefghijklmnopqrstuvwxyz"),
    ]
    .into_iter()
    .take(headers)
    {
        builder = builder.header(name, value);
    }
    builder.body(Full::default()).unwrap()
}

async fn one<S>(svc: &mut S, req: Request<Full<Bytes>>)
where
    S: Service<Request<Full<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    std::hint::black_box(resp);
}

fn sequential(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for headers in [0, 4] {
        let mut group = c.benchmark_group(format!("success_sequential_{headers}_headers"));
        group.bench_function("bare", |b| {
            b.to_async(&rt).iter(|| async {
                let mut svc = Trivial;
                one(&mut svc, request(headers)).await
            })
        });
        let tower_retry = Retry::new(CloneNeverRetry, Trivial);
        group.bench_function("tower_retry", |b| {
            b.to_async(&rt).iter(|| {
                let mut svc = tower_retry.clone();
                async move { one(&mut svc, request(headers)).await }
            })
        });
        let ours = rt.block_on(async { RetryLayer::for_http().layer(Trivial) });
        group.bench_function("classified_budget_on", |b| {
            b.to_async(&rt).iter(|| {
                let mut svc = ours.clone();
                async move { one(&mut svc, request(headers)).await }
            })
        });
        let ours_nb = rt.block_on(async { RetryLayer::for_http().no_budget().layer(Trivial) });
        group.bench_function("classified_budget_off", |b| {
            b.to_async(&rt).iter(|| {
                let mut svc = ours_nb.clone();
                async move { one(&mut svc, request(headers)).await }
            })
        });
        group.finish();
    }
}

/// 64 tasks on a 2-worker runtime share one service (each with its own clone); reports time
/// per call across all of them.
fn concurrent<S>(rt: &tokio::runtime::Runtime, svc: S, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>> + Clone + Send + 'static,
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
                        one(&mut svc, request(4)).await;
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

fn concurrent_64(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("success_concurrent_64_callers_4_headers");
    group.bench_function("bare", |b| b.iter_custom(|n| concurrent(&rt, Trivial, n)));
    let tower_retry = Retry::new(CloneNeverRetry, Trivial);
    group.bench_function("tower_retry", |b| {
        b.iter_custom(|n| concurrent(&rt, tower_retry.clone(), n))
    });
    let tps = Retry::new(
        TpsNeverRetry(std::sync::Arc::new(TpsBudget::new(
            Duration::from_secs(10),
            10,
            0.2,
        ))),
        Trivial,
    );
    group.bench_function("tower_retry_tps_budget", |b| {
        b.iter_custom(|n| concurrent(&rt, tps.clone(), n))
    });
    let ours = rt.block_on(async { RetryLayer::for_http().layer(Trivial) });
    group.bench_function("classified_budget_on", |b| {
        b.iter_custom(|n| concurrent(&rt, ours.clone(), n))
    });
    let ours_nb = rt.block_on(async { RetryLayer::for_http().no_budget().layer(Trivial) });
    group.bench_function("classified_budget_off", |b| {
        b.iter_custom(|n| concurrent(&rt, ours_nb.clone(), n))
    });
    group.finish();
}

/// The pieces of the success path's fixed cost, for reading the figures above.
fn parts(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    {
        let mut ours = RetryLayer::for_http().layer(Trivial);
        let mut tower_retry = Retry::new(CloneNeverRetry, Trivial);
        let a = ours.call(request(0));
        let b = tower_retry.call(request(0));
        eprintln!(
            "future sizes: classified {} bytes, tower {} bytes, sleep {} bytes",
            std::mem::size_of_val(&a),
            std::mem::size_of_val(&b),
            std::mem::size_of::<tokio::time::Sleep>()
        );
    }
    let mut group = c.benchmark_group("pieces");
    group.bench_function("tokio_instant_now", |b| {
        b.iter(|| std::hint::black_box(tokio::time::Instant::now()))
    });
    let budget = tower_retry_classified::RetryBudget::default();
    group.bench_function("budget_deposit", |b| b.iter(|| budget.deposit()));
    let counter = opentelemetry::global::meter("bench")
        .u64_counter("c")
        .build();
    group.bench_function("noop_counter_add_2_attrs", |b| {
        b.iter(|| {
            counter.add(
                1,
                &[
                    opentelemetry::KeyValue::new("outcome", "success"),
                    opentelemetry::KeyValue::new("reason", "ok"),
                ],
            )
        })
    });
    group.bench_function("request_clone_4_headers", |b| {
        let req = request(4);
        b.iter(|| std::hint::black_box(req.clone()))
    });
    group.finish();
}

/// Interleaved A/B rounds, best round per variant: robust against a loaded machine, where
/// criterion's back-to-back groups drift. Run with `RETRY_AB=1`.
fn interleaved(_: &mut Criterion) {
    if std::env::var_os("RETRY_AB").is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    const CALLS: u32 = 20_000;
    async fn run<S>(svc: &S, headers: usize) -> Duration
    where
        S: Service<Request<Full<Bytes>>> + Clone,
        S::Error: std::fmt::Debug,
    {
        let start = Instant::now();
        for _ in 0..CALLS {
            let mut svc = svc.clone();
            one(&mut svc, request(headers)).await;
        }
        start.elapsed() / CALLS
    }
    if let Some(only) = std::env::var_os("RETRY_ONLY") {
        // Profiling aid: one variant (RETRY_ONLY=bare|tower|on|off, RETRY_HEADERS=0..4), for
        // `perf record` and for figures free of cross-variant cache effects.
        fn headers() -> usize {
            std::env::var("RETRY_HEADERS").map_or(0, |h| h.parse().unwrap_or(0))
        }
        fn best_of<S>(rt: &tokio::runtime::Runtime, svc: S) -> Duration
        where
            S: Service<Request<Full<Bytes>>> + Clone,
            S::Error: std::fmt::Debug,
        {
            (0..100)
                .map(|_| rt.block_on(run(&svc, headers())))
                .min()
                .unwrap()
        }
        let best = match only.to_str() {
            Some("bare") => best_of(&rt, Trivial),
            Some("tower") => best_of(&rt, Retry::new(CloneNeverRetry, Trivial)),
            Some("off") => best_of(
                &rt,
                rt.block_on(async { RetryLayer::for_http().no_budget().layer(Trivial) }),
            ),
            _ => best_of(
                &rt,
                rt.block_on(async { RetryLayer::for_http().layer(Trivial) }),
            ),
        };
        eprintln!("only {only:?}: {best:?}");
        return;
    }
    for headers in [0, 4] {
        let tower_retry = Retry::new(CloneNeverRetry, Trivial);
        let (ours, ours_nb) = rt.block_on(async {
            (
                RetryLayer::for_http().layer(Trivial),
                RetryLayer::for_http().no_budget().layer(Trivial),
            )
        });
        let mut best = [Duration::MAX; 4];
        for _ in 0..30 {
            rt.block_on(async {
                best[0] = best[0].min(run(&Trivial, headers).await);
                best[1] = best[1].min(run(&tower_retry, headers).await);
                best[2] = best[2].min(run(&ours, headers).await);
                best[3] = best[3].min(run(&ours_nb, headers).await);
            });
        }
        eprintln!(
            "interleaved best of 30, {headers} headers: bare {:?}, tower_retry {:?}, classified_budget_on {:?}, classified_budget_off {:?}",
            best[0], best[1], best[2], best[3]
        );
    }
    // The same, 64 concurrent callers on 2 workers, 4 headers.
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let tps = Retry::new(
        TpsNeverRetry(std::sync::Arc::new(TpsBudget::new(
            Duration::from_secs(10),
            10,
            0.2,
        ))),
        Trivial,
    );
    let tower_retry = Retry::new(CloneNeverRetry, Trivial);
    let (ours, ours_nb) = mt.block_on(async {
        (
            RetryLayer::for_http().layer(Trivial),
            RetryLayer::for_http().no_budget().layer(Trivial),
        )
    });
    let calls = 64 * 1000;
    let per_call = |d: Duration| d / calls;
    let mut best = [Duration::MAX; 5];
    for _ in 0..20 {
        best[0] = best[0].min(per_call(concurrent(&mt, Trivial, calls.into())));
        best[1] = best[1].min(per_call(concurrent(&mt, tower_retry.clone(), calls.into())));
        best[2] = best[2].min(per_call(concurrent(&mt, tps.clone(), calls.into())));
        best[3] = best[3].min(per_call(concurrent(&mt, ours.clone(), calls.into())));
        best[4] = best[4].min(per_call(concurrent(&mt, ours_nb.clone(), calls.into())));
    }
    eprintln!(
        "interleaved best of 20, 64 callers, 4 headers: bare {:?}, tower_retry {:?}, tower_retry_tps_budget {:?}, classified_budget_on {:?}, classified_budget_off {:?}",
        best[0], best[1], best[2], best[3], best[4]
    );
}

criterion_group!(benches, sequential, concurrent_64, parts, interleaved);
criterion_main!(benches);
