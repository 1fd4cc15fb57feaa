//! The operations kit's Prometheus rules (`ops/prometheus/rules.yml`): `promtool check rules`
//! passes, `promtool test rules` passes on the unit tests in `ops/prometheus/tests/`, and every
//! alert has a test in which it fires and one in which it does not.
//!
//! Needs `promtool` (Debian's `prometheus` package; `.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/prometheus")
}

fn rules() -> PathBuf {
    ops().join("rules.yml")
}

/// The unit test files, in name order.
fn unit_tests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ops().join("tests"))
        .expect("ops/prometheus/tests exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no unit tests in ops/prometheus/tests");
    files
}

/// Runs promtool with `args`; panics with its output unless it succeeds.
fn promtool(args: &[&str], files: &[PathBuf]) -> String {
    let binary = ["/usr/bin/promtool", "promtool"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect(
            "promtool is not installed: install Debian's `prometheus` package \
             (apt-get install prometheus; .ci/run does)",
        );
    let output = Command::new(binary)
        .args(args)
        .args(files)
        .output()
        .expect("run promtool");
    let mut report = String::from_utf8_lossy(&output.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{report}",
        args.join(" "),
        output.status
    );
    report
}

#[test]
fn rules_pass_promtool_check() {
    let report = promtool(&["check", "rules"], &[rules()]);
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn rule_unit_tests_pass() {
    promtool(&["test", "rules"], &unit_tests());
}

/// The value of `key: value` on a YAML line, if the line is that key.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim_start().trim_start_matches("- ");
    let value = rest.strip_prefix(key)?.strip_prefix(':')?;
    Some(value.trim().trim_matches('"'))
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test() {
    let rules = std::fs::read_to_string(rules()).unwrap();
    let mut alerts: Vec<&str> = rules.lines().filter_map(|l| value_of(l, "alert")).collect();
    alerts.sort_unstable();
    alerts.dedup();
    assert!(alerts.len() >= 8, "alerts in rules.yml: {alerts:?}");

    // In an alert_rule_test, `alertname:` is followed by `exp_alerts:`, `[]` when the alert
    // must not fire, a list of alerts when it must.
    let mut firing = Vec::new();
    let mut quiet = Vec::new();
    for file in unit_tests() {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = value_of(line, "alertname") else {
                continue;
            };
            let expected = lines
                .get(i + 1)
                .and_then(|l| value_of(l, "exp_alerts"))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: `alertname: {name}` is not followed by `exp_alerts:`",
                        file.display()
                    )
                });
            if expected == "[]" {
                quiet.push(name.to_string());
            } else {
                firing.push(name.to_string());
            }
        }
    }
    let mut missing = Vec::new();
    for alert in &alerts {
        if !firing.iter().any(|a| a == alert) {
            missing.push(format!("{alert}: no test in which it fires"));
        }
        if !quiet.iter().any(|a| a == alert) {
            missing.push(format!("{alert}: no test in which it stays quiet"));
        }
    }
    for tested in firing.iter().chain(&quiet) {
        if !alerts.contains(&tested.as_str()) {
            missing.push(format!("{tested}: tested, but not in rules.yml"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
