//! `cargo xtask demo`: the gateway with all four layers on, under load, explained by its own
//! metrics.
//!
//! Builds the gateway, starts it with its embedded demo provider (20% of calls fail with 503,
//! 5% are slow), drives keep-alive HTTP/1.1 load from plain threads with a live progress line,
//! then prints a summary read from the gateway's `/metrics` and a bar chart of its latency
//! histogram. Dependency-free on purpose: std's `TcpStream` is all the client a demo needs.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::demo_setup::{ChildProcess, Options, listening_addr};
use crate::exposition::{Sample, parse_metrics};
use crate::http1::{Connection, http_get};

/// Closed-loop clients; more than the gateway admits (16 running + 32 waiting), so the queue
/// has something to reject.
const CLIENTS: usize = 56;
/// Share of requests carrying a tight `x-request-timeout-ms`, so deadlines show up too.
const TIGHT_DEADLINE_EVERY: u64 = 4;
const TIGHT_DEADLINE_MS: u64 = 300;
/// The route every proxied request is recorded under.
const ROUTE: &str = "http_route=\"/v1/{*path}\"";

pub(crate) fn run(options: &Options) -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .ok_or("xtask has no parent directory")?;
    let cargo = crate::cargo();
    let mut build = vec!["build", "--quiet", "-p", "gateway"];
    if options.release {
        build.push("--release");
    }
    crate::step("build gateway", &cargo, &build, &[])?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target
        .join(if options.release { "release" } else { "debug" })
        .join(format!("gateway{}", std::env::consts::EXE_SUFFIX));

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

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (stats, stop) = (Arc::clone(&stats), Arc::clone(&stop));
            std::thread::spawn(move || client_loop(n as u64, addr, &stats, &stop))
        })
        .collect();
    progress(addr, &stats, options.duration);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }

    let metrics = http_get(addr, "/metrics").map_err(|e| format!("scraping /metrics: {e}"))?;
    let samples = parse_metrics(&metrics);
    summary(&stats, &samples, options.duration);

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

fn client_loop(n: u64, addr: SocketAddr, stats: &Stats, stop: &AtomicBool) {
    let tenants = ["acme", "globex", "initech"];
    let mut connection: Option<Connection> = None;
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        i += CLIENTS as u64;
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match Connection::open(addr) {
                Ok(conn) => connection.insert(conn),
                Err(_) => {
                    stats.io_errors.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        let deadline = if i % TIGHT_DEADLINE_EVERY == 0 {
            format!("x-request-timeout-ms: {TIGHT_DEADLINE_MS}\r\n")
        } else {
            String::new()
        };
        let request = format!(
            "GET /v1/chat/completions?n={i} HTTP/1.1\r\nhost: {addr}\r\nx-tenant-id: {}\r\n{deadline}\r\n",
            tenants[(i % 3) as usize]
        );
        let started = Instant::now();
        stats.sent.fetch_add(1, Ordering::Relaxed);
        match conn.exchange(request.as_bytes()) {
            Ok((status, body, close)) => {
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
                if close {
                    connection = None;
                }
                if status == 503 && body.starts_with(b"overloaded") {
                    // Like a polite client: back off a little before trying again.
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            Err(_) => {
                stats.io_errors.fetch_add(1, Ordering::Relaxed);
                connection = None;
            }
        }
    }
}

/// One line per second: throughput, outcomes, retries (from /metrics) and the client-side p99.
fn progress(addr: SocketAddr, stats: &Stats, duration: Duration) {
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last_sent = 0;
    let mut tick = Instant::now();
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1).min(duration.saturating_sub(started.elapsed())));
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
        let retried = http_get(addr, "/metrics")
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
