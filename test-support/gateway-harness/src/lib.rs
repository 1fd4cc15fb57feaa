//! The gateway example's test harness, shared by its test targets: the real `gateway` binary as
//! a child process, scripted fault-injecting upstreams, and a small HTTP client. Every child
//! process is killed by PID on drop, so a failing test leaves nothing behind.

pub mod fault_proxy;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Longest a gateway may take to print its `listening on` line.
const STARTUP: Duration = Duration::from_secs(20);

/// All four flags on.
pub const ALL_ON: &[(&str, &str)] = &[
    ("CP2_ADVANCED_RETRY_ENABLED", "true"),
    ("CP2_COMPLETE_TIMEOUT_ENABLED", "true"),
    ("CP2_QUEUE_MANAGEMENT_ENABLED", "true"),
    ("CP2_OBSERVABILITY_METRICS_ENABLED", "true"),
];

/// All four flags off (the defaults, spelled out).
pub const ALL_OFF: &[(&str, &str)] = &[
    ("CP2_ADVANCED_RETRY_ENABLED", "false"),
    ("CP2_COMPLETE_TIMEOUT_ENABLED", "false"),
    ("CP2_QUEUE_MANAGEMENT_ENABLED", "false"),
    ("CP2_OBSERVABILITY_METRICS_ENABLED", "false"),
];

/// The `gateway` binary cargo built beside the test running this: tests run from
/// `target/<profile>/deps/`, and cargo builds a package's binaries into `target/<profile>/`
/// before its tests.
fn gateway_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the running test's path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("tests run from target/<profile>/deps");
    profile_dir.join(format!("gateway{}", std::env::consts::EXE_SUFFIX))
}

/// A `Command` for the gateway binary with a clean environment (no inherited GATEWAY_* or CP2_*).
pub fn gateway_command() -> Command {
    let mut command = Command::new(gateway_binary());
    for (key, _) in std::env::vars() {
        if key.starts_with("GATEWAY_")
            || key.starts_with("CP2_")
            || key.starts_with("METRICS_")
            || key.starts_with("OTEL_")
        {
            command.env_remove(key);
        }
    }
    command.env("RUST_LOG", "gateway=warn");
    command
}

/// A running gateway; killed (SIGKILL) on drop unless it already exited.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Gateway {
    /// Starts the gateway on 127.0.0.1:0 with `env` and waits for its `listening on` line.
    pub fn start(env: &[(&str, &str)]) -> Gateway {
        let mut command = gateway_command();
        command.env("GATEWAY_LISTEN", "127.0.0.1:0");
        for (key, value) in env {
            command.env(key, value);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the gateway binary");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let collected = Arc::new(Mutex::new(String::new()));
        {
            let collected = Arc::clone(&collected);
            std::thread::spawn(move || {
                let mut text = String::new();
                let mut reader = BufReader::new(stderr);
                while reader.read_line(&mut text).unwrap_or(0) > 0 {
                    collected.lock().unwrap().push_str(&text);
                    text.clear();
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    let _ = tx.send(addr.to_string());
                }
                line.clear();
            }
        });
        let mut gateway = Gateway {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stderr: collected,
        };
        match rx.recv_timeout(STARTUP) {
            Ok(addr) => gateway.addr = addr.parse().expect("a socket address"),
            Err(_) => panic!(
                "the gateway printed no `listening on` line; stderr:\n{}",
                gateway.stderr()
            ),
        }
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The gateway's resident memory in KiB (`VmRSS` in `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the gateway's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM (through `kill`, so the tests need no libc binding).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the gateway with `env` expecting it to refuse to start; returns (exit code, stderr).
pub fn refuse(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = gateway_command();
    command.env("GATEWAY_LISTEN", "127.0.0.1:0");
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway binary");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway started with {env:?} instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

/// What a scripted upstream does with one request.
#[derive(Clone, Debug)]
pub enum Action {
    /// Answer with this status after this delay.
    Status(u16, Duration),
    /// Close the connection without answering.
    Reset,
}

pub fn status(code: u16) -> Action {
    Action::Status(code, Duration::ZERO)
}

pub fn slow(code: u16, delay: Duration) -> Action {
    Action::Status(code, delay)
}

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

struct Script {
    queue: Mutex<VecDeque<Action>>,
    otherwise: Action,
    calls: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

/// A fault-injecting HTTP/1.1 upstream on 127.0.0.1:0: plays `script` in order, then `otherwise`.
/// Answers echo the request path in `x-upstream-path` and carry a `x-upstream: NAME` header.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    script: Arc<Script>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Upstream {
    pub async fn start(script: Vec<Action>, otherwise: Action) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Script {
            queue: Mutex::new(script.into()),
            otherwise,
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&script);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let script = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let script = Arc::clone(&script);
                        async move { answer(script, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            script,
            task: Arc::new(task),
        }
    }

    /// Always answers `code` after `delay`.
    pub async fn fixed(code: u16, delay: Duration) -> Upstream {
        Upstream::start(Vec::new(), Action::Status(code, delay)).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.script.calls.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

#[derive(Debug)]
struct Hangup;

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("scripted hang-up")
    }
}

impl std::error::Error for Hangup {}

async fn answer(
    script: Arc<Script>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Hangup> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    script.calls.fetch_add(1, Ordering::SeqCst);
    script.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body,
    });
    let action = script
        .queue
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| script.otherwise.clone());
    match action {
        // An error from the service makes hyper drop the connection without a response.
        Action::Reset => Err(Hangup),
        Action::Status(code, delay) => {
            tokio::time::sleep(delay).await;
            let mut response = Response::new(Full::new(Bytes::from(format!("upstream {code}\n"))));
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
            response
                .headers_mut()
                .insert("x-upstream-path", parts.uri.path().parse().unwrap());
            response
                .headers_mut()
                .insert("keep-alive", "timeout=30".parse().unwrap());
            Ok(response)
        }
    }
}

/// An address on which nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Status, headers and body of one answered request.
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
    pub took: Duration,
}

pub async fn send(client: &TestClient, request: Request<Full<Bytes>>) -> Answer {
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .expect("the gateway answered within 30 s")
        .expect("the gateway answered");
    let took = started.elapsed();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a whole body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        took,
    }
}

pub async fn get(client: &TestClient, url: &str) -> Answer {
    send(client, Request::get(url).body(Full::default()).unwrap()).await
}

/// Waits until `condition` holds, at most `limit`.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// Label values of every sample line of a Prometheus text exposition.
pub fn label_values(text: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(start) = line.find('{') else {
            continue;
        };
        let Some(end) = line.rfind('}') else { continue };
        for pair in line[start + 1..end].split("\",") {
            if let Some((_, value)) = pair.split_once("=\"") {
                values.push(value.trim_end_matches('"').to_string());
            }
        }
    }
    values
}

/// Sum of the samples of `metric` whose line contains every one of `filters`.
pub fn sample_sum(text: &str, metric: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric))
        .filter(|l| {
            let rest = &l[metric.len()..];
            rest.starts_with('{') || rest.starts_with(' ')
        })
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `flags` plus `extra` settings.
pub fn env<'a>(
    flags: &'a [(&'a str, &'a str)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut all = flags.to_vec();
    all.extend_from_slice(extra);
    all
}

pub fn upstreams(list: &[(&str, &Upstream)]) -> String {
    list.iter()
        .map(|(name, u)| format!("{name}={}", u.url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Sends `n` requests at once, each on its own connection; returns the answers.
pub async fn parallel(url: String, n: usize) -> Vec<Answer> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&client(), &url).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}
