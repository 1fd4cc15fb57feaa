//! `cargo run -p grpc-example`: starts the backend and the edge on loopback ports, makes a few
//! calls through them that show each layer at work, prints what came back and the metrics the
//! layers recorded, then exits.

use std::time::Duration;

use grpc_example::pb::EchoRequest;
use grpc_example::pb::echo_client::EchoClient;
use grpc_example::serve;
use grpc_example::stack::HopSettings;
use tokio::net::TcpListener;
use tower_metrics_layer::prometheus::PrometheusMetrics;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = PrometheusMetrics::builder().without_target_info().build()?;
    let meter = metrics.meter("grpc-example");
    let settings = HopSettings::default();
    let (backend, _) = serve::backend(
        TcpListener::bind("127.0.0.1:0").await?,
        &settings,
        Some(&meter),
    )?;
    let edge = serve::edge(
        TcpListener::bind("127.0.0.1:0").await?,
        backend.addr,
        &settings,
        Some(&meter),
    )?;
    println!("backend on {}, edge on {}", backend.addr, edge.addr);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", edge.addr))?
        .connect()
        .await?;
    let mut client = EchoClient::new(channel);

    let calls = [
        ("ok, 2 s budget", 0, 0, Some(Duration::from_secs(2))),
        (
            "backend slower than a 200 ms budget",
            1_000,
            0,
            Some(Duration::from_millis(200)),
        ),
        ("backend answers INVALID_ARGUMENT (not retried)", 0, 3, None),
        ("backend answers UNAVAILABLE (retried 4 times)", 0, 14, None),
    ];
    for (what, delay_ms, fail_code, timeout) in calls {
        let mut request = tonic::Request::new(EchoRequest {
            message: what.to_string(),
            delay_ms,
            fail_code,
            ..Default::default()
        });
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        let started = std::time::Instant::now();
        let outcome = match client.unary(request).await {
            Ok(reply) => format!(
                "OK, backend received grpc-timeout {} ms",
                reply.into_inner().received_timeout_ms
            ),
            Err(status) => format!("{:?}: {}", status.code(), status.message()),
        };
        println!("{what}: {outcome} ({:.0?})", started.elapsed());
    }

    println!("\nmetrics recorded by the layers:");
    for line in metrics.render()?.lines() {
        let interesting = line.starts_with("rpc_") && line.contains("_count{")
            || line.starts_with("tower_retry_attempts_total")
            || line.starts_with("tower_deadline_exceeded_total");
        if interesting {
            println!("  {line}");
        }
    }
    Ok(())
}
