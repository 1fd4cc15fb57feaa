//! A real Prometheus server for tests: scrapes one target every second, optionally evaluates
//! rule files every second, and answers PromQL through its HTTP API (read with serde_json).
//!
//! Needs `/usr/bin/prometheus` (Debian's `prometheus` package; `.ci/run` installs it). For
//! alerts delivered end to end, [`Alertmanager`] starts a real Alertmanager that Prometheus
//! sends to (pass [`Alertmanager::alerting_config`] to [`Prometheus::start_with`]).

pub mod alertmanager;

pub use alertmanager::Alertmanager;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// A Prometheus server in a temporary directory; killed by its PID and cleaned up on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port) as job `job` every second, with
    /// `rule_files` evaluated every second, and waits until it is ready. Tries three ports, in
    /// case another process takes the one probed before Prometheus binds it.
    pub async fn start(job: &str, target: &str, rule_files: &[&Path]) -> Prometheus {
        Self::start_with(job, target, rule_files, "").await
    }

    /// Like [`start`](Self::start), with `extra` appended to the configuration file (for
    /// example an `alerting:` section, such as [`Alertmanager::alerting_config`]).
    pub async fn start_with(
        job: &str,
        target: &str,
        rule_files: &[&Path],
        extra: &str,
    ) -> Prometheus {
        for _ in 0..3 {
            let mut prometheus = Prometheus::spawn(job, target, rule_files, extra);
            if prometheus.ready(Duration::from_secs(15)).await {
                return prometheus;
            }
        }
        panic!("Prometheus did not become ready");
    }

    fn spawn(job: &str, target: &str, rule_files: &[&Path], extra: &str) -> Prometheus {
        let binary = ["/usr/bin/prometheus", "prometheus"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect(
                "Prometheus is not installed: install Debian's `prometheus` package \
                 (apt-get install prometheus; .ci/run does)",
            );
        let dir = scratch_dir("prometheus-test");
        std::fs::create_dir_all(dir.join("data")).expect("a temporary directory");
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
        if !rule_files.is_empty() {
            config.push_str("rule_files:\n");
            for file in rule_files {
                let file = file.canonicalize().expect("the rule file exists");
                config.push_str(&format!("  - {:?}\n", file.display().to_string()));
            }
        }
        config.push_str(&format!(
            "scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ));
        config.push_str(extra);
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Waits until Prometheus answers `/-/ready`; false if it exited (say, its port was taken)
    /// or took longer than `limit`.
    async fn ready(&mut self, limit: Duration) -> bool {
        let url = format!("{}/-/ready", self.url);
        ready(&mut self.child, &self.client, &url, limit).await
    }

    /// GETs `path_and_query` from the server: its status and body.
    pub async fn get(&self, path_and_query: &str) -> Result<(StatusCode, String), String> {
        get(&self.client, &format!("{}{path_and_query}", self.url)).await
    }

    /// The result of an instant query (`data.result`), or Prometheus' error.
    pub async fn query(&self, promql: &str) -> Result<Value, String> {
        let encoded = utf8_percent_encode(promql, NON_ALPHANUMERIC);
        let (status, body) = self.get(&format!("/api/v1/query?query={encoded}")).await?;
        let answer: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
        if answer["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        answer
            .pointer("/data/result")
            .cloned()
            .ok_or_else(|| format!("no data.result: {body}"))
    }

    /// The value of an instant query answering one finite sample; `None` otherwise (no data
    /// yet, several series, an error).
    pub async fn sample(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql).await.ok()?;
        let [only] = result.as_array()?.as_slice() else {
            return None;
        };
        only.pointer("/value/1")?
            .as_str()?
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory name under the system's temporary directory, unique to this process and
/// moment, so that servers started by tests running in parallel never share their data.
fn scratch_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ))
}

/// A port free on 127.0.0.1 a moment ago: for servers that cannot listen on port 0 and report
/// the port they got. Another process may take it before the server binds it, so callers retry.
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("its address").port()
}

/// Waits until `url` (a server's readiness endpoint) answers 200; false if `child`, the server,
/// exited (say, its port was taken) or took longer than `limit`.
async fn ready(
    child: &mut Child,
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    limit: Duration,
) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok((StatusCode::OK, _)) = get(client, url).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// GETs `url` (answer within 5 s): its status and body.
async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
) -> Result<(StatusCode, String), String> {
    let request = http::Request::get(url)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| format!("{url}: no answer within 5 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Runs `promtool check metrics` on `text`; returns its verdict and output.
pub fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package `prometheus`, installed by .ci/run)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let mut report = String::from_utf8_lossy(&output.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), report)
}
