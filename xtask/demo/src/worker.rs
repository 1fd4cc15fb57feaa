//! `xtask-demo worker` (`cargo xtask demo --worker`, feature `worker`): the Worker example with
//! all four layers on, fed jobs over NATS (async-nats), explained by its own metrics.
//!
//! Starts Debian's `nats-server` on a free loopback port and the worker against it, then sends
//! rounds of jobs by request-reply: jobs that succeed (a file written and read back, a short
//! sleep), jobs whose deadline header is shorter than their work (`timeout`), jobs calling a
//! provider that is down (retried within the budget, then `failed`), and bursts into a small
//! `gpu` pool (`overloaded` at once). Prints the replies by status and the worker's `/metrics`
//! lines that account for them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, StatusCode};
use futures_util::StreamExt;

use crate::exposition::parse_metrics;
use crate::setup::{
    ChildProcess, Options, http_client, http_get, listening_addr, runtime, sibling_binary,
};

/// The worker's pools: the default `cpu` and `io`, and a `gpu` pool small enough for a burst to
/// fill (1 running, 4 waiting).
const POOLS: &str = "cpu=1000/10,gpu=4/1,io=500/20";
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
/// How long the demo waits for one round's replies.
const ROUND_REPLIES_WITHIN: Duration = Duration::from_secs(10);

/// What one job of the mix is meant to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Succeeds,
    OutOfTime,
    DeadProvider,
    Burst,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Succeeds => "file write + read + 10 ms sleep",
            Kind::OutOfTime => "400 ms sleep, 100 ms deadline",
            Kind::DeadProvider => "http_call to a closed port",
            Kind::Burst => "burst of 8 into gpu (1 + 4)",
        }
    }
}

pub fn run(options: &Options) -> Result<(), String> {
    let binary = sibling_binary("worker", options.release)?;

    let nats_port = free_port()?;
    let _nats = ChildProcess(
        Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &nats_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start nats-server ({e}): install it with `apt-get install -y nats-server`"
                )
            })?,
    );
    let nats_addr = SocketAddr::from(([127, 0, 0, 1], nats_port));
    wait_for_port(nats_addr, Duration::from_secs(10))?;

    let fs_root = std::env::temp_dir().join(format!("xtask-worker-demo-{}", std::process::id()));
    let mut worker = ChildProcess(
        Command::new(&binary)
            .env("WORKER_NATS_URL", format!("nats://{nats_addr}"))
            .env("WORKER_LISTEN", "127.0.0.1:0")
            .env("WORKER_FS_ROOT", &fs_root)
            .env("WORKER_POOLS", POOLS)
            .env("WORKER_RETRY_BASE_MS", "20")
            .env("CP2_ADVANCED_RETRY_ENABLED", "true")
            .env("CP2_COMPLETE_TIMEOUT_ENABLED", "true")
            .env("CP2_QUEUE_MANAGEMENT_ENABLED", "true")
            .env("CP2_OBSERVABILITY_METRICS_ENABLED", "true")
            .env("METRICS_TENANT_LABEL_ALLOWLIST", "acme,globex")
            .env("RUST_LOG", "worker=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?,
    );
    let metrics_addr = listening_addr(&mut worker.0, "worker")?;
    println!(
        "nats-server on {nats_addr}; worker on http://{metrics_addr} (all four layers on; \
         pools {POOLS})"
    );
    let dead_provider = format!("http://127.0.0.1:{}/v1/down", free_port()?);
    println!(
        "jobs on subject `jobs` for {} s, one round a second: 3 that succeed, 1 out of time, \
         1 calling a provider that is down, and every third round a burst into `gpu`\n",
        options.duration.as_secs()
    );

    runtime()?.block_on(drive(
        nats_addr,
        metrics_addr,
        &dead_provider,
        options.duration,
    ))?;

    let _ = std::fs::remove_dir_all(&fs_root);
    if options.wait {
        println!("\nThe worker is still running:");
        println!("  jobs     nats://{nats_addr}, subject `jobs` (request-reply)");
        println!("  metrics  http://{metrics_addr}/metrics");
        println!("  health   http://{metrics_addr}/healthz, http://{metrics_addr}/readyz");
        println!("Ctrl-C to stop (nats-server and the worker stop with this command).");
        let _ = std::io::stdout().flush();
        let _ = worker.0.wait();
    }
    Ok(())
}

