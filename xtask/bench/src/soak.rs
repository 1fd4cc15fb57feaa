//! `xtask-bench soak --secs N [--gateway PATH] [--out FILE]`: the gateway, every flag on, at ten
//! times what its queue lets through, for N seconds; its resident memory, open file descriptors
//! and live tokio tasks sampled every 5 s must stay flat (within 10% after a warm-up), and every
//! request sent must come back served or rejected.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::load;

const CONCURRENCY: u32 = 16;
const CAPACITY: u32 = 100;
const SAMPLE_EVERY: u64 = 5;
/// Connections of the load generator: more than the 116 requests the queue holds at once.
const CONNECTIONS: usize = 256;
/// How far the samples after warm-up may spread, relative to their smallest.
const FLAT: f64 = 0.10;

#[derive(Clone, Copy, Debug)]
struct Sample {
    second: u64,
    rss_kib: u64,
    fds: u64,
    tasks: u64,
}

pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let mut secs = 300u64;
    let mut gateway = None;
    let mut out = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secs" => {
                secs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|s| *s >= 10)
                    .ok_or("--secs takes a number of seconds, at least 10")?
            }
            "--gateway" => gateway = args.next().map(PathBuf::from),
            "--out" => out = args.next().map(PathBuf::from),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let gateway = gateway.unwrap_or_else(|| me.with_file_name("gateway"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (markdown, verdict) = runtime.block_on(soak(&me, &gateway, secs))?;
    match out {
        Some(path) => {
            std::fs::write(&path, &markdown).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => print!("{markdown}"),
    }
    verdict
}

async fn soak(
    me: &std::path::Path,
    gateway: &std::path::Path,
    secs: u64,
) -> Result<(String, Result<(), String>), String> {
    // A 50 ms upstream behind 16 slots serves 320 requests/s; offer ten times that.
    let rate = 10 * CONCURRENCY * 1000 / 50;
    eprintln!("soak: {rate} req/s for {secs} s, sampling every {SAMPLE_EVERY} s");
    let (_upstream, proxy) = crate::run::overloadable_gateway(me, gateway, CONCURRENCY, CAPACITY)?;
    // A fixed set of connections (more than the queue ever holds at once), so the gateway's
    // file descriptors and tasks do not follow a load generator opening more when answers
    // slow down: what grows then is the gateway's own.
    let load = load::fixed_rate(
        proxy.addr,
        "/v1/soak",
        rate,
        CONNECTIONS,
        Duration::from_secs(secs),
    );
    let sampler = async {
        let mut samples = Vec::new();
        let pid = proxy.pid();
        let addr = proxy.addr;
        // Only while the load runs: at its end the generator's connections close.
        for second in (SAMPLE_EVERY..secs).step_by(SAMPLE_EVERY as usize) {
            tokio::time::sleep(Duration::from_secs(SAMPLE_EVERY)).await;
            // The scrape blocks: off the generator's thread.
            let tasks = tokio::task::spawn_blocking(move || alive_tasks(addr).unwrap_or(0))
                .await
                .unwrap_or(0);
            let sample = Sample {
                second,
                rss_kib: proxy.rss_kib().unwrap_or(0),
                fds: open_fds(pid),
                tasks,
            };
            eprintln!("soak:   {sample:?}");
            samples.push(sample);
        }
        samples
    };
    let (report, samples) = tokio::join!(load, sampler);
    let report = report?;
    let sent = report.outcomes.len();
    let served = report.count(|s| s == 200);
    let rejected = report.count(|s| s == 503);
    let other = sent - served - rejected;

    // Warm-up: the first fifth of the run (at least one sample) fills pools and buffers.
    let warm = (samples.len() / 5)
        .max(1)
        .min(samples.len().saturating_sub(1));
    let steady = &samples[warm..];
    let spread = |f: fn(&Sample) -> u64| -> f64 {
        let min = steady.iter().map(f).min().unwrap_or(0) as f64;
        let max = steady.iter().map(f).max().unwrap_or(0) as f64;
        if min > 0.0 {
            (max - min) / min
        } else {
            f64::INFINITY
        }
    };
    let (rss, fds, tasks) = (
        spread(|s| s.rss_kib),
        spread(|s| s.fds),
        spread(|s| s.tasks),
    );
    let mut md = String::new();
    let _ = writeln!(md, "## 7. Soak\n");
    let _ = writeln!(
        md,
        "Gateway with all flags on, `GATEWAY_MAX_CONCURRENCY={CONCURRENCY}`, \
         `GATEWAY_QUEUE_CAPACITY={CAPACITY}`, 50 ms upstream; {rate} req/s (10x what the queue \
         lets through) on a fixed schedule over {CONNECTIONS} connections for {secs} s \
         (`cargo xtask soak`). Sampled every {SAMPLE_EVERY} s: \
         resident memory, open file descriptors, live tokio tasks on the workers \
         (`gateway_runtime_alive_tasks`).\n"
    );
    let _ = writeln!(
        md,
        "| second | RSS KiB | open fds | live tasks |\n|---|---|---|---|"
    );
    for s in &samples {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            s.second, s.rss_kib, s.fds, s.tasks
        );
    }
    let _ = writeln!(
        md,
        "\nAfter the first {} sample(s): spread (max - min) / min of RSS {:.1}%, fds {:.1}%, tasks \
         {:.1}% (target <= {:.0}% each). Requests: {sent} sent = {served} served + {rejected} \
         rejected + {other} other.\n",
        warm,
        rss * 100.0,
        fds * 100.0,
        tasks * 100.0,
        FLAT * 100.0
    );
    let mut failures = Vec::new();
    for (name, value) in [("RSS", rss), ("open fds", fds), ("live tasks", tasks)] {
        if value > FLAT {
            failures.push(format!("{name} spread {:.1}%", value * 100.0));
        }
    }
    if other > 0 {
        failures.push(format!("{other} requests neither served nor rejected"));
    }
    let verdict = if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("soak: {}", failures.join(", ")))
    };
    Ok((md, verdict))
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// `gateway_runtime_alive_tasks` from the gateway's /metrics, over a plain blocking socket (the
/// sampler runs inside the load generator's tick and must not await).
fn alive_tasks(addr: SocketAddr) -> Option<u64> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with("gateway_runtime_alive_tasks"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
}
