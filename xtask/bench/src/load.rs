//! Load generators: closed loop over fixed connections (throughput), open loop at a fixed rate
//! (overload), and a fixed batch of identified requests (retry efficiency). Each records every
//! request's status (0 for a transport error) and latency.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Outcome {
    pub(crate) status: u16,
    pub(crate) latency: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) elapsed: Duration,
}

impl Report {
    pub(crate) fn count(&self, keep: impl Fn(u16) -> bool) -> usize {
        self.outcomes.iter().filter(|o| keep(o.status)).count()
    }

    pub(crate) fn per_second(&self) -> f64 {
        self.outcomes.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the latencies of requests whose status passes `keep`.
    pub(crate) fn quantile(&self, q: f64, keep: impl Fn(u16) -> bool) -> Option<Duration> {
        let mut latencies: Vec<Duration> = self
            .outcomes
            .iter()
            .filter(|o| keep(o.status))
            .map(|o| o.latency)
            .collect();
        if latencies.is_empty() {
            return None;
        }
        latencies.sort_unstable();
        let index = ((latencies.len() - 1) as f64 * q).round() as usize;
        Some(latencies[index])
    }
}

pub(crate) fn request(addr: SocketAddr, path: &str, id: Option<u64>) -> Request<Empty<Bytes>> {
    // Host too: hyper's connection-level client sends only what it is given, and HTTP/1.1
    // servers such as nginx answer 400 to a request without it.
    let mut builder =
        Request::get(format!("http://{addr}{path}")).header(http::header::HOST, addr.to_string());
    if let Some(id) = id {
        builder = builder.header("x-request-id", id);
    }
    builder.body(Empty::new()).expect("a valid request")
}

/// The answer's status after reading its whole body, or 0 for a transport error.
pub(crate) async fn read_status<E>(
    answer: impl std::future::Future<Output = Result<http::Response<hyper::body::Incoming>, E>>,
) -> u16 {
    match answer.await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}

/// The outcomes of every connection's task, in one report timed from `started`.
async fn gather(
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
    started: Instant,
) -> Result<Report, String> {
    let mut report = Report::default();
    for task in tasks {
        report
            .outcomes
            .extend(task.await.map_err(|e| e.to_string())?);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One keep-alive HTTP/1.1 connection to `addr`, its driver spawned.
pub(crate) async fn connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_nodelay(true).ok();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

/// `connections` keep-alive HTTP/1.1 connections, each sending the next request as soon as the
/// previous answer is read, for `duration`.
pub(crate) async fn closed_loop(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> Result<Report, String> {
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let path = path.to_string();
        let mut sender = connect(addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while Instant::now() < end {
                if sender.ready().await.is_err() {
                    break;
                }
                let sent = Instant::now();
                let status = read_status(sender.send_request(request(addr, &path, None))).await;
                outcomes.push(Outcome {
                    status,
                    latency: sent.elapsed(),
                });
                if status == 0 {
                    break;
                }
            }
            outcomes
        }));
    }
    gather(tasks, started).await
}

fn pooled_client() -> Client<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Requests started at `rate` per second for `duration`, whatever the answers (open loop), each
/// on a pooled connection; waits for every answer before returning.
pub(crate) async fn open_loop(
    addr: SocketAddr,
    path: &str,
    rate: u32,
    duration: Duration,
    mut every_second: impl FnMut(u64),
) -> Result<Report, String> {
    let client = pooled_client();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut due = 0.0f64;
    let mut sent = 0u64;
    let mut tasks = Vec::new();
    let mut last_second = 0;
    while started.elapsed() < duration {
        tick.tick().await;
        let second = started.elapsed().as_secs();
        if second != last_second {
            last_second = second;
            every_second(second);
        }
        // Catch up on whatever the timer's granularity made us miss.
        let target = started.elapsed().as_secs_f64() * f64::from(rate);
        while due < target {
            due += 1.0;
            sent += 1;
            let (client, outcomes, path) = (client.clone(), outcomes.clone(), path.to_string());
            tasks.push(tokio::spawn(async move {
                let begun = Instant::now();
                let status = read_status(client.request(request(addr, &path, Some(sent)))).await;
                outcomes.lock().unwrap().push(Outcome {
                    status,
                    latency: begun.elapsed(),
                });
            }));
        }
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    Ok(Report {
        outcomes,
        elapsed: started.elapsed(),
    })
}

/// Requests at a fixed total `rate` spread over `connections` keep-alive connections for
/// `duration` (wrk2's model): connection `i` is due to send every `connections / rate` seconds.
/// A request that could not go out when due because its connection was still waiting for the
/// previous answer is timed from when it was due, so a stalled proxy cannot hide its stall by
/// slowing the generator (coordinated omission); one sent late only because the timer woke
/// late is timed from when it was sent, so timer slack is not charged to the proxy.
pub(crate) async fn fixed_rate(
    addr: SocketAddr,
    path: &str,
    rate: u32,
    connections: usize,
    duration: Duration,
) -> Result<Report, String> {
    let started = Instant::now();
    let end = started + duration;
    let interval = Duration::from_secs_f64(connections as f64 / f64::from(rate.max(1)));
    let mut tasks = Vec::new();
    for index in 0..connections {
        let path = path.to_string();
        let mut sender = connect(addr).await?;
        // Staggered so the connections' sends interleave evenly.
        let first = started + interval.mul_f64(index as f64 / connections as f64);
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut due = first;
            while due < end {
                let busy_past_due = Instant::now() > due;
                if !busy_past_due {
                    tokio::time::sleep_until(due).await;
                }
                if sender.ready().await.is_err() {
                    break;
                }
                let sent = if busy_past_due { due } else { Instant::now() };
                let status = read_status(sender.send_request(request(addr, &path, None))).await;
                outcomes.push(Outcome {
                    status,
                    latency: sent.elapsed(),
                });
                if status == 0 {
                    break;
                }
                due += interval;
            }
            outcomes
        }));
    }
    gather(tasks, started).await
}

