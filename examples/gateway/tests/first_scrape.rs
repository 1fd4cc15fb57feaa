//! The first scrape of a freshly started gateway already has every series the operations kit
//! reads: each metric name in the dashboard's queries (`ops/grafana/gateway.json`) and in the
//! rules' expressions (`ops/prometheus/rules.yml`) that the gateway itself exports. A series that
//! appears only with its first event leaves a panel empty and an alert's `rate()` absent instead
//! of 0 until then, which looks the same as a renamed or vanished series.

use gateway_harness as common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value as Json;

/// The whole test stays well under this.
const BUDGET: Duration = Duration::from_secs(30);

/// Names the kit reads that a freshly started gateway honestly cannot export yet, each with why.
/// Everything else must be on the first scrape, and so the test fails on an exempt name that is
/// there (the exemption is no longer needed) or that the kit no longer reads.
const EXEMPT: &[(&str, &str)] = &[
    (
        "http_server_request_duration_seconds",
        "a histogram per route, method and status code: nothing to count before a request is \
         answered (an OpenTelemetry histogram has no point before its first measurement)",
    ),
    (
        "http_client_request_duration_seconds",
        "a histogram per provider call and its status code or error type: none before a call",
    ),
    (
        "tower_retry_backoff_seconds",
        "a histogram of the backoffs slept: no point before the first retry",
    ),
    (
        "tower_queue_wait_seconds",
        "a histogram of admitted requests' waits: no point before the first request",
    ),
    (
        "tower_queue_concurrency_floor",
        "exported by adaptive concurrency limits only (the worker's pools); the gateway's limit \
         is fixed, and QueueConcurrencyLimitAtFloor is not about it",
    ),
];

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_scrape_has_every_series_the_dashboard_and_rules_read() {
    let started = Instant::now();
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    // Two instances of the provider: the balancer's series are read by the dashboard too.
    let second = Upstream::fixed(200, Duration::ZERO).await;
    let list = format!("a={}|{}", upstream.url(), second.url());
    // Breakers on too: the kit reads tower_circuit_*, which exist only with them.
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("CP2_CIRCUIT_BREAKER_ENABLED", "true"),
        ],
    ));
    let scrape = get(&client(), &gateway.url("/metrics")).await;
    assert_eq!(scrape.status, http::StatusCode::OK, "{}", scrape.body);
    assert_eq!(
        upstream.calls() + second.calls(),
        0,
        "no request reached the provider first"
    );

    let exported = exported_names(&scrape.body);
    let mut read = BTreeSet::new();
    for expr in dashboard_exprs().iter().chain(&rule_exprs()) {
        read.extend(metric_names(expr));
    }
    // A parser that found nothing would pass vacuously.
    for sure in [
        "http_server_request_duration_seconds",
        "tower_circuit_state",
    ] {
        assert!(read.contains(sure), "{sure} not found in the kit: {read:?}");
    }
    let stale: Vec<&str> = EXEMPT
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !read.contains(*name) || exported.contains(*name))
        .collect();
    let missing: Vec<&String> = read
        .iter()
        .filter(|name| !exported.contains(*name))
        .filter(|name| !EXEMPT.iter().any(|(exempt, _)| exempt == name))
        .collect();
    assert!(
        missing.is_empty(),
        "read by ops/ but not on the gateway's first scrape: {missing:?}\nfirst scrape:\n{}",
        scrape.body
    );
    assert!(
        stale.is_empty(),
        "exempt, but on the first scrape or no longer read by ops/ (drop them from EXEMPT): \
         {stale:?}"
    );
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

/// Metric names of every sample line of a text exposition, a histogram's `_bucket`, `_sum` and
/// `_count` samples under the histogram's name.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(|name| family(name).to_string())
        .collect()
}

/// The family a sample name belongs to: a histogram's series without their suffix. Counters end
/// in `_total`, so nothing else ends like this.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// Every panel query of the dashboard, inside collapsed rows too.
fn dashboard_exprs() -> Vec<String> {
    fn walk(panels: &[Json], out: &mut Vec<String>) {
        for panel in panels {
            walk(
                panel
                    .get("panels")
                    .and_then(Json::as_array)
                    .map_or(&[], Vec::as_slice),
                out,
            );
            for target in panel
                .get("targets")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(expr) = target.get("expr").and_then(Json::as_str) {
                    out.push(expr.to_string());
                }
            }
        }
    }
    let path = ops().join("grafana/gateway.json");
    let text = std::fs::read_to_string(&path).expect("ops/grafana/gateway.json");
    let dashboard: Json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    walk(
        dashboard
            .get("panels")
            .and_then(Json::as_array)
            .map_or(&[], Vec::as_slice),
        &mut out,
    );
    assert!(!out.is_empty(), "no panel query in the dashboard");
    out
}

