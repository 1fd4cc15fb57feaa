//! Fair share against a real axum server on 127.0.0.1: one tenant floods the queue with ten
//! times its capacity while nine tenants each send 5% of what the server can serve. Under fair
//! share the nine are served as if the flood were not there; first come first served (the
//! default) turns most of them away.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{HttpClient, client, serve};
use http::{HeaderName, StatusCode};
use http_body_util::{BodyExt, Empty};
use tower_bounded_queue::BoundedQueueBuilder;

const TENANT: HeaderName = HeaderName::from_static("x-tenant-id");
/// Four requests at once, each taking 20 to 60 ms (40 on average, varied as real work is, so
/// that slots do not all free at the same instant): the server serves 100 requests a second.
const CONCURRENCY: usize = 4;
const SERVICE_MS: std::ops::RangeInclusive<u64> = 20..=60;
const CAPACITY: usize = 20;
/// Each small tenant sends a request every 200 ms: 5 a second, 5% of what the server serves.
const SMALL_EVERY: Duration = Duration::from_millis(200);
const SMALL_TENANTS: usize = 9;
const RUN: Duration = Duration::from_secs(3);

/// What the nine small tenants got: answers that were 200, and every answer's latency.
struct Seen {
    ok: usize,
    sent: usize,
    latencies: Vec<Duration>,
}

impl Seen {
    fn p99(&self) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
    }

    fn success(&self) -> f64 {
        self.ok as f64 / self.sent as f64
    }
}

async fn send(client: &HttpClient, addr: SocketAddr, tenant: &str) -> (StatusCode, Duration) {
    let request = http::Request::get(format!("http://{addr}/"))
        .header(TENANT, tenant)
        .body(Empty::new())
        .unwrap();
    let started = Instant::now();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    (status, started.elapsed())
}

/// One run: a server whose queue is fair or not, with or without the flooding tenant.
async fn run(fair: bool, flood: bool) -> Seen {
    let builder = BoundedQueueBuilder::new(CONCURRENCY).capacity(CAPACITY);
    let app = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(SERVICE_MS))).await;
            "done"
        }),
    );
    let addr = if fair {
        serve(app.layer(builder.fair_by_header(TENANT).build().http())).await
    } else {
        serve(app.layer(builder.build().http())).await
    };
    let until = Instant::now() + RUN;

    // The flood: ten times the queue's capacity in requests outstanding at all times (a short
    // pause after a refusal keeps the test's own CPU use sane; the queue stays full).
    let flooders: Vec<_> = (0..if flood { 10 * CAPACITY } else { 0 })
        .map(|_| {
            tokio::spawn(async move {
                let client = client();
                while Instant::now() < until {
                    let (status, _) = send(&client, addr, "flood").await;
                    if status != StatusCode::OK {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let small: Vec<_> = (0..SMALL_TENANTS)
        .map(|i| {
            tokio::spawn(async move {
                let client = client();
                let tenant = format!("tenant-{i}");
                // Spread the tenants' schedules over the period.
                tokio::time::sleep(SMALL_EVERY * i as u32 / SMALL_TENANTS as u32).await;
                let mut ticks = tokio::time::interval(SMALL_EVERY);
                let mut answers = Vec::new();
                while Instant::now() + SMALL_EVERY < until {
                    ticks.tick().await;
                    answers.push(send(&client, addr, &tenant).await);
                }
                answers
            })
        })
        .collect();
    let mut seen = Seen {
        ok: 0,
        sent: 0,
        latencies: Vec::new(),
    };
    for tenant in small {
        for (status, took) in tenant.await.unwrap() {
            seen.sent += 1;
            if status == StatusCode::OK {
                seen.ok += 1;
            }
            seen.latencies.push(took);
        }
    }
    for flooder in flooders {
        flooder.await.unwrap();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_small_tenants_are_served_through_a_flood_under_fair_share_only() {
    let quiet = run(true, false).await;
    let fair = run(true, true).await;
    let fifo = run(false, true).await;
    let report = format!(
        "small tenants: quiet {}/{} p99 {:?}; flood, fair share {}/{} p99 {:?}; flood, first come \
         first served {}/{} p99 {:?}",
        quiet.ok,
        quiet.sent,
        quiet.p99(),
        fair.ok,
        fair.sent,
        fair.p99(),
        fifo.ok,
        fifo.sent,
        fifo.p99()
    );
    println!("{report}");
    assert!(quiet.sent >= 100, "{report}");
    assert_eq!(quiet.ok, quiet.sent, "{report}");
    assert!(fair.success() >= 0.99, "{report}");
    assert!(fair.p99() <= quiet.p99() * 2, "{report}");
    // Without fair share the flood holds the queue: most small requests are turned away.
    assert!(fifo.success() < 0.5, "{report}");
}
