//! `xtask-demo worker` (`cargo xtask demo --worker`, feature `worker`): the Worker example with
//! all four layers on, two workers in one queue group fed jobs over NATS (async-nats), explained
//! by their own metrics.
//!
//! Starts Debian's `nats-server` on a free loopback port and two workers against it: `a`, whose
//! `gpu` pool is small, and `b`, with the default pools. Then sends rounds of jobs through the
//! worker's job client (`worker::client`), which sends a job again when a worker answers
//! `overloaded`: jobs that succeed (a file written and read back, a short sleep), jobs whose
//! deadline header is shorter than their work (`timeout`), jobs calling a provider that is down
//! (retried by the worker within its budget, then `failed`), and bursts into `gpu` that
//! overflow `a`'s pool (`overloaded` at once, then retried by the client after `a`'s hint and
//! taken by whichever worker the group picks). Prints the replies by status, how many jobs were
//! retried and where they completed, and the workers' `/metrics` lines that account for them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::{RequestError, RequestErrorKind};
use futures_util::future::join_all;
use worker::client::{JobClient, Outcome};
use worker::protocol::{JobSpec, Status, Step};

use crate::exposition::parse_metrics;
use crate::setup::{
    ChildProcess, Options, http_client, http_get, listening_addr, runtime, sibling_binary,
};

/// Worker `a`'s pools: the default `cpu` and `io`, and a `gpu` pool small enough for its share
/// of a burst to fill (1 running, 1 waiting).
const POOLS: &str = "cpu=1000/10,gpu=1/1,io=500/20";
/// Worker `b`'s pools: the worker's defaults.
const POOLS_B: &str = "cpu=1000/10,gpu=100/2,io=500/20";
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
/// Retries of a job answered `overloaded` (the client's default).
const RETRIES: u32 = 4;

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
            Kind::Burst => "burst of 8 into gpu (a: 1 + 1)",
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
    let nats_url = format!("nats://{nats_addr}");
    let (mut worker, metrics_addr) = start_worker(&binary, "a", POOLS, &nats_url, &fs_root)?;
    println!(
        "nats-server on {nats_addr}; worker on http://{metrics_addr} (all four layers on; \
         pools {POOLS})"
    );
    let (_worker_b, metrics_b) = start_worker(&binary, "b", POOLS_B, &nats_url, &fs_root)?;
    println!(
        "that is worker `a`; worker `b` on http://{metrics_b} in the same queue group (the same \
         layers; pools {POOLS_B})"
    );
    let dead_provider = format!("http://127.0.0.1:{}/v1/down", free_port()?);
    println!(
        "jobs on subject `jobs` for {} s, one round a second: 3 that succeed, 1 out of time, \
         1 calling a provider that is down, and every third round a burst into `gpu`",
        options.duration.as_secs()
    );
    println!(
        "sent through the worker's job client: a job answered `overloaded` is sent again after \
         the worker's hint (up to {RETRIES} retries, within a retry budget), to whichever \
         worker the group picks\n"
    );

    runtime()?.block_on(drive(
        nats_addr,
        [("a", metrics_addr), ("b", metrics_b)],
        &dead_provider,
        options.duration,
    ))?;

    let _ = std::fs::remove_dir_all(&fs_root);
    if options.wait {
        println!("\nThe worker is still running:");
        println!("  jobs     nats://{nats_addr}, subject `jobs` (request-reply)");
        println!("  metrics  http://{metrics_addr}/metrics");
        println!("  health   http://{metrics_addr}/healthz, http://{metrics_addr}/readyz");
        println!("  worker b http://{metrics_b}/metrics");
        println!("Ctrl-C to stop (nats-server and both workers stop with this command).");
        let _ = std::io::stdout().flush();
        let _ = worker.0.wait();
    }
    Ok(())
}

