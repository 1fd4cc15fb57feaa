//! Hedging, two ways.
//!
//! 1. **The tail it cuts** (printed as a table, not criterion): 2,000 GETs, 20 in flight,
//!    through a hyper client to a hyper upstream on 127.0.0.1 whose answers take 10 ms, or 1 s
//!    for 5% of attempts (chosen at random per attempt, as a slow replica or a lost packet
//!    would). Latency percentiles and extra calls without hedging, with the observed-p95 delay,
//!    and with a fixed 25 ms delay.
//! 2. **The success path** (criterion): a trivial service answering at once, so only the
//!    layer's own cost shows, against tower-resilience's `HedgeLayer`.
//!
//! `cargo bench -p tower-retry-classified --bench hedge`

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{BoxError, Service, ServiceExt};
use tower_layer::Layer;
use tower_retry_classified::{Classification, HedgeBuilder, HedgeLayer, ReplayBody};

const REQUESTS: usize = 2000;
const IN_FLIGHT: usize = 20;
const FAST: Duration = Duration::from_millis(10);
const SLOW: Duration = Duration::from_secs(1);

/// The bimodal upstream; counts every attempt it answers.
async fn upstream(calls: Arc<AtomicU64>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let rng = Arc::new(std::sync::Mutex::new(fastrand::Rng::with_seed(7)));
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (calls, rng) = (calls.clone(), rng.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<_>| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    let slow = rng.lock().unwrap().f64() < 0.05;
                    async move {
                        tokio::time::sleep(if slow { SLOW } else { FAST }).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Sends every request, `IN_FLIGHT` at a time; the latencies, sorted.
async fn drive<S>(svc: S, addr: SocketAddr) -> Vec<Duration>
where
    S: Service<Request<Full<Bytes>>, Response = Response<hyper::body::Incoming>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (mut svc, next) = (svc.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < REQUESTS as u64 {
                    let request = Request::get(format!("http://{addr}/"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let started = Instant::now();
                    let response = svc.ready().await.unwrap().call(request).await.unwrap();
                    response.into_body().collect().await.unwrap();
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).min(sorted.len()) - 1]
}

fn tail_table(rt: &tokio::runtime::Runtime) {
    println!(
        "| {REQUESTS} GETs, {IN_FLIGHT} in flight; attempts take 10 ms, 5% take 1 s | p50 | p95 | p99 | max | attempts per request |"
    );
    println!("|---|---|---|---|---|---|");
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    for case in [
        "no hedging",
        "HedgeLayer, observed p95",
        "HedgeLayer, fixed 25 ms",
    ] {
        let calls = Arc::new(AtomicU64::new(0));
        let latencies = rt.block_on(async {
            let addr = upstream(calls.clone()).await;
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let replaying =
                Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
            match case {
                "no hedging" => drive(client, addr).await,
                "HedgeLayer, observed p95" => {
                    drive(HedgeLayer::for_http().layer(replaying), addr).await
                }
                _ => {
                    let layer = HedgeBuilder::for_http()
                        .delay(Duration::from_millis(25))
                        .build();
                    drive(layer.layer(replaying), addr).await
                }
            }
        });
        println!(
            "| {case} | {} | {} | {} | {} | {:.3} |",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.95)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().unwrap()),
            calls.load(Ordering::Relaxed) as f64 / REQUESTS as f64
        );
    }
}

#[derive(Clone, Copy)]
struct Trivial;

impl Service<String> for Trivial {
    type Response = String;
    type Error = std::fmt::Error;
    type Future = Ready<Result<String, std::fmt::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: String) -> Self::Future {
        ready(Ok(request))
    }
}

fn success_path(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let final_answer = |_: Result<&String, &BoxError>| Classification::Success;
    let ours = rt.block_on(async { HedgeLayer::new(final_answer).layer(Trivial) });
    let theirs = rt.block_on(async {
        tower_resilience_hedge::HedgeLayer::builder()
            .delay(Duration::from_millis(100))
            .max_hedged_attempts(2)
            .build()
            .layer(Trivial)
    });
    let mut group = c.benchmark_group("hedge_success_sequential");
    group.bench_function("bare", |b| {
        b.to_async(rt).iter(|| async {
            let mut svc = Trivial;
            svc.ready()
                .await
                .unwrap()
                .call(String::from("q"))
                .await
                .unwrap()
        })
    });
    group.bench_function("classified_hedge", |b| {
        b.to_async(rt).iter(|| {
            let mut svc = ours.clone();
            async move {
                svc.ready()
                    .await
                    .unwrap()
                    .call(String::from("q"))
                    .await
                    .unwrap()
            }
        })
    });
    group.bench_function("tower_resilience", |b| {
        b.to_async(rt).iter(|| {
            let mut svc = theirs.clone();
            async move {
                svc.ready()
                    .await
                    .unwrap()
                    .call(String::from("q"))
                    .await
                    .unwrap()
            }
        })
    });
    group.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut criterion = Criterion::default().configure_from_args();
    // `cargo bench` passes `--bench`; `cargo test --benches` (CI's smoke run) does not, and
    // gets the criterion part only, each case run once.
    if std::env::args().any(|a| a == "--bench") {
        tail_table(&rt);
    }
    success_path(&mut criterion, &rt);
    criterion.final_summary();
}
