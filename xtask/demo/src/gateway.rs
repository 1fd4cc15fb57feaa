//! `xtask-demo gateway` (`cargo xtask demo`): the gateway with all four layers on, under load,
//! explained by its own metrics.
//!
//! Starts the gateway (built beside this binary) with its embedded demo provider (20% of calls
//! fail with 503, 5% are slow), drives keep-alive HTTP/1.1 load from tokio tasks through
//! hyper-util's client with a live progress line, then prints a summary read from the gateway's
//! `/metrics` and a bar chart of its latency histogram.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Empty;

use crate::exposition::{Sample, parse_metrics};
use crate::setup::{
    ChildProcess, HttpClient, Options, exchange, http_client, http_get, listening_addr, runtime,
    sibling_binary,
};

/// Closed-loop clients; more than the gateway admits (16 running + 32 waiting), so the queue
/// has something to reject.
const CLIENTS: usize = 56;
/// Share of requests carrying a tight `x-request-timeout-ms`, so deadlines show up too.
const TIGHT_DEADLINE_EVERY: u64 = 4;
const TIGHT_DEADLINE_MS: u64 = 300;
/// The route every proxied request is recorded under.
const ROUTE: &str = "http_route=\"/v1/{*path}\"";

pub fn run(options: &Options) -> Result<(), String> {
    let binary = sibling_binary("gateway", options.release)?;
    let mut gateway = ChildProcess(
        Command::new(&binary)
            .envs([
                ("GATEWAY_LISTEN", "127.0.0.1:0"),
                ("GATEWAY_DEMO_LATENCY_MS", "20"),
                ("GATEWAY_DEMO_FAILURE_RATE", "0.2"),
                ("GATEWAY_MAX_CONCURRENCY", "16"),
                ("GATEWAY_QUEUE_CAPACITY", "32"),
                ("GATEWAY_TIMEOUT_MS", "5000"),
                ("CP2_ADVANCED_RETRY_ENABLED", "true"),
                ("CP2_COMPLETE_TIMEOUT_ENABLED", "true"),
                ("CP2_QUEUE_MANAGEMENT_ENABLED", "true"),
                ("CP2_OBSERVABILITY_METRICS_ENABLED", "true"),
                ("METRICS_TENANT_LABEL_ALLOWLIST", "acme,globex"),
                ("RUST_LOG", "gateway=warn"),
            ])
            .env_remove("GATEWAY_UPSTREAMS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?,
    );
    let addr = listening_addr(&mut gateway.0, "gateway")?;
    println!(
        "gateway on http://{addr} (all four layers on; demo provider: 20% 503s, 5% slow; \
         16 running + 32 queued at most)"
    );
    println!(
        "{CLIENTS} clients for {} s; 1 request in {TIGHT_DEADLINE_EVERY} carries \
         x-request-timeout-ms: {TIGHT_DEADLINE_MS}\n",
        options.duration.as_secs()
    );

    runtime()?.block_on(drive(addr, options.duration))?;

    if options.wait {
        println!("\nThe gateway is still running:");
        println!("  proxy    http://{addr}/v1/anything   (curl -i http://{addr}/v1/chat)");
        println!("  metrics  http://{addr}/metrics");
        println!("  health   http://{addr}/healthz, http://{addr}/readyz");
        println!("Ctrl-C to stop.");
        let _ = std::io::stdout().flush();
        let _ = gateway.0.wait();
    }
    Ok(())
}

/// The load, its progress lines, then the summary from `/metrics`.
async fn drive(addr: SocketAddr, duration: Duration) -> Result<(), String> {
    let client = http_client();
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (client, stats, stop) = (client.clone(), Arc::clone(&stats), Arc::clone(&stop));
            tokio::spawn(async move { client_loop(n as u64, &client, addr, &stats, &stop).await })
        })
        .collect();
    progress(&client, addr, &stats, duration).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }

    let metrics = http_get(&client, &format!("http://{addr}/metrics"))
        .await
        .map_err(|e| format!("scraping /metrics: {e}"))?;
    let samples = parse_metrics(&metrics);
    summary(&stats, &samples, duration);
    Ok(())
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    ok: AtomicU64,
    rejected: AtomicU64,
    upstream_failed: AtomicU64,
    deadline: AtomicU64,
    other: AtomicU64,
    io_errors: AtomicU64,
    /// Latencies (µs) since the last progress line.
    window: Mutex<Vec<u64>>,
}

