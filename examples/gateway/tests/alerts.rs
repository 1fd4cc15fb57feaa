//! Alerts delivered: a real failure in the real gateway fires an alert of the production rules
//! (`ops/prometheus/rules.yml`, unchanged) in a real Prometheus, and a real Alertmanager
//! delivers it to a webhook in this test, with the labels and runbook link an operator's pager
//! would show.
//!
//! The alert is `GatewayCircuitOpen` (`for: 1m`), the fastest the rules allow: the breaker
//! opens within a few requests to a provider that answers every call 503, and stays open (the
//! gauge reads open until the next call) while the test sends nothing more. About 70 s.
//!
//! Needs `/usr/bin/prometheus` (Debian's `prometheus` package) and
//! `/usr/bin/prometheus-alertmanager` (Debian's `prometheus-alertmanager`); `.ci/run` installs
//! both.

use gateway_harness as common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use bytes::Bytes;
use http::StatusCode;

use common::*;
use prometheus_server::{Alertmanager, Prometheus};
use serde_json::Value as Json;

/// The whole test stays under this: a minute of `for:`, plus start-up, scrapes and delivery.
const BUDGET: Duration = Duration::from_secs(90);
/// The Prometheus job scraping the gateway.
const JOB: &str = "gateway";
/// The provider whose breaker opens.
const PROVIDER: &str = "flaky";
/// The alert the open breaker fires.
const ALERT: &str = "GatewayCircuitOpen";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The JSON bodies Alertmanager POSTed to the webhook, in arrival order.
type Received = Arc<Mutex<Vec<Json>>>;

/// A webhook receiver on 127.0.0.1: a real axum server recording what it is sent. Stopped on
/// drop.
struct Webhook {
    url: String,
    received: Received,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    async fn start() -> Webhook {
        let received = Received::default();
        let app = axum::Router::new()
            .route("/alerts", post(record))
            .with_state(Arc::clone(&received));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the webhook");
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Webhook {
            url,
            received,
            task,
        }
    }

    fn received(&self) -> Vec<Json> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps one POSTed body; a body that is not JSON is kept as a string, so the failure message
/// shows it, and answered 400.
async fn record(State(received): State<Received>, body: Bytes) -> StatusCode {
    let (json, status) = match serde_json::from_slice(&body) {
        Ok(json) => (json, StatusCode::OK),
        Err(_) => (
            Json::String(String::from_utf8_lossy(&body).into_owned()),
            StatusCode::BAD_REQUEST,
        ),
    };
    received.lock().unwrap().push(json);
    status
}

/// The first alert named `ALERT` among the notifications, with its notification.
fn delivered(received: &[Json]) -> Option<(&Json, &Json)> {
    received.iter().find_map(|notification| {
        let alerts = notification.get("alerts")?.as_array()?;
        let alert = alerts
            .iter()
            .find(|a| a.pointer("/labels/alertname").and_then(Json::as_str) == Some(ALERT))?;
        Some((notification, alert))
    })
}

/// Sends requests until the provider's breaker reads open on /metrics, at most 50; then sends
/// nothing more, so that no probe half-opens it while the alert's minute runs.
async fn open_the_breaker(gateway: &Gateway) {
    let client = client();
    for _ in 0..50 {
        let answer = get(&client, &gateway.url("/v1/chat")).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.body
        );
        let metrics = get(&client, &gateway.url("/metrics")).await.body;
        let name = format!("tower_circuit_name=\"{PROVIDER}\"");
        if sample_sum(&metrics, "tower_circuit_state", &[&name]) == 2.0 {
            return;
        }
    }
    panic!("the breaker of {PROVIDER} did not open after 50 requests");
}

