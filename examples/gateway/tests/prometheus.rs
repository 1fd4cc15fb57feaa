//! A real Prometheus server scrapes the real gateway; its answers must match what was sent.
//!
//! Needs `/usr/bin/prometheus` (Debian's `prometheus` package; `.ci/run` installs it).

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;

use common::*;

/// The whole test stays well under this.
const BUDGET: Duration = Duration::from_secs(40);

/// A Prometheus server in a temporary directory; killed by PID and cleaned up on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let binary = ["/usr/bin/prometheus", "prometheus"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("Prometheus is installed (Debian package `prometheus`, installed by .ci/run)");
        let dir = std::env::temp_dir().join(format!(
            "gateway-prometheus-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: gateway\n    scrape_interval: 1s\n    \
             static_configs:\n      - targets: [\"{target}\"]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
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
        }
    }

    /// The value of an instant query returning one sample, if it does.
    async fn query(&self, client: &TestClient, promql: &str) -> Option<f64> {
        let url = format!("{}/api/v1/query?query={}", self.url, percent_encode(promql));
        let body = self.fetch(client, &url).await?;
        // {"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[t,"v"]}]}}
        let value = body.split("\"value\":[").nth(1)?;
        let quoted = value.split('"').nth(1)?;
        quoted.parse().ok().filter(|v: &f64| v.is_finite())
    }
}

impl Prometheus {
    /// A 200 body, or `None` while Prometheus is not up (yet) or answers otherwise.
    async fn fetch(&self, client: &TestClient, url: &str) -> Option<String> {
        use http_body_util::BodyExt;
        let request = http::Request::get(url).body(Default::default()).ok()?;
        let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
            .await
            .ok()?
            .ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).into_owned())
    }

    /// Waits until Prometheus answers `/-/ready`; false if it exited (say, its port was taken
    /// between our probe and its bind) or took longer than `limit`.
    async fn ready(&mut self, client: &TestClient, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if self
                .fetch(client, &format!("{}/-/ready", self.url))
                .await
                .is_some()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_requests_and_latency_the_test_sent() {
    let started = Instant::now();
    // 10% of calls take 300 ms, the rest 20 ms: the p99 lies in the (0.25, 0.5] bucket.
    let mut script = Vec::new();
    for i in 0..100 {
        let delay = if i % 10 == 0 { 300 } else { 20 };
        script.push(slow(200, Duration::from_millis(delay)));
    }
    // The warm-up request answers like the fast ones.
    script.insert(0, slow(200, Duration::from_millis(20)));
    let upstream = Upstream::start(script, status(200)).await;
    let list = format!("a={}", upstream.url());
    let gateway = Gateway::start(&[
        ("CP2_OBSERVABILITY_METRICS_ENABLED", "true"),
        ("CP2_QUEUE_MANAGEMENT_ENABLED", "true"),
        ("CP2_COMPLETE_TIMEOUT_ENABLED", "true"),
        ("CP2_ADVANCED_RETRY_ENABLED", "true"),
        ("GATEWAY_UPSTREAMS", &list),
    ]);
    let client = client();
    let mut prometheus = None;
    for _ in 0..3 {
        let mut candidate = Prometheus::start(&gateway.addr.to_string());
        if candidate.ready(&client, Duration::from_secs(15)).await {
            prometheus = Some(candidate);
            break;
        }
    }
    let prometheus = prometheus.expect("Prometheus did not become ready");

    // One request first, so the series exist (and are scraped) before the traffic whose rate
    // Prometheus must compute.
    assert_eq!(
        get(&client, &gateway.url("/v1/warm-up")).await.status,
        StatusCode::OK
    );
    let count = "sum(http_server_request_duration_seconds_count{http_route=\"/v1/{*path}\"})";
    let mut scraped = false;
    while started.elapsed() < Duration::from_secs(20) {
        if prometheus.query(&client, count).await == Some(1.0) {
            scraped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(scraped, "Prometheus never scraped the gateway");

    // 100 requests, 10 at a time: in order, so exactly every tenth is slow.
    for batch in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..10 {
            let url = gateway.url(&format!("/v1/item-{}", batch * 10 + i));
            let client = client.clone();
            tasks.push(tokio::spawn(async move { get(&client, &url).await.status }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), StatusCode::OK);
        }
    }
    assert_eq!(upstream.calls(), 101);

    let mut total = None;
    while started.elapsed() < BUDGET - Duration::from_secs(5) {
        total = prometheus.query(&client, count).await;
        if total == Some(101.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(total, Some(101.0), "request count seen by Prometheus");

    let p99 = prometheus
        .query(
            &client,
            "histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{http_route=\"/v1/{*path}\"}[1m])))",
        )
        .await
        .expect("a p99");
    assert!(
        p99 > 0.25 && p99 <= 0.5,
        "p99 {p99} s: 10 of 100 requests took 300 ms"
    );
    let p50 = prometheus
        .query(
            &client,
            "histogram_quantile(0.5, sum by (le) (rate(http_server_request_duration_seconds_bucket{http_route=\"/v1/{*path}\"}[1m])))",
        )
        .await
        .expect("a p50");
    assert!(
        p50 > 0.005 && p50 <= 0.1,
        "p50 {p50} s: 90 of 100 requests took 20 ms"
    );
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}