/// Every rule's `expr:` in rules.yml, read as text (no YAML parser among the dependencies): the
/// value on the key's line, unless it is a block indicator (`|`, `|-`, `>`), and the lines
/// indented deeper than the key that follow (a block, or a plain value's continuation).
fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(ops().join("prometheus/rules.yml"))
        .expect("ops/prometheus/rules.yml");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        let mut expr = vec![if value.starts_with(['|', '>']) {
            ""
        } else {
            value.trim_matches(['"', '\''])
        }];
        let indent = indentation(line);
        expr.extend(
            lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indentation(l) > indent),
        );
        out.push(expr.join("\n"));
    }
    assert!(out.len() >= 20, "expressions in rules.yml: {out:?}");
    out
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// PromQL functions and aggregation operators: an identifier followed by `(` or by a `by` /
/// `without` clause is one of these, never a metric.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names, which are not metrics.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Binary operators and modifiers spelled as words.
const WORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

/// The metric names a PromQL expression selects, histograms' `_bucket`, `_sum` and `_count`
/// under the histogram's name. Skipped: label matchers (`{...}`), ranges (`[...]`), strings,
/// numbers and durations, Grafana variables (`$job`, `${route}`), functions and aggregations,
/// label lists after `by`, `on`, ..., and recorded series (`level:metric:operations`, with a
/// ':'), which the rules make, not the gateway.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = after_string(&chars, i);
        } else if c == '{' || c == '[' {
            i = after_group(&chars, i);
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = after_group(&chars, i);
            } else {
                i = after_word(&chars, i);
            }
        } else if c.is_ascii_digit() || c == '.' {
            i = after_word(&chars, i);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let end = after_word(&chars, i);
            let word: String = chars[i..end].iter().collect();
            let mut next = end;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            i = end;
            if LABEL_LISTS.contains(&word.as_str()) {
                if called {
                    i = after_group(&chars, next);
                }
            } else if called || WORDS.contains(&word.as_str()) {
                // A function, or an operator word.
            } else if AGGREGATIONS.contains(&word.as_str()) {
                // `sum by (job) (...)`: the clause comes before the parenthesis.
            } else if !word.contains(':') {
                names.push(family(&word).to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The index after the word starting at `start` (letters, digits, '_', ':', and '.' for
/// numbers such as `14.4` or `1e-3`'s mantissa).
fn after_word(chars: &[char], start: usize) -> usize {
    let mut i = start;
    while i < chars.len()
        && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '.'))
    {
        i += 1;
    }
    i
}

/// The index after the string starting with the quote at `start`.
fn after_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// The index after the group opened at `start` (`{`, `[` or `(`), strings inside skipped:
/// `{http_route="/v1/{*path}"}` ends at its last brace.
fn after_group(chars: &[char], start: usize) -> usize {
    let (open, close) = match chars[start] {
        '{' => ('{', '}'),
        '[' => ('[', ']'),
        _ => ('(', ')'),
    };
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = after_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

#[test]
fn metric_names_are_the_selected_series_only() {
    let expr = r#"
        (
            sum by (job, otel_scope_cp2_mode) (rate(http_server_request_duration_seconds_count{http_route="/v1/{*path}", code=~"5.."}[5m]))
          or
            0 * job_mode:gateway_http_requests:rate5m
        ) / ignoring (le) group_left
        histogram_quantile(0.99, sum by (le) (rate(tower_queue_wait_seconds_bucket{job="$job"}[$__rate_interval])))
        and on (job) max without (instance) (tower_circuit_state offset 5m) > bool 14.4 * 1e-3
        # a comment naming not_a_metric
        - increase(tower_circuit_transitions_total{to="open"}[${window}])
    "#;
    assert_eq!(
        metric_names(expr),
        [
            "http_server_request_duration_seconds",
            "tower_queue_wait_seconds",
            "tower_circuit_state",
            "tower_circuit_transitions_total",
        ]
    );
}
