//! The Grafana dashboard `ops/grafana/gateway.json`: a Grafana 10+ dashboard whose every panel
//! query returns data from a real Prometheus that scraped the real gateway under load, with the
//! recording rules of `ops/prometheus/rules.yml` loaded (no typo, no dead panel).
//!
//! Needs `/usr/bin/prometheus` (Debian's `prometheus` package; `.ci/run` installs it).

use gateway_harness as common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};

use common::*;
use prometheus_server::Prometheus;
use serde_json::Value as Json;

/// The Prometheus job the dashboard's `$job` stands for in this test.
const JOB: &str = "gateway";
/// How long the load runs.
const LOAD: Duration = Duration::from_secs(12);
/// The whole test stays under this.
const BUDGET: Duration = Duration::from_secs(60);

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops")
}

fn dashboard() -> Json {
    let path = ops().join("grafana/gateway.json");
    let text = std::fs::read_to_string(&path).expect("ops/grafana/gateway.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The elements of a JSON array; none for anything else.
fn items(value: &Json) -> &[Json] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// A Grafana variable reference replaced as a dashboard would, with `$route` at "All".
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("${job}", JOB)
        .replace("$job", JOB)
        .replace("${route}", ".+")
        .replace("$route", ".+")
}

/// One query of one panel.
struct Query {
    row: String,
    panel: String,
    expr: String,
}

/// Every query of every panel (also inside collapsed rows), with the row it sits under.
fn queries(dashboard: &Json) -> Vec<Query> {
    fn walk(panels: &[Json], row: &mut String, out: &mut Vec<Query>) {
        for panel in panels {
            let title = panel.get("title").and_then(Json::as_str).unwrap_or("");
            if panel.get("type").and_then(Json::as_str) == Some("row") {
                *row = title.to_string();
                walk(panel.get("panels").map(items).unwrap_or(&[]), row, out);
                continue;
            }
            for target in panel.get("targets").map(items).unwrap_or(&[]) {
                out.push(Query {
                    row: row.clone(),
                    panel: title.to_string(),
                    expr: target
                        .get("expr")
                        .and_then(Json::as_str)
                        .unwrap_or("")
                        .to_string(),
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(
        dashboard.get("panels").map(items).unwrap_or(&[]),
        &mut String::new(),
        &mut out,
    );
    out
}

/// The PromQL the gateway README's "Operating it" section tells operators to watch during a
/// rollout: each line of its `promql` blocks, named by the comment above it. They run against
/// the same Prometheus as the panels, so a renamed series breaks this test, not a rollout.
fn readme_queries() -> Vec<Query> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("examples/gateway/README.md");
    let start = readme
        .find("## Operating it")
        .expect("README section \"Operating it\"");
    let section = &readme[start..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    let mut out = Vec::new();
    let mut comment = String::new();
    for block in section.split("```promql\n").skip(1) {
        let block = block.split("```").next().unwrap_or("");
        for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(text) = line.strip_prefix('#') {
                comment = text.trim().to_string();
            } else {
                out.push(Query {
                    row: "README: Operating it".into(),
                    panel: comment.clone(),
                    expr: line.to_string(),
                });
            }
        }
    }
    out
}

/// Every panel, rows and panels inside collapsed rows included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for panel in dashboard.get("panels").map(items).unwrap_or(&[]) {
        out.push(panel);
        out.extend(panel.get("panels").map(items).unwrap_or(&[]));
    }
    out
}

/// The rows whose panels set the canary's two sides side by side: each of their queries must
/// return series of both.
fn compares_sides(row: &str) -> bool {
    row.contains("on vs off")
}

#[test]
fn dashboard_is_a_grafana_10_dashboard() {
    let dashboard = dashboard();
    let schema = dashboard.get("schemaVersion").and_then(Json::as_f64);
    assert!(schema >= Some(38.0), "schemaVersion {schema:?}");
    for key in ["title", "uid"] {
        assert!(
            dashboard
                .get(key)
                .and_then(Json::as_str)
                .is_some_and(|v| !v.is_empty()),
            "{key}"
        );
    }

    let variables = dashboard
        .get("templating")
        .and_then(|t| t.get("list"))
        .map(items)
        .unwrap_or(&[]);
    let datasource = variables
        .iter()
        .find(|v| v.get("type").and_then(Json::as_str) == Some("datasource"))
        .expect("a data source variable");
    assert_eq!(
        datasource.get("query").and_then(Json::as_str),
        Some("prometheus")
    );
    let uid = format!(
        "${{{}}}",
        datasource.get("name").and_then(Json::as_str).unwrap()
    );
    let uses_datasource = |item: &Json| {
        item.get("datasource")
            .and_then(|d| d.get("uid"))
            .and_then(Json::as_str)
            == Some(uid.as_str())
    };
    for variable in variables
        .iter()
        .filter(|v| v.get("type").and_then(Json::as_str) == Some("query"))
    {
        assert!(uses_datasource(variable), "variable {variable:?}");
    }

    let mut problems = Vec::new();
    let mut ids = Vec::new();
    let mut boxes = Vec::new();
    for panel in panels(&dashboard) {
        let title = panel.get("title").and_then(Json::as_str).unwrap_or("");
        let kind = panel.get("type").and_then(Json::as_str).unwrap_or("");
        let id = panel.get("id").and_then(Json::as_f64);
        if id.is_none() || ids.contains(&id) {
            problems.push(format!("{title}: id {id:?} missing or taken"));
        }
        ids.push(id);
        let grid = |key: &str| {
            panel
                .get("gridPos")
                .and_then(|g| g.get(key))
                .and_then(Json::as_f64)
                .unwrap_or(-1.0)
        };
        let (x, y, w, h) = (grid("x"), grid("y"), grid("w"), grid("h"));
        if x < 0.0 || y < 0.0 || w < 1.0 || h < 1.0 || x + w > 24.0 {
            problems.push(format!("{title}: gridPos {x},{y} {w}x{h}"));
        }
        if boxes
            .iter()
            .any(|&(bx, by, bw, bh)| x < bx + bw && bx < x + w && y < by + bh && by < y + h)
        {
            problems.push(format!("{title}: overlaps another panel"));
        }
        boxes.push((x, y, w, h));
        if kind == "row" {
            continue;
        }
        if !["timeseries", "state-timeline", "stat", "table", "bargauge"].contains(&kind) {
            problems.push(format!("{title}: panel type {kind:?}"));
        }
        if title.is_empty() || panel.get("description").is_none() {
            problems.push(format!("{kind} panel {id:?}: no title or description"));
        }
        if !uses_datasource(panel) {
            problems.push(format!("{title}: data source is not {uid}"));
        }
        let targets = panel.get("targets").map(items).unwrap_or(&[]);
        if targets.is_empty() {
            problems.push(format!("{title}: no query"));
        }
        let mut refs = Vec::new();
        for target in targets {
            let reference = target.get("refId").and_then(Json::as_str);
            if reference.is_none() || refs.contains(&reference) {
                problems.push(format!("{title}: refId {reference:?} missing or repeated"));
            }
            refs.push(reference);
            if !uses_datasource(target) {
                problems.push(format!("{title}: a query's data source is not {uid}"));
            }
            let expr = target.get("expr").and_then(Json::as_str).unwrap_or("");
            if expr.trim().is_empty() || substitute(expr).contains('$') {
                problems.push(format!(
                    "{title}: query {expr:?} empty or with unknown variables"
                ));
            }
        }
    }

    // The panels an operator looks for, by the words of their titles.
    let titles: Vec<&str> = panels(&dashboard)
        .iter()
        .filter_map(|p| p.get("title").and_then(Json::as_str))
        .collect();
    for wanted in [
        "Request rate",
        "Error ratio",
        "p50, p95, p99",
        "on vs off",
        "Retries by reason",
        "Retry budget exhaustion",
        "Queue depth",
        "Queue status",
        "Rejections by reason",
        "Deadlines exceeded by where",
        "Routing decisions by provider and reason",
        "Breaker state by provider",
        "Edge refusals by reason",
        "Open client connections",
        "Attempts by instance",
    ] {
        if !titles.iter().any(|t| t.contains(wanted)) {
            problems.push(format!("no panel or row titled with {wanted:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One request; its status, or 0 when it got no answer within 5 s.
async fn hit(client: &TestClient, url: &str, id: u64, headers: &[(&str, &str)]) -> u16 {
    let mut request = Request::get(url).header("x-request-id", format!("dashboard-{id}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::<Bytes>::default()).unwrap();
    match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        }
        _ => 0,
    }
}

/// What each load task sends, in turn, with a pause after each request.
struct Pattern {
    path: &'static str,
    headers: &'static [&'static [(&'static str, &'static str)]],
    pause: Duration,
}

const PATTERNS: &[Pattern] = &[
    // Plain traffic (the demo provider answers 20% of it 503, 5% slowly), some of it from
    // tenants: three tasks of it.
    Pattern {
        path: "/v1/chat/completions",
        headers: &[
            &[],
            &[("x-tenant-id", "acme")],
            &[],
            &[("x-tenant-id", "globex")],
        ],
        pause: Duration::from_millis(25),
    },
    Pattern {
        path: "/v1/chat/completions",
        headers: &[&[]],
        pause: Duration::from_millis(25),
    },
    Pattern {
        path: "/v1/models",
        headers: &[&[]],
        pause: Duration::from_millis(25),
    },
    // Provider failures on every attempt: retried up to 4 times until the retry budget (10/s
    // plus 20% of requests) runs out.
    Pattern {
        path: "/v1/embeddings",
        headers: &[&[("x-fault-abort", "503")]],
        pause: Duration::from_millis(10),
    },
    // Tight deadlines: none left on arrival, or shorter than the provider takes.
    Pattern {
        path: "/v1/chat/completions",
        headers: &[
            &[("x-request-timeout-ms", "1")],
            &[("x-request-timeout-ms", "50"), ("x-fault-delay-ms", "200")],
        ],
        pause: Duration::from_millis(30),
    },
];

/// Sends the load for `duration`; returns how many answers had each status (0: no answer).
async fn load(gateway: &Gateway, duration: Duration) -> BTreeMap<u16, usize> {
    let until = Instant::now() + duration;
    let ids = Arc::new(AtomicU64::new(0));
    let client = client();
    let mut tasks = Vec::new();
    for pattern in PATTERNS {
        let url = gateway.url(pattern.path);
        let (client, ids) = (client.clone(), Arc::clone(&ids));
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for headers in pattern.headers.iter().cycle() {
                if Instant::now() >= until {
                    break;
                }
                let id = ids.fetch_add(1, Ordering::Relaxed);
                statuses.push(hit(&client, &url, id, headers).await);
                tokio::time::sleep(pattern.pause).await;
            }
            statuses
        }));
    }
    // Once a second, 24 slow requests at once: more than the canary side's queue (its half of
    // GATEWAY_MAX_CONCURRENCY 8 and GATEWAY_QUEUE_CAPACITY 8) holds, so it fills (critical)
    // and rejects; a third of them give up while waiting.
    {
        let url = gateway.url("/v1/batch");
        let (client, ids) = (client.clone(), Arc::clone(&ids));
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() + Duration::from_millis(500) < until {
                let second = Instant::now();
                let burst: Vec<_> = (0..24)
                    .map(|i| {
                        let (client, url) = (client.clone(), url.clone());
                        let id = ids.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            let headers: &[(&str, &str)] = if i % 3 == 0 {
                                &[("x-fault-delay-ms", "300"), ("x-request-timeout-ms", "150")]
                            } else {
                                &[("x-fault-delay-ms", "300")]
                            };
                            hit(&client, &url, id, headers).await
                        })
                    })
                    .collect();
                for request in burst {
                    statuses.push(request.await.unwrap());
                }
                tokio::time::sleep_until((second + Duration::from_secs(1)).into()).await;
            }
            statuses
        }));
    }
    let mut counts = BTreeMap::new();
    for task in tasks {
        for status in task.await.unwrap() {
            *counts.entry(status).or_insert(0) += 1;
        }
    }
    counts
}