/// Starts worker `id` with `pools` and every layer on; its `/metrics` address once it consumes.
fn start_worker(
    binary: &Path,
    id: &str,
    pools: &str,
    nats_url: &str,
    fs_root: &Path,
) -> Result<(ChildProcess, SocketAddr), String> {
    let mut worker = ChildProcess(
        Command::new(binary)
            .env("WORKER_ID", id)
            .env("WORKER_NATS_URL", nats_url)
            .env("WORKER_LISTEN", "127.0.0.1:0")
            .env("WORKER_FS_ROOT", fs_root)
            .env("WORKER_POOLS", pools)
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
    let addr = listening_addr(&mut worker.0, "worker")?;
    Ok((worker, addr))
}

/// What the client's retries of `overloaded` did.
#[derive(Debug, Default)]
struct Retried {
    /// Jobs answered `overloaded` first, so sent again.
    jobs: u64,
    /// Retries in all.
    retries: u64,
    /// Of those jobs, completed by a worker other than the one that turned them away...
    elsewhere: u64,
    /// ... and still answered `overloaded` in the end (no retry, time or budget left).
    overloaded: u64,
}

impl Retried {
    fn count(&mut self, outcome: &Outcome) {
        if outcome.retries() == 0 {
            return;
        }
        self.jobs += 1;
        self.retries += outcome.retries() as u64;
        self.elsewhere += u64::from(outcome.completed_elsewhere());
        self.overloaded += u64::from(outcome.reply.status == Status::Overloaded);
    }
}

/// The rounds of jobs, their replies by status, then the workers' `/metrics` about them.
async fn drive(
    nats_addr: SocketAddr,
    workers: [(&str, SocketAddr); 2],
    dead_provider: &str,
    duration: Duration,
) -> Result<(), String> {
    let nats = async_nats::ConnectOptions::new()
        .name("xtask-demo")
        .connection_timeout(Duration::from_secs(5))
        .connect(format!("nats://{nats_addr}"))
        .await
        .map_err(|e| format!("connecting to nats-server: {e}"))?;
    let client = JobClient::builder(nats).max_retries(RETRIES).build();
    let mut replies: BTreeMap<(Kind, String), u64> = BTreeMap::new();
    let mut by_worker: BTreeMap<String, u64> = BTreeMap::new();
    let mut retried = Retried::default();
    let mut sent = 0u64;
    let mut lost = 0u64;
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < duration {
        let round_started = Instant::now();
        let jobs = round_of_jobs(round, dead_provider);
        sent += jobs.len() as u64;
        // Each job waits for its reply until its deadline (and the client's grace): a round
        // ends when every job has its answer or has none.
        let outcomes = join_all(jobs.iter().map(|(kind, timeout, job)| {
            let client = &client;
            async move { (*kind, client.send(job, *timeout).await) }
        }))
        .await;
        for (kind, outcome) in outcomes {
            let status = match outcome {
                Ok(outcome) => {
                    retried.count(&outcome);
                    let worker = outcome.reply.worker.as_deref().unwrap_or("?");
                    *by_worker.entry(worker.to_string()).or_default() += 1;
                    outcome.reply.status.as_str()
                }
                Err(error) if no_responders(&*error) => "no responders",
                Err(_) => {
                    lost += 1;
                    continue;
                }
            };
            *replies.entry((kind, status.to_string())).or_default() += 1;
        }
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
    println!(
        "  {:<34} {} ({}): {} completed on the other worker, {} on the same one once it had \
         room, {} still overloaded",
        "retried after `overloaded`",
        count(retried.jobs, "job"),
        count(retried.retries, "retry"),
        retried.elsewhere,
        retried.jobs - retried.elsewhere - retried.overloaded,
        retried.overloaded,
    );
    let answered_by: Vec<String> = by_worker
        .iter()
        .map(|(worker, count)| format!("{worker} {count}"))
        .collect();
    println!("  {:<34} {}", "answered by worker", answered_by.join(", "));

    let http = http_client();
    let mut samples = Vec::new();
    for (id, addr) in workers {
        let text = http_get(&http, &format!("http://{addr}/metrics"))
            .await
            .map_err(|e| format!("scraping worker {id}'s /metrics: {e}"))?;
        samples.extend(parse_metrics(&text));
    }
    println!("\nWhat the worker's /metrics says about it:");
    println!("  (workers a and b, summed)");
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
        for sample in samples.iter().filter(|s| s.name == name) {
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

/// One job of the mix: what it shows, its deadline, the job.
type Job = (Kind, Duration, JobSpec);

/// One round's jobs.
fn round_of_jobs(round: u64, dead_provider: &str) -> Vec<Job> {
    let tenant = |i: u64| Some(TENANTS[(i % TENANTS.len() as u64) as usize].to_string());
    let job = |id: String, tenant, pool: &str, steps| JobSpec {
        id: Some(id),
        tenant,
        pool: Some(pool.to_string()),
        steps,
    };
    let mut jobs = Vec::new();
    for i in 0..3 {
        let id = format!("r{round}-ok{i}");
        let path = format!("demo/{id}.txt");
        let steps = vec![
            Step::FsWrite {
                path: path.clone(),
                data: format!("job {id}"),
            },
            Step::FsRead { path },
            Step::Sleep { ms: 10 },
        ];
        jobs.push((
            Kind::Succeeds,
            Duration::from_millis(2000),
            job(id, tenant(round + i), "io", steps),
        ));
    }
    jobs.push((
        Kind::OutOfTime,
        Duration::from_millis(100),
        job(
            format!("r{round}-late"),
            tenant(round),
            "cpu",
            vec![Step::Sleep { ms: 400 }],
        ),
    ));
    jobs.push((
        Kind::DeadProvider,
        Duration::from_millis(2000),
        job(
            format!("r{round}-down"),
            tenant(round + 1),
            "io",
            vec![Step::HttpCall {
                url: dead_provider.to_string(),
                method: Some("GET".to_string()),
                body: None,
            }],
        ),
    ));
    if round % 3 == 2 {
        for i in 0..8 {
            jobs.push((
                Kind::Burst,
                Duration::from_millis(5000),
                job(
                    format!("r{round}-gpu{i}"),
                    Some("acme".to_string()),
                    "gpu",
                    vec![Step::Sleep { ms: 100 }],
                ),
            ));
        }
    }
    jobs
}

/// `n` and `noun`, plural unless one (`job`, `retry`).
fn count(n: u64, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

/// Whether no worker was there to take a job (NATS "no responders").
fn no_responders(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    error
        .downcast_ref::<RequestError>()
        .is_some_and(|e| e.kind() == RequestErrorKind::NoResponders)
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
    fn every_job_of_a_round_has_an_id_a_pool_and_steps() {
        for round in 0..3 {
            for (_, timeout, job) in round_of_jobs(round, "http://127.0.0.1:1/") {
                let id = job.id.as_deref().unwrap_or_default();
                assert!(id.starts_with(&format!("r{round}-")), "{job:?}");
                assert!(job.pool.is_some() && !job.steps.is_empty(), "{job:?}");
                assert!(timeout >= Duration::from_millis(100), "{job:?}");
            }
        }
        assert_eq!(round_of_jobs(2, "x").len(), 5 + 8, "the third round bursts");
    }

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1, "job"), "1 job");
        assert_eq!(count(0, "job"), "0 jobs");
        assert_eq!(count(1, "retry"), "1 retry");
        assert_eq!(count(3, "retry"), "3 retries");
    }
}
