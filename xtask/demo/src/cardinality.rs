//! `xtask-demo cardinality URL [--max-series N] [--max-values-per-label N]` (`cargo xtask
//! cardinality ...`): the label cardinality check. Scrapes a `/metrics` endpoint, prints the series of each metric and the
//! distinct values of each label, and fails when either passes its limit, so a label that
//! lets ids, paths or tenants through is caught before Prometheus pays for it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::exposition::parse_metrics;
use crate::setup::{http_client, http_get, runtime};

/// What one metric or one label may reach before the check fails.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Series of one metric name (each `_bucket`, `_sum` and `_count` counts on its own).
    pub max_series: usize,
    /// Distinct values of one label across all metrics.
    pub max_values_per_label: usize,
}

impl Default for Limits {
    /// 2000 series: OpenTelemetry's default cardinality limit per instrument, and
    /// tower-metrics-layer's series cache. 100 values: far above any label the project records
    /// (methods, status codes, routes, allowlisted tenants, bucket bounds).
    fn default() -> Self {
        Self {
            max_series: 2000,
            max_values_per_label: 100,
        }
    }
}

/// Series per metric and values per label of one scrape.
#[derive(Debug, Default)]
pub struct Report {
    pub series: BTreeMap<String, usize>,
    pub values: BTreeMap<String, BTreeSet<String>>,
}

impl Report {
    pub fn of(text: &str) -> Report {
        let mut report = Report::default();
        for sample in parse_metrics(text) {
            for (label, value) in sample.pairs() {
                report.values.entry(label).or_default().insert(value);
            }
            *report.series.entry(sample.name).or_default() += 1;
        }
        report
    }

    /// Every limit passed, one line each; empty when within limits.
    pub fn breaches(&self, limits: Limits) -> Vec<String> {
        let series = self
            .series
            .iter()
            .filter(|(_, n)| **n > limits.max_series)
            .map(|(metric, n)| format!("{metric}: {n} series (limit {})", limits.max_series));
        let values = self
            .values
            .iter()
            .filter(|(_, v)| v.len() > limits.max_values_per_label)
            .map(|(label, v)| {
                format!(
                    "label {label}: {} values (limit {})",
                    v.len(),
                    limits.max_values_per_label
                )
            });
        series.chain(values).collect()
    }

    /// Two tables, largest first: series per metric, values per label.
    pub fn table(&self) -> String {
        let mut out = String::from("| metric | series |\n|---|---|\n");
        let mut series: Vec<_> = self.series.iter().collect();
        series.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (metric, n) in series {
            let _ = writeln!(out, "| {metric} | {n} |");
        }
        out.push_str("\n| label | distinct values | examples |\n|---|---|---|\n");
        let mut labels: Vec<_> = self.values.iter().collect();
        labels.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        for (label, values) in labels {
            let examples: Vec<_> = values.iter().take(3).map(String::as_str).collect();
            let _ = writeln!(
                out,
                "| {label} | {} | {} |",
                values.len(),
                examples.join(", ")
            );
        }
        out
    }
}

/// Scrapes `url` (`http://host:port/path`; `/metrics` when it has no path).
pub async fn scrape(url: &str) -> Result<Report, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}`: only http:// URLs"))?;
    let url = if rest.contains('/') {
        url.to_string()
    } else {
        format!("{url}/metrics")
    };
    let text = http_get(&http_client(), &url)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok(Report::of(&text))
}

pub fn run(args: &[String]) -> Result<(), String> {
    let mut url = None;
    let mut limits = Limits::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--max-series" => limits.max_series = number("--max-series")?,
            "--max-values-per-label" => {
                limits.max_values_per_label = number("--max-values-per-label")?
            }
            other if url.is_none() && !other.starts_with("--") => url = Some(other.to_string()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let url = url
        .ok_or("usage: cargo xtask cardinality URL [--max-series N] [--max-values-per-label N]")?;
    let report = runtime()?.block_on(scrape(&url))?;
    print!("{}", report.table());
    let breaches = report.breaches(limits);
    if breaches.is_empty() {
        println!(
            "\nwithin limits: at most {} series per metric, {} values per label",
            limits.max_series, limits.max_values_per_label
        );
        Ok(())
    } else {
        Err(format!(
            "cardinality over its limits:\n  {}",
            breaches.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "# TYPE x counter\n\
        x_total{route=\"/a\",tenant=\"acme\"} 1\n\
        x_total{route=\"/b\",tenant=\"other\"} 2\n\
        x_total{route=\"/c\",tenant=\"a \\\"quoted\\\" one\"} 3\n\
        y 4\n";

    #[test]
    fn counts_series_per_metric_and_values_per_label() {
        let report = Report::of(SCRAPE);
        assert_eq!(report.series["x_total"], 3);
        assert_eq!(report.series["y"], 1);
        assert_eq!(report.values["route"].len(), 3);
        assert!(report.values["tenant"].contains("a \"quoted\" one"));
        assert!(report.table().contains("| x_total | 3 |"));
    }

    #[test]
    fn breaches_name_what_passed_its_limit() {
        let report = Report::of(SCRAPE);
        assert!(report.breaches(Limits::default()).is_empty());
        let tight = Limits {
            max_series: 2,
            max_values_per_label: 2,
        };
        assert_eq!(
            report.breaches(tight),
            [
                "x_total: 3 series (limit 2)",
                "label route: 3 values (limit 2)",
                "label tenant: 3 values (limit 2)",
            ]
        );
    }
}
