//! Success-path cost of the deadline layers against `tower::timeout::Timeout`, with the same
//! trivial inner service, sequentially and with 64 concurrent callers.
//!
//! `cargo bench -p tower-deadline --bench deadline`

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::timeout::TimeoutLayer;
use tower::{Layer, Service};
use tower_deadline::{Deadline, DeadlineLayer, PropagateDeadlineLayer};

/// The trivial inner service: answers at once.
#[derive(Clone, Copy)]
struct Trivial;

impl Service<Request<()>> for Trivial {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// One call, polled to completion in place (every service here is ready at once).
fn call_once<S>(service: &mut S, request: Request<()>) -> bool
where
    S: Service<Request<()>>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let _ = service.poll_ready(&mut cx);
    let future = pin!(service.call(request));
    matches!(future.poll(&mut cx), Poll::Ready(Ok(_)))
}

fn request() -> Request<()> {
    Request::new(())
}

fn request_with_header() -> Request<()> {
    let mut request = Request::new(());
    request.headers_mut().insert(
        "x-request-timeout-ms",
        http::HeaderValue::from_static("2000"),
    );
    request
}

fn request_with_deadline() -> Request<()> {
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_secs(2)));
    request
}

fn sequential(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let mut group = c.benchmark_group("deadline/sequential");

    let mut bare = Trivial;
    group.bench_function("bare", |b| b.iter(|| call_once(&mut bare, request())));

    group.bench_function("bare_with_header", |b| {
        b.iter(|| call_once(&mut bare, request_with_header()))
    });

    let mut tower_timeout = TimeoutLayer::new(Duration::from_secs(30)).layer(Trivial);
    group.bench_function("tower_timeout", |b| {
        b.iter(|| call_once(&mut tower_timeout, request()))
    });

    let mut ours = DeadlineLayer::new().layer(Trivial);
    group.bench_function("deadline_server", |b| {
        b.iter(|| call_once(&mut ours, request()))
    });
    group.bench_function("deadline_server_with_header", |b| {
        b.iter(|| call_once(&mut ours, request_with_header()))
    });

    let mut ours_http = DeadlineLayer::new().http().layer(Trivial);
    group.bench_function("deadline_server_http_mode", |b| {
        b.iter(|| call_once(&mut ours_http, request()))
    });

    let mut propagate = PropagateDeadlineLayer::new().layer(Trivial);
    group.bench_function("bare_request_with_deadline", |b| {
        b.iter(|| call_once(&mut bare, request_with_deadline()))
    });
    group.bench_function("propagate_client", |b| {
        b.iter(|| call_once(&mut propagate, request_with_deadline()))
    });
    group.finish();
}

/// 64 tasks on a 2-worker runtime, each making its share of the calls through its own clone.
fn concurrent(c: &mut Criterion) {
    const CALLERS: u64 = 64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("deadline/64_callers");

    fn run<S>(runtime: &tokio::runtime::Runtime, service: S, iters: u64) -> Duration
    where
        S: Service<Request<()>> + Clone + Send + 'static,
        S::Future: Send,
        S::Response: Send,
        S::Error: Send,
    {
        runtime.block_on(async move {
            let started = Instant::now();
            let tasks: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let mut service = service.clone();
                    tokio::spawn(async move {
                        for _ in 0..iters.div_ceil(CALLERS) {
                            std::future::poll_fn(|cx| service.poll_ready(cx)).await.ok();
                            let _ = service.call(request()).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            started.elapsed()
        })
    }

    group.bench_function("bare", |b| {
        b.iter_custom(|iters| run(&runtime, Trivial, iters))
    });
    group.bench_function("tower_timeout", |b| {
        b.iter_custom(|iters| {
            let service = runtime
                .block_on(async { TimeoutLayer::new(Duration::from_secs(30)).layer(Trivial) });
            run(&runtime, service, iters)
        })
    });
    group.bench_function("deadline_server", |b| {
        b.iter_custom(|iters| run(&runtime, DeadlineLayer::new().layer(Trivial), iters))
    });
    group.finish();
}

criterion_group!(benches, sequential, concurrent);
criterion_main!(benches);