/// GitHub's anchor for a Markdown heading: lowercase, punctuation but '-' and '_' removed,
/// spaces as '-'.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of the subsections of ops/README.md's "Runbooks" section.
fn runbook_anchors() -> Vec<String> {
    let readme =
        std::fs::read_to_string(repository_root().join("ops/README.md")).expect("ops/README.md");
    let start = readme
        .find("\n## Runbooks\n")
        .expect("ops/README.md has a section \"Runbooks\"");
    let section = &readme[start + 1..];
    let end = section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3);
    section[..end]
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(github_anchor)
        .collect()
}

/// The workspace's `repository = "..."` (Cargo.toml), the base of every runbook link.
fn repository_url() -> String {
    let manifest =
        std::fs::read_to_string(repository_root().join("Cargo.toml")).expect("Cargo.toml");
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("repository = "))
        .expect("the workspace's repository URL")
        .trim_matches('"')
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_reaches_the_webhook_with_its_labels_and_runbook() {
    let started = Instant::now();
    let webhook = Webhook::start().await;
    let alertmanager = Alertmanager::start(&webhook.url).await;
    let upstream = Upstream::fixed(503, Duration::ZERO).await;
    let list = upstreams(&[(PROVIDER, &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_RETRY_BASE_MS", "1"),
            ("CP2_CIRCUIT_BREAKER_ENABLED", "true"),
        ],
    ));
    let rules = repository_root().join("ops/prometheus/rules.yml");
    let prometheus = Prometheus::start_with(
        JOB,
        &gateway.addr.to_string(),
        &[&rules],
        &alertmanager.alerting_config(),
    )
    .await;
    open_the_breaker(&gateway).await;
    let opened = started.elapsed();

    let found = loop {
        let received = webhook.received();
        if let Some((notification, alert)) = delivered(&received) {
            break Some((notification.clone(), alert.clone()));
        }
        if started.elapsed() >= BUDGET {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let Some((notification, alert)) = found else {
        let in_prometheus = prometheus.get("/api/v1/alerts").await;
        let in_alertmanager = alertmanager.alerts().await;
        panic!(
            "{ALERT} did not reach the webhook within {BUDGET:?} (breaker open after \
             {opened:?}).\nwebhook received: {:?}\nPrometheus /api/v1/alerts: \
             {in_prometheus:?}\nAlertmanager /api/v2/alerts: {in_alertmanager:?}",
            webhook.received()
        );
    };
    let arrived = started.elapsed();

    let context = format!("notification: {notification:#}");
    assert_eq!(notification["status"], "firing", "{context}");
    assert_eq!(notification["receiver"], "webhook", "{context}");
    assert_eq!(alert["status"], "firing", "{context}");
    // Exactly the labels the rule gives: its `by (job, tower_circuit_name)` and its severity.
    assert_eq!(
        alert["labels"],
        serde_json::json!({
            "alertname": ALERT,
            "job": JOB,
            "tower_circuit_name": PROVIDER,
            "severity": "warning",
        }),
        "{context}"
    );
    let annotations = &alert["annotations"];
    assert_eq!(
        annotations["summary"],
        format!("{JOB}: circuit to {PROVIDER} open"),
        "{context}"
    );
    assert!(
        annotations["description"]
            .as_str()
            .is_some_and(|d| d.contains(PROVIDER)),
        "{context}"
    );
    let runbook = annotations["runbook_url"].as_str().unwrap_or_default();
    let (page, anchor) = runbook
        .split_once('#')
        .unwrap_or_else(|| panic!("runbook_url without an anchor: {runbook:?}; {context}"));
    assert_eq!(
        page,
        format!("{}/blob/main/ops/README.md", repository_url()),
        "{context}"
    );
    assert_eq!(anchor, github_anchor(ALERT), "{context}");
    let anchors = runbook_anchors();
    assert!(
        anchors.iter().any(|a| a == anchor),
        "#{anchor} is not a subsection of ops/README.md's Runbooks: {anchors:?}"
    );
    assert!(
        arrived < BUDGET,
        "breaker open after {opened:?}, alert delivered after {arrived:?}"
    );
}