/// One fixed-rate run as the latency tables print it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FixedRateRun {
    pub(crate) sent: usize,
    pub(crate) per_second: f64,
    pub(crate) non_200: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
}

/// [`fixed_rate`] on `path` after half a second of closed-loop warm-up over 16 connections
/// (connections to the upstream opened, caches warm), summarised; quantiles over every answer.
pub(crate) async fn warmed_fixed_rate(
    addr: SocketAddr,
    path: &str,
    rate: u32,
    connections: usize,
    duration: Duration,
) -> Result<FixedRateRun, String> {
    closed_loop(addr, path, 16, Duration::from_millis(500)).await?;
    let report = fixed_rate(addr, path, rate, connections, duration).await?;
    let ms = |q| {
        report
            .quantile(q, |_| true)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    Ok(FixedRateRun {
        sent: report.outcomes.len(),
        per_second: report.per_second(),
        non_200: report.outcomes.len() - report.count(|status| status == 200),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
    })
}

/// `count` requests with ids `0..count` in `x-request-id`, at most `concurrency` at once.
pub(crate) async fn batch(
    addr: SocketAddr,
    path: &str,
    count: u64,
    concurrency: usize,
) -> Result<Report, String> {
    let client = pooled_client();
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..count {
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (client, path) = (client.clone(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            let status = read_status(client.request(request(addr, &path, Some(id)))).await;
            drop(permit);
            Outcome {
                status,
                latency: begun.elapsed(),
            }
        }));
    }
    let mut report = Report::default();
    for task in tasks {
        report.outcomes.push(task.await.map_err(|e| e.to_string())?);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Request `i` of `deadlines` carries `x-request-id: i` and `x-request-timeout-ms` of its
/// deadline; at most `concurrency` at once, each given up on after `cap` (status 0, latency
/// `cap`): the answers' statuses and latencies, in request order. The `warm_up` ids go first,
/// without deadlines, all at once, and are not counted.
pub(crate) async fn with_deadlines(
    addr: SocketAddr,
    path: &str,
    warm_up: &[u64],
    deadlines: &[Duration],
    concurrency: usize,
    cap: Duration,
) -> Result<Vec<Outcome>, String> {
    let client = pooled_client();
    // Each request's clock starts before it is sent, so one that has to open a connection
    // first (64 at once on 2 cores: the caller's to the gateway, the gateway's to the upstream)
    // would count handshakes the gateway has not yet seen against its deadline. Clients and
    // gateways keep connections alive; these are opened by the `warm_up` requests, sent all at
    // once and not counted.
    let warm_up: Vec<_> = warm_up
        .iter()
        .map(|id| tokio::spawn(read_status(client.request(request(addr, path, Some(*id))))))
        .collect();
    for task in warm_up {
        task.await.map_err(|e| e.to_string())?;
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for (id, deadline) in deadlines.iter().enumerate() {
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let mut request = request(addr, path, Some(id as u64));
        request.headers_mut().insert(
            "x-request-timeout-ms",
            http::HeaderValue::from(deadline.as_millis() as u64),
        );
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            let status = tokio::time::timeout(cap, read_status(client.request(request)))
                .await
                .unwrap_or(0);
            drop(permit);
            Outcome {
                status,
                latency: begun.elapsed(),
            }
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.map_err(|e| e.to_string())?);
    }
    Ok(outcomes)
}

/// A plain GET, for `/stats` and `/metrics`.
pub(crate) async fn get_text(addr: SocketAddr, path: &str) -> Result<String, String> {
    let response = pooled_client()
        .request(request(addr, path, None))
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// `wrk` on the PATH, if installed.
pub(crate) fn find_wrk() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("wrk"))
        .find(|candidate| candidate.is_file())
}

/// Runs wrk (one thread, `connections` connections) and returns requests/s, p50 and p99. Any
/// non-2xx answer or socket error is a failure of the run, as with our own generator.
pub(crate) fn wrk(
    wrk: &std::path::Path,
    addr: SocketAddr,
    path: &str,
    connections: usize,
    secs: u64,
) -> Result<(f64, Duration, Duration), String> {
    let output = std::process::Command::new(wrk)
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
        ])
        .arg(format!("http://{addr}{path}"))
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk reported failures:\n{text}"));
    }
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
            .ok_or_else(|| format!("wrk printed no `{prefix}`:\n{text}"))
    };
    let rps: f64 = field("Requests/sec:")?
        .parse()
        .map_err(|e| format!("wrk requests/sec: {e}"))?;
    Ok((
        rps,
        wrk_duration(field("50%")?)?,
        wrk_duration(field("99%")?)?,
    ))
}

/// wrk's latency format: `812.00us`, `1.23ms`, `2.00s`.
fn wrk_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!("unknown wrk latency `{text}`"));
    };
    let value: f64 = number
        .parse()
        .map_err(|e| format!("wrk latency `{text}`: {e}"))?;
    Ok(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_latencies() {
        assert_eq!(
            wrk_duration("812.00us").unwrap(),
            Duration::from_micros(812)
        );
        assert_eq!(wrk_duration("1.50ms").unwrap(), Duration::from_micros(1500));
        assert_eq!(wrk_duration("2.00s").unwrap(), Duration::from_secs(2));
        assert!(wrk_duration("2m").is_err());
    }
}