async fn client_loop(
    n: u64,
    client: &HttpClient,
    addr: SocketAddr,
    stats: &Stats,
    stop: &AtomicBool,
) {
    let tenants = ["acme", "globex", "initech"];
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        i += CLIENTS as u64;
        let mut request = Request::get(format!("http://{addr}/v1/chat/completions?n={i}"))
            .header("x-tenant-id", tenants[(i % 3) as usize]);
        if i % TIGHT_DEADLINE_EVERY == 0 {
            request = request.header("x-request-timeout-ms", TIGHT_DEADLINE_MS);
        }
        let request = request.body(Empty::new()).expect("a valid request");
        let started = Instant::now();
        stats.sent.fetch_add(1, Ordering::Relaxed);
        match exchange(client, request).await {
            Ok((status, body)) => {
                let micros = started.elapsed().as_micros() as u64;
                stats.window.lock().unwrap().push(micros);
                let counter = match status {
                    200 => &stats.ok,
                    503 if body.starts_with(b"overloaded") => &stats.rejected,
                    503 => &stats.upstream_failed,
                    504 => &stats.deadline,
                    _ => &stats.other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if status == 503 && body.starts_with(b"overloaded") {
                    // Like a polite client: back off a little before trying again.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Err((_, connect)) => {
                stats.io_errors.fetch_add(1, Ordering::Relaxed);
                if connect {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// One line per second: throughput, outcomes, retries (from /metrics) and the client-side p99.
async fn progress(client: &HttpClient, addr: SocketAddr, stats: &Stats, duration: Duration) {
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last_sent = 0;
    let mut tick = Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1).min(duration.saturating_sub(started.elapsed())))
            .await;
        let sent = stats.sent.load(Ordering::Relaxed);
        let per_second = (sent - last_sent) as f64 / tick.elapsed().as_secs_f64();
        last_sent = sent;
        tick = Instant::now();
        let mut window = std::mem::take(&mut *stats.window.lock().unwrap());
        window.sort_unstable();
        let p99 = window
            .get((window.len() as f64 * 0.99) as usize)
            .or(window.last())
            .map_or(0.0, |&us| us as f64 / 1000.0);
        let retried = http_get(client, &format!("http://{addr}/metrics"))
            .await
            .map(|text| retries(&parse_metrics(&text)))
            .unwrap_or(0.0);
        let line = format!(
            "{:>4.0}s  {:>6.0} req/s  ok {:>6}  upstream 503 {:>5}  retried {:>6.0}  rejected {:>5}  504 {:>4}  p99 {:>6.1} ms",
            started.elapsed().as_secs_f64(),
            per_second,
            stats.ok.load(Ordering::Relaxed),
            stats.upstream_failed.load(Ordering::Relaxed),
            retried,
            stats.rejected.load(Ordering::Relaxed),
            stats.deadline.load(Ordering::Relaxed),
            p99,
        );
        if tty {
            print!("\r\x1b[K{line}");
        } else {
            println!("{line}");
        }
        let _ = std::io::stdout().flush();
    }
    if tty {
        println!();
    }
}

fn sum(samples: &[Sample], name: &str, filter: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.labels.contains(filter))
        .map(|s| s.value)
        .sum()
}

/// Sums `name` grouped by the values of `key`.
fn by_label(samples: &[Sample], name: &str, filter: &str, key: &str) -> BTreeMap<String, f64> {
    let mut groups = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == name && s.labels.contains(filter))
    {
        let value = s.label(key).unwrap_or("-").to_string();
        *groups.entry(value).or_insert(0.0) += s.value;
    }
    groups
}

/// Retries = attempts the retry layer made beyond the first of each call.
fn retries(samples: &[Sample]) -> f64 {
    let attempts = sum(samples, "tower_retry_attempts_total", "");
    let calls = sum(samples, "http_client_request_duration_seconds_count", "");
    (attempts - calls).max(0.0)
}

/// The gateway's request duration histogram for /v1: (upper bound, cumulative count).
fn histogram(samples: &[Sample]) -> Vec<(f64, f64)> {
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == "http_server_request_duration_seconds_bucket")
        .filter(|s| s.labels.contains(ROUTE))
    {
        let le = match s.label("le") {
            Some("+Inf") => f64::INFINITY,
            Some(v) => v.parse().unwrap_or(f64::INFINITY),
            None => continue,
        };
        buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += s.value;
    }
    let mut sorted: Vec<(f64, f64)> = buckets.into_values().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    sorted
}

/// Prometheus's `histogram_quantile`: linear interpolation inside the bucket holding the rank.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(previous.0);
            }
            let inside = count - previous.1;
            let fraction = if inside > 0.0 {
                (rank - previous.1) / inside
            } else {
                1.0
            };
            return Some(previous.0 + (le - previous.0) * fraction);
        }
        previous = (le, count);
    }
    None
}

