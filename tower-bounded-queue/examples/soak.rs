//! Bounded soak: an axum server protected by the queue, driven for 20 s (env `SOAK_SECS`) on
//! loopback with 10x more concurrent callers than it can hold (running + waiting). Prints the
//! process's resident memory (VmRSS, and the peak VmHWM) at the start, the middle and the end:
//! with the queue bounded, memory stays flat however long the overload lasts.
//!
//! `cargo run --release -p tower-bounded-queue --example soak`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_bounded_queue::BoundedQueueBuilder;

const CONCURRENCY: usize = 8;
const CAPACITY: usize = 32;
/// Ten times what the server can hold at once (running + waiting).
const CALLERS: usize = 10 * (CONCURRENCY + CAPACITY);
const WORK: Duration = Duration::from_millis(5);

fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_else(|| "n/a".into())
    };
    format!("VmRSS {} (peak VmHWM {})", field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let layer = BoundedQueueBuilder::new(CONCURRENCY)
        .capacity(CAPACITY)
        .name("soak")
        .build()
        .http();
    let handle = layer.handle();
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                tokio::time::sleep(WORK).await;
                "ok"
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let served = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    println!(
        "soak: {secs} s, concurrency {CONCURRENCY}, capacity {CAPACITY}, {CALLERS} callers, \
         {WORK:?} per request (server capacity ~{} req/s)",
        CONCURRENCY as u128 * 1000 / WORK.as_millis()
    );
    println!("start:  {} (before any load)", memory());

    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let client = client.clone();
            let (served, rejected, failed, stop) = (
                served.clone(),
                rejected.clone(),
                failed.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let request = http::Request::get(format!("http://{addr}/"))
                        .body(Empty::new())
                        .unwrap();
                    match client.request(request).await {
                        Ok(response) => {
                            let status = response.status();
                            let _ = response.into_body().collect().await;
                            match status.as_u16() {
                                200 => served.fetch_add(1, Ordering::Relaxed),
                                503 => rejected.fetch_add(1, Ordering::Relaxed),
                                _ => failed.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    let start = Instant::now();
    let mut max_depth = 0;
    let mut printed_middle = false;
    let mut printed_warm = false;
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        max_depth = max_depth.max(handle.depth());
        if !printed_warm && start.elapsed() >= Duration::from_secs(1) {
            // All connections open, the queue full: the baseline for "flat".
            println!("1 s:    {}", memory());
            printed_warm = true;
        }
        if !printed_middle && start.elapsed() >= Duration::from_secs(secs) / 2 {
            println!("middle: {}", memory());
            printed_middle = true;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        let _ = caller.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!("end:    {}", memory());
    let (s, r, f) = (
        served.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "served {s} ({:.0}/s), rejected {r} with 503 ({:.0}/s), failed {f}, max depth seen {max_depth} of {CAPACITY}, \
         in flight now {}, depth now {}",
        s as f64 / elapsed,
        r as f64 / elapsed,
        handle.in_flight(),
        handle.depth()
    );
}
