//! The Worker example's test harness, shared by its tests and its benchmark: a real
//! `nats-server` and the real `worker` binary, each on a free port of 127.0.0.1 and killed by
//! PID when dropped, plus small helpers (requests, scrapes, providers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Request};
use serde_json::Value;

/// A port that was free a moment ago (nats-server takes a port number, not a listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

pub struct NatsServer {
    child: Child,
    pub url: String,
}

impl NatsServer {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nats-server ({e}): these tests need it on PATH; \
                     install it with `apt-get install -y nats-server`"
                )
            });
        let server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nats-server did not listen on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl NatsServer {
    /// Kills the server (SIGKILL), as a crash or a lost network would take it away.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one worker's FS root and log.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "worker-test-{}-{tag}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every flag on: what most tests run.
pub const ALL_ON: [(&str, &str); 4] = [
    ("CP2_ADVANCED_RETRY_ENABLED", "true"),
    ("CP2_COMPLETE_TIMEOUT_ENABLED", "true"),
    ("CP2_QUEUE_MANAGEMENT_ENABLED", "true"),
    ("CP2_OBSERVABILITY_METRICS_ENABLED", "true"),
];

/// The `worker` binary cargo built beside the test or benchmark running this: tests and
/// benchmarks run from `target/<profile>/deps/`, and cargo builds a package's binaries into
/// `target/<profile>/` before its tests and benchmarks.
fn worker_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the running test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    profile_dir.join(format!("worker{}", std::env::consts::EXE_SUFFIX))
}

pub struct Worker {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of its /metrics endpoint.
    pub http: String,
    pub fs_root: PathBuf,
    pub log: PathBuf,
}

impl Worker {
    /// Starts the worker against `nats` with `env` on top of a clean environment (no inherited
    /// WORKER_* or CP2_* settings) and waits for its `listening on` line.
    pub fn start(nats: &NatsServer, env: &[(&str, &str)]) -> Self {
        let dir = temp_dir("worker");
        let fs_root = dir.join("fs");
        let log = dir.join("worker.log");
        let mut command = Command::new(worker_binary());
        for (key, _) in std::env::vars() {
            if key.starts_with("WORKER_")
                || key.starts_with("CP2_")
                || key.starts_with("METRICS_")
                || key.starts_with("OTEL_")
            {
                command.env_remove(key);
            }
        }
        command
            .env("WORKER_NATS_URL", &nats.url)
            .env("WORKER_LISTEN", "127.0.0.1:0")
            .env("WORKER_FS_ROOT", &fs_root)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = command.spawn().expect("start the worker binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {} // keep the pipe open and drained
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the worker printed no `listening on` line within 20 s; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let http = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Worker {
            child: Some(child),
            http,
            fs_root,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let child = self.child.as_mut().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "the worker did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `/metrics` as text.
    pub fn metrics(&self) -> String {
        let (status, body) = http_get(&self.http, "/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A one-shot HTTP/1.1 GET; returns status and body.
pub fn http_get(base: &str, path: &str) -> (u16, String) {
    let authority = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).expect("connect to the worker's HTTP port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sum of the samples of `name` whose labels contain every `filter` (`key="value"`).
pub fn sample_sum(text: &str, name: &str, filters: &[&str]) -> f64 {
    samples(text, name)
        .filter(|(labels, _)| filters.iter().all(|f| labels.contains(f)))
        .map(|(_, v)| v)
        .sum()
}

/// `(labels, value)` of each sample of `name`.
pub fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
            let (labels, value) = rest.split_once('}')?;
            (labels, value)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            return None;
        };
        Some((labels, value.trim().parse().ok()?))
    })
}

/// Distinct values of `label` across the samples of `name`.
pub fn label_values(text: &str, name: &str, label: &str) -> std::collections::BTreeSet<String> {
    let prefix = format!("{label}=\"");
    samples(text, name)
        .filter_map(|(labels, _)| {
            let start = labels.find(&prefix)? + prefix.len();
            let end = labels[start..].find('"')? + start;
            Some(labels[start..end].to_string())
        })
        .collect()
}

pub async fn connect(nats: &NatsServer) -> async_nats::Client {
    async_nats::connect(nats.url.as_str())
        .await
        .expect("connect to nats-server")
}

/// Sends `job` on `jobs` and returns the parsed reply, or the request error as text.
pub async fn request(
    client: &async_nats::Client,
    job: &Value,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Value, String> {
    let mut request = Request::new()
        .payload(serde_json::to_vec(job).unwrap().into())
        .timeout(Some(timeout));
    if !headers.is_empty() {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        request = request.headers(map);
    }
    let message = client
        .send_request("jobs", request)
        .await
        .map_err(|e| format!("{:?}: {e}", e.kind()))?;
    Ok(serde_json::from_slice(&message.payload).expect("the reply is JSON"))
}

pub fn status(reply: &Value) -> &str {
    reply["status"].as_str().unwrap_or("?")
}

/// A provider on 127.0.0.1 that answers every request with `status` and counts requests.
pub struct Provider {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
    /// Each request's head (request line and headers) as received.
    pub heads: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Provider {
    pub async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = heads.clone();
        let task = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request per connection (GET or a small POST; bodies ignored).
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        if buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    kept.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buffer).into_owned());
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Provider {
            url,
            hits,
            heads,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL on 127.0.0.1 where nothing listens (connections are refused).
pub fn dead_url() -> String {
    format!("http://127.0.0.1:{}/v1/x", free_port())
}

pub fn file(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}
