//! Jobs per second through a real nats-server and the real worker binary.
//!
//! 1. Trivial jobs (one `sleep 0` step), closed loop with 64 jobs in flight, every layer on vs
//!    every layer off, alternated (on, off, on, off; 5 s each); the best run of each mode.
//! 2. A paced load: 200 jobs/s on a fixed schedule for 10 s, small jobs
//!    (write 256 B, read it back, call a local provider, sleep 5 ms), every layer on;
//!    p50/p95/p99 from send to reply.
//!
//! `cargo bench -p worker --bench jobs` (about 45 s). Prints a markdown table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use worker_harness::*;

const IN_FLIGHT: usize = 64;
const RUN: Duration = Duration::from_secs(5);
const WAVE2_RATE: u64 = 200;
const WAVE2_FOR: Duration = Duration::from_secs(10);

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. a filter) is ignored.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

struct Closed {
    jobs_per_s: f64,
    ok: u64,
    other: u64,
}

async fn closed_loop(nats: &NatsServer, env: &[(&str, &str)]) -> Closed {
    let worker = Worker::start(nats, env);
    let client = connect(nats).await;
    let job = Arc::new(json!({"tenant": "bench", "steps": [{"type": "sleep", "ms": 0}]}));
    // Warm-up: connections, first series.
    for _ in 0..200 {
        let _ = request(&client, &job, &[], Duration::from_secs(5)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let loops: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (client, job, stop, ok, other) = (
                client.clone(),
                job.clone(),
                stop.clone(),
                ok.clone(),
                other.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match request(&client, &job, &[], Duration::from_secs(5)).await {
                        Ok(reply) if status(&reply) == "ok" => ok.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for task in loops {
        task.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(worker);
    let ok = ok.load(Ordering::Relaxed);
    Closed {
        jobs_per_s: ok as f64 / elapsed,
        ok,
        other: other.load(Ordering::Relaxed),
    }
}

struct Wave2 {
    sent: u64,
    ok: u64,
    other: u64,
    achieved: f64,
    p50: Duration,
    p95: Duration,
    p99: Duration,
}

async fn wave2(nats: &NatsServer) -> Wave2 {
    let worker = Worker::start(nats, &ALL_ON);
    let provider = Provider::start(200).await;
    let client = connect(nats).await;
    let job = |n: u64| -> Value {
        json!({"id": format!("w{n}"), "tenant": format!("t{}", n % 50), "pool": "io", "steps": [
            {"type": "fs_write", "path": format!("w/{}.bin", n % 100), "data": "x".repeat(256)},
            {"type": "fs_read", "path": format!("w/{}.bin", n % 100)},
            {"type": "http_call", "url": format!("{}/v1/infer", provider.url)},
            {"type": "sleep", "ms": 5}
        ]})
    };
    let total = WAVE2_RATE * WAVE2_FOR.as_secs();
    let mut interval = tokio::time::interval(Duration::from_secs(1) / WAVE2_RATE as u32);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        interval.tick().await;
        let client = client.clone();
        let job = job(n);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let reply = request(
                &client,
                &job,
                &[("x-request-timeout-ms", "5000")],
                Duration::from_secs(10),
            )
            .await;
            (reply.is_ok_and(|r| status(&r) == "ok"), sent.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let (mut ok, mut other) = (0, 0);
    for task in tasks {
        let (fine, latency) = task.await.unwrap();
        if fine {
            ok += 1;
        } else {
            other += 1;
        }
        latencies.push(latency);
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(worker);
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Wave2 {
        sent: total,
        ok,
        other,
        achieved: ok as f64 / elapsed,
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    }
}

async fn run() {
    let nats = NatsServer::start();
    let mut on = Vec::new();
    let mut off = Vec::new();
    for round in 0..2 {
        let a = closed_loop(&nats, &ALL_ON).await;
        eprintln!(
            "round {round}: on  {:>8.0} jobs/s ({} ok, {} other)",
            a.jobs_per_s, a.ok, a.other
        );
        on.push(a);
        let b = closed_loop(&nats, &[]).await;
        eprintln!(
            "round {round}: off {:>8.0} jobs/s ({} ok, {} other)",
            b.jobs_per_s, b.ok, b.other
        );
        off.push(b);
    }
    let best = |runs: &[Closed]| runs.iter().map(|r| r.jobs_per_s).fold(0.0, f64::max);
    let (best_on, best_off) = (best(&on), best(&off));
    let w = wave2(&nats).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;

    println!("| case | result | target |");
    println!("|---|---|---|");
    println!(
        "| trivial jobs, every layer off (64 in flight, best of 2 x 5 s) | {best_off:.0} jobs/s | |"
    );
    println!("| trivial jobs, every layer on (same) | {best_on:.0} jobs/s | |");
    println!("| on / off | {:.3}x | >= 0.9x |", best_on / best_off);
    println!(
        "| paced: {WAVE2_RATE} jobs/s for {} s, small jobs (write 256 B, read, local HTTP call, sleep 5 ms), layers on | {:.0} jobs/s answered ok ({} of {} sent, {} other); p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms | >= 200 jobs/s, p95 < 1 s |",
        WAVE2_FOR.as_secs(),
        w.achieved,
        w.ok,
        w.sent,
        w.other,
        ms(w.p50),
        ms(w.p95),
        ms(w.p99),
    );
}