fn summary(stats: &Stats, samples: &[Sample], duration: Duration) {
    let requests = sum(samples, "http_server_request_duration_seconds_count", ROUTE);
    let buckets = histogram(samples);
    let ms = |q| quantile(q, &buckets).map_or("-".to_string(), |s| format!("{:.1} ms", s * 1000.0));
    let line = "─".repeat(60);
    println!("\n{line}");
    println!(" summary (from the gateway's own /metrics)");
    println!("{line}");
    println!(
        " {:<40} {:>10.0}  ({:.0}/s)",
        "requests to /v1",
        requests,
        requests / duration.as_secs_f64()
    );
    let statuses = by_label(
        samples,
        "http_server_request_duration_seconds_count",
        ROUTE,
        "http_response_status_code",
    );
    for (status, count) in statuses {
        println!("   {:<38} {:>10.0}", format!("status {status}"), count);
    }
    println!(" {:<40} {:>10}", "latency p50", ms(0.50));
    println!(" {:<40} {:>10}", "latency p95", ms(0.95));
    println!(" {:<40} {:>10}", "latency p99", ms(0.99));
    println!(" {:<40} {:>10.0}", "retries", retries(samples));
    for (key, count) in attempts_by_outcome(samples) {
        println!("   {:<38} {:>10.0}", format!("attempts {key}"), count);
    }
    for (reason, count) in by_label(samples, "tower_retry_skipped_total", "", "reason") {
        println!(
            "   {:<38} {:>10.0}",
            format!("not retried: {reason}"),
            count
        );
    }
    let rejections = by_label(samples, "tower_queue_rejections_total", "", "reason");
    println!(
        " {:<40} {:>10.0}",
        "queue rejections (503)",
        rejections.values().sum::<f64>()
    );
    for (reason, count) in rejections {
        println!("   {:<38} {:>10.0}", format!("reason {reason}"), count);
    }
    let exceeded = by_label(samples, "tower_deadline_exceeded_total", "", "where");
    println!(
        " {:<40} {:>10.0}",
        "deadlines exceeded (504)",
        exceeded.values().sum::<f64>()
    );
    for (stage, count) in exceeded {
        println!("   {:<38} {:>10.0}", format!("where {stage}"), count);
    }
    println!(
        " {:<40} {:>10}",
        "client-side connection errors",
        stats.io_errors.load(Ordering::Relaxed)
    );
    println!("{line}");
    bar_chart(&buckets);
}

fn attempts_by_outcome(samples: &[Sample]) -> BTreeMap<String, f64> {
    let mut groups = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.name == "tower_retry_attempts_total")
    {
        let key = format!(
            "{}/{}",
            s.label("outcome").unwrap_or("-"),
            s.label("reason").unwrap_or("-")
        );
        *groups.entry(key).or_insert(0.0) += s.value;
    }
    groups
}

/// Requests per latency bucket, as horizontal bars.
fn bar_chart(buckets: &[(f64, f64)]) {
    const WIDTH: f64 = 44.0;
    let mut rows = Vec::new();
    let mut previous = (0.0_f64, 0.0_f64);
    for &(le, count) in buckets {
        let label = if le.is_infinite() {
            format!("> {} s", fmt_seconds(previous.0))
        } else {
            format!("{} – {}", fmt_seconds(previous.0), fmt_seconds(le))
        };
        rows.push((label, count - previous.1));
        previous = (le, count);
    }
    // Leave out the empty tail.
    while rows.last().is_some_and(|r| r.1 == 0.0) {
        rows.pop();
    }
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    if max <= 0.0 {
        return;
    }
    println!(" latency histogram (gateway, /v1 requests)");
    for (label, count) in rows {
        let bar = "█".repeat(((count / max) * WIDTH).round() as usize);
        println!(" {label:>15} │{bar:<44} {count:.0}");
    }
}

fn fmt_seconds(s: f64) -> String {
    if s == 0.0 {
        "0".to_string()
    } else if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let buckets = [
            (0.1, 50.0),
            (0.2, 90.0),
            (0.5, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((quantile(0.5, &buckets).unwrap() - 0.1).abs() < 1e-9);
        assert!((quantile(0.7, &buckets).unwrap() - 0.15).abs() < 1e-9);
        assert!((quantile(0.95, &buckets).unwrap() - 0.35).abs() < 1e-9);
        assert_eq!(quantile(0.5, &[]), None);
    }
}