/// The rounds of jobs, their replies by status, then the worker's `/metrics` about them.
async fn drive(
    nats_addr: SocketAddr,
    metrics_addr: SocketAddr,
    dead_provider: &str,
    duration: Duration,
) -> Result<(), String> {
    let client = async_nats::ConnectOptions::new()
        .name("xtask-demo")
        .connection_timeout(Duration::from_secs(5))
        .connect(format!("nats://{nats_addr}"))
        .await
        .map_err(|e| format!("connecting to nats-server: {e}"))?;
    let mut inbox = client
        .subscribe("_INBOX.demo.*")
        .await
        .map_err(|e| format!("subscribing: {e}"))?;
    let mut replies: BTreeMap<(Kind, String), u64> = BTreeMap::new();
    let mut sent = 0u64;
    let mut lost = 0u64;
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < duration {
        let round_started = Instant::now();
        let jobs = round_of_jobs(round, dead_provider);
        let mut waiting: BTreeMap<String, Kind> = BTreeMap::new();
        for (kind, headers, job) in jobs {
            let reply_to = format!("_INBOX.demo.{sent}");
            let mut header_map = HeaderMap::new();
            for (name, value) in headers {
                header_map.insert(name, value);
            }
            client
                .publish_with_reply_and_headers("jobs", reply_to.clone(), header_map, job.into())
                .await
                .map_err(|e| format!("publishing a job: {e}"))?;
            waiting.insert(reply_to, kind);
            sent += 1;
        }
        client
            .flush()
            .await
            .map_err(|e| format!("publishing jobs: {e}"))?;
        let deadline = tokio::time::Instant::now() + ROUND_REPLIES_WITHIN;
        while !waiting.is_empty() {
            let Ok(message) = tokio::time::timeout_at(deadline, inbox.next()).await else {
                break;
            };
            let message = message.ok_or("reading replies: the subscription ended")?;
            let Some(kind) = waiting.remove(message.subject.as_str()) else {
                continue;
            };
            let status = if message.status == Some(StatusCode::NO_RESPONDERS) {
                "no responders".to_string()
            } else {
                status_of(&message.payload)
            };
            *replies.entry((kind, status)).or_default() += 1;
        }
        lost += waiting.len() as u64;
        print_round(round, &replies, sent);
        round += 1;
        if let Some(rest) = Duration::from_secs(1).checked_sub(round_started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    println!();

    let answered: u64 = replies.values().sum();
    println!("{sent} jobs sent, {answered} answered, {lost} unanswered:");
    let mut by_kind: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    for ((kind, status), count) in &replies {
        by_kind
            .entry(*kind)
            .or_default()
            .push(format!("{count} {status}"));
    }
    for (kind, outcomes) in by_kind {
        println!("  {:<34} {}", kind.label(), outcomes.join(", "));
    }

    let text = http_get(&http_client(), &format!("http://{metrics_addr}/metrics"))
        .await
        .map_err(|e| format!("scraping /metrics: {e}"))?;
    println!("\nWhat the worker's /metrics says about it:");
    for (title, name, group_by) in [
        (
            "jobs by pool and outcome",
            "worker_job_duration_seconds_count",
            &["pool", "outcome"][..],
        ),
        (
            "steps by type and outcome",
            "worker_step_duration_seconds_count",
            &["step_type", "outcome"],
        ),
        (
            "HTTP attempts by outcome and reason",
            "tower_retry_attempts_total",
            &["outcome", "reason"],
        ),
        (
            "retries not made, by reason",
            "tower_retry_skipped_total",
            &["reason"],
        ),
        (
            "queue rejections by pool and reason",
            "tower_queue_rejections_total",
            &["tower_queue_name", "reason"],
        ),
        (
            "deadlines exceeded by where",
            "tower_deadline_exceeded_total",
            &["where"],
        ),
    ] {
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        for sample in parse_metrics(&text).iter().filter(|s| s.name == name) {
            let key: Vec<String> = group_by
                .iter()
                .map(|label| format!("{label}={}", sample.label(label).unwrap_or("")))
                .collect();
            *totals.entry(key.join(" ")).or_default() += sample.value;
        }
        println!("  {title} ({name}):");
        if totals.is_empty() {
            println!("    (none)");
        }
        for (key, value) in totals {
            println!("    {value:>6} {key}");
        }
    }

    Ok(())
}

/// One job of the mix: what it shows, its NATS headers, its JSON payload.
type Job = (Kind, Vec<(&'static str, String)>, String);

/// One round's jobs.
fn round_of_jobs(round: u64, dead_provider: &str) -> Vec<Job> {
    let tenant = |i: u64| TENANTS[(i % TENANTS.len() as u64) as usize];
    let deadline = |ms: u64| vec![("x-request-timeout-ms", ms.to_string())];
    let mut jobs = Vec::new();
    for i in 0..3 {
        let id = format!("r{round}-ok{i}");
        jobs.push((
            Kind::Succeeds,
            deadline(2000),
            format!(
                r#"{{"id":"{id}","tenant":"{}","pool":"io","steps":[{{"type":"fs_write","path":"demo/{id}.txt","data":"job {id}"}},{{"type":"fs_read","path":"demo/{id}.txt"}},{{"type":"sleep","ms":10}}]}}"#,
                tenant(round + i)
            ),
        ));
    }
    jobs.push((
        Kind::OutOfTime,
        deadline(100),
        format!(
            r#"{{"id":"r{round}-late","tenant":"{}","pool":"cpu","steps":[{{"type":"sleep","ms":400}}]}}"#,
            tenant(round)
        ),
    ));
    jobs.push((
        Kind::DeadProvider,
        deadline(2000),
        format!(
            r#"{{"id":"r{round}-down","tenant":"{}","pool":"io","steps":[{{"type":"http_call","url":"{dead_provider}","method":"GET"}}]}}"#,
            tenant(round + 1)
        ),
    ));
    if round % 3 == 2 {
        for i in 0..8 {
            jobs.push((
                Kind::Burst,
                deadline(5000),
                format!(
                    r#"{{"id":"r{round}-gpu{i}","tenant":"acme","pool":"gpu","steps":[{{"type":"sleep","ms":100}}]}}"#
                ),
            ));
        }
    }
    jobs
}

/// The `status` of a reply: `{"id":...,"status":"ok",...}`.
fn status_of(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    text.split_once(r#""status":""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(
            || "unreadable reply".to_string(),
            |(status, _)| status.to_string(),
        )
}

fn print_round(round: u64, replies: &BTreeMap<(Kind, String), u64>, sent: u64) {
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for ((_, status), count) in replies {
        *by_status.entry(status).or_default() += count;
    }
    let line: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
    // One line rewritten in place on a terminal; a line per round in a log.
    let start = if std::io::stdout().is_terminal() {
        "\r"
    } else {
        "\n"
    };
    print!(
        "{start}round {:>3}: {sent} sent; {}   ",
        round + 1,
        line.join(", ")
    );
    let _ = std::io::stdout().flush();
}

/// A port that was free a moment ago (nats-server takes a number, not a listener).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn wait_for_port(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "nats-server did not listen on {addr} within {limit:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_from_a_reply() {
        assert_eq!(
            status_of(br#"{"id":"a","status":"timeout","pool":"cpu"}"#),
            "timeout"
        );
        assert_eq!(status_of(b"garbage"), "unreadable reply");
    }

    #[test]
    fn every_job_of_a_round_is_valid_json_shape_with_an_id() {
        for round in 0..3 {
            for (_, _, job) in round_of_jobs(round, "http://127.0.0.1:1/") {
                assert!(
                    job.starts_with(r#"{"id":"r"#) && job.ends_with("]}"),
                    "{job}"
                );
                assert_eq!(job.matches('{').count(), job.matches('}').count(), "{job}");
            }
        }
        assert_eq!(round_of_jobs(2, "x").len(), 5 + 8, "the third round bursts");
    }
}
