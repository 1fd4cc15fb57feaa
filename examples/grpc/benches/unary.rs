//! `cargo bench -p grpc-example`: unary calls per second through the edge to the backend over
//! one HTTP/2 connection, every layer on both hops against none, in one process on loopback.
//!
//! Closed loop: 32 calls in flight on the client's one connection for 5 s, three rounds
//! alternating off and on, medians. Run as a test (`cargo test --benches`) it makes one short
//! round of each (in a debug build: its figures mean nothing), to prove it still works.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use grpc_example::pb::EchoRequest;
use grpc_example::pb::echo_client::EchoClient;
use grpc_example::serve;
use grpc_example::stack::HopSettings;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tower_metrics_layer::prometheus::PrometheusMetrics;

const IN_FLIGHT: usize = 32;

async fn calls_per_second(layers: bool, duration: Duration) -> f64 {
    let metrics = PrometheusMetrics::builder()
        .without_target_info()
        .build()
        .expect("metrics");
    let meter = metrics.meter("grpc-bench");
    let meter = layers.then_some(&meter);
    let settings = HopSettings::default();
    let listener = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
    let (backend, _) = serve::backend(listener().await, &settings, meter).expect("backend");
    let edge = serve::edge(listener().await, backend.addr, &settings, meter).expect("edge");
    let channel = Channel::from_shared(format!("http://{}", edge.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    // Warm-up: connections on both hops, pools, caches.
    run(&channel, Duration::from_millis(300)).await;
    let (calls, elapsed) = run(&channel, duration).await;
    calls as f64 / elapsed.as_secs_f64()
}

async fn run(channel: &Channel, duration: Duration) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let mut client = EchoClient::new(channel.clone());
            let (done, stop) = (done.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let request = EchoRequest {
                        message: "bench".to_string(),
                        ..Default::default()
                    };
                    client.unary(request).await.expect("call succeeds");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("caller task");
    }
    (done.load(Ordering::Relaxed), started.elapsed())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (rounds, duration) = if benching {
        (3, Duration::from_secs(5))
    } else {
        (1, Duration::from_millis(200))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let bare = runtime.block_on(calls_per_second(false, duration));
        let layered = runtime.block_on(calls_per_second(true, duration));
        eprintln!("round {round}: layers off {bare:.0} calls/s, on {layered:.0} calls/s");
        off.push(bare);
        on.push(layered);
    }
    let (off, on) = (median(off), median(on));
    println!("| configuration | unary calls/s |\n|---|---|");
    println!("| no layers | {off:.0} |");
    println!("| all four layers on both hops | {on:.0} |");
    println!("\nRatio on/off: **{:.3}** (target >= 0.85).", on / off);
}