/// Runs `query`; an error unless it returns data (from both canary sides where the row compares
/// them).
async fn check(prometheus: &Prometheus, query: &Query) -> Result<(), String> {
    let result = prometheus.query(&substitute(&query.expr)).await?;
    let series = items(&result);
    if series.is_empty() {
        return Err("no data".into());
    }
    if compares_sides(&query.row) {
        let sides: Vec<&str> = series
            .iter()
            .filter_map(|s| s.get("metric")?.get("otel_scope_cp2_mode")?.as_str())
            .collect();
        for side in ["on", "off"] {
            if !sides.contains(&side) {
                return Err(format!("no series of side {side:?} (sides: {sides:?})"));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_returns_data_from_a_gateway_under_load() {
    let started = Instant::now();
    let dashboard = dashboard();
    let mut queries = queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let from_readme = readme_queries();
    assert!(
        from_readme.len() >= 9,
        "{} README queries",
        from_readme.len()
    );
    queries.extend(from_readme);

    // Retry, deadlines and queue for half the requests (a canary at 50%). Metrics stay on for
    // every request: a metrics flag at 50% would leave the baseline side without any series, so
    // nothing to compare the canary with.
    let gateway = Gateway::start(&[
        ("CP2_ADVANCED_RETRY_ENABLED", "50%"),
        ("CP2_COMPLETE_TIMEOUT_ENABLED", "50%"),
        ("CP2_QUEUE_MANAGEMENT_ENABLED", "50%"),
        ("CP2_OBSERVABILITY_METRICS_ENABLED", "true"),
        // Breakers on, so that their row has data (their transitions are series from the start).
        ("CP2_CIRCUIT_BREAKER_ENABLED", "true"),
        ("GATEWAY_MAX_CONCURRENCY", "8"),
        ("GATEWAY_QUEUE_CAPACITY", "8"),
        ("GATEWAY_RETRY_BASE_MS", "5"),
        ("GATEWAY_FAULT_HEADERS", "true"),
        ("METRICS_TENANT_LABEL_ALLOWLIST", "acme,globex"),
    ]);
    let rules = ops().join("prometheus/rules.yml");
    let prometheus = Prometheus::start(JOB, &gateway.addr.to_string(), &[&rules]).await;

    // The first scrape, so that the load's first requests count in every rate.
    let mut scraped = false;
    while !scraped && started.elapsed() < Duration::from_secs(20) {
        scraped = prometheus
            .query(&format!("up{{job=\"{JOB}\"}} == 1"))
            .await
            .is_ok_and(|r| !items(&r).is_empty());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(scraped, "Prometheus never scraped the gateway");

    let load_started = Instant::now();
    let statuses = load(&gateway, LOAD).await;
    println!(
        "load: {} requests in {:.1?}, by status {statuses:?}",
        statuses.values().sum::<usize>(),
        load_started.elapsed()
    );
    for status in [200, 503, 504] {
        assert!(statuses.contains_key(&status), "no {status} answer");
    }

    // Each query until it returns data; a few seconds of retries cover the last scrape and rule
    // evaluation, which nothing else waits for.
    let mut failing: BTreeMap<usize, String> = BTreeMap::new();
    let mut pending: Vec<usize> = (0..queries.len()).collect();
    let settle = Instant::now() + Duration::from_secs(10);
    loop {
        let mut still = Vec::new();
        for i in pending {
            match check(&prometheus, &queries[i]).await {
                Ok(()) => {
                    failing.remove(&i);
                }
                Err(why) => {
                    failing.insert(i, why);
                    still.push(i);
                }
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The variables' queries too: label_values(SELECTOR, LABEL) has data when
    // count by (LABEL) (SELECTOR) does.
    let mut variables_failing = Vec::new();
    for variable in dashboard
        .get("templating")
        .and_then(|t| t.get("list"))
        .map(items)
        .unwrap_or(&[])
    {
        let Some(definition) = variable.get("definition").and_then(Json::as_str) else {
            continue;
        };
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .expect("variables are label_values(SELECTOR, LABEL)");
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let promql = substitute(&format!("count by ({}) ({selector})", label.trim()));
        if prometheus
            .query(&promql)
            .await
            .map_or(true, |r| items(&r).is_empty())
        {
            variables_failing.push(format!("{definition} ({promql})"));
        }
    }

    // What the load made of the rarer series, for whoever reads a failure.
    for promql in [
        "sum by (reason) (tower_retry_skipped_total)",
        "sum by (reason) (tower_queue_rejections_total)",
        "sum by (where) (tower_deadline_exceeded_total)",
        "max_over_time(tower_queue_status[1m])",
    ] {
        let result = prometheus.query(promql).await.unwrap_or(Json::Null);
        let samples: Vec<String> = items(&result)
            .iter()
            .map(|s| {
                let labels = match s.get("metric") {
                    Some(Json::Object(labels)) => labels
                        .iter()
                        .filter(|(k, _)| *k != "job" && *k != "instance")
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => String::new(),
                };
                let value = s
                    .get("value")
                    .and_then(|v| items(v).get(1))
                    .and_then(Json::as_str)
                    .unwrap_or("?");
                format!("{{{labels}}} {value}")
            })
            .collect();
        println!("{promql}: {}", samples.join("  "));
    }

    let report: Vec<String> = failing
        .iter()
        .map(|(&i, why)| {
            let q = &queries[i];
            format!(
                "[{}] {}: {why}\n    {}",
                q.row,
                q.panel,
                substitute(&q.expr).replace('\n', " ")
            )
        })
        .chain(
            variables_failing
                .iter()
                .map(|v| format!("variable {v}: no data")),
        )
        .collect();
    println!(
        "{} queries of {} panels checked in {:.1?} in all",
        queries.len(),
        panels(&dashboard).len(),
        started.elapsed()
    );
    assert!(
        report.is_empty(),
        "{} of {} dashboard queries return no data:\n{}",
        report.len(),
        queries.len(),
        report.join("\n")
    );
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}
