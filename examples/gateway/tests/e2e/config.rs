//! Settings: `--help`, the flag grammar and exit code 2 for every invalid value.

use http::StatusCode;

use crate::common::*;

#[test]
fn invalid_flag_values_exit_2_naming_the_flag() {
    for flag in [
        "CP2_ADVANCED_RETRY_ENABLED",
        "CP2_COMPLETE_TIMEOUT_ENABLED",
        "CP2_QUEUE_MANAGEMENT_ENABLED",
        "CP2_OBSERVABILITY_METRICS_ENABLED",
    ] {
        for value in ["maybe", "on", "2"] {
            let (code, stderr) = refuse(&[(flag, value)]);
            assert_eq!(code, Some(2), "{flag}={value}: {stderr}");
            assert!(stderr.contains(flag), "{flag}={value}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        }
    }
    // Every spelling the grammar accepts starts the gateway.
    for value in ["TRUE", "Yes", "1", "false", "NO", "0"] {
        let _gateway = Gateway::start(&[("CP2_QUEUE_MANAGEMENT_ENABLED", value)]);
    }
}

#[test]
fn invalid_settings_exit_2_naming_the_setting() {
    let cases = [
        ("GATEWAY_LISTEN", "localhost:80"),
        ("GATEWAY_UPSTREAMS", "a=ftp://x"),
        ("GATEWAY_UPSTREAMS", "just-a-name"),
        ("GATEWAY_ROUTING", "random"),
        ("GATEWAY_MAX_CONCURRENCY", "many"),
        ("GATEWAY_QUEUE_CAPACITY", "-5"),
        ("GATEWAY_TIMEOUT_MS", "0"),
        ("GATEWAY_CONNECT_TIMEOUT_MS", "1.5"),
        ("GATEWAY_RETRY_MAX", "x"),
        ("GATEWAY_RETRY_BASE_MS", "-1"),
        ("GATEWAY_DEMO_FAILURE_RATE", "2"),
        ("GATEWAY_WORKERS", "-1"),
        ("GATEWAY_WORKERS", "two"),
        ("GATEWAY_FAULT_ABORT", "503@x"),
        ("GATEWAY_FAULT_HEADERS", "sometimes"),
        ("CP2_ADVANCED_RETRY_ENABLED", "110%"),
        ("CP2_COMPLETE_TIMEOUT_ENABLED", "-1%"),
        ("CP2_QUEUE_MANAGEMENT_ENABLED", "ten"),
        ("CP2_OBSERVABILITY_METRICS_ENABLED", "12.5%"),
    ];
    for (setting, value) in cases {
        let (code, stderr) = refuse(&[(setting, value)]);
        assert_eq!(code, Some(2), "{setting}={value}: {stderr}");
        assert!(stderr.contains(setting), "{setting}={value}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn help_lists_every_setting_with_its_default_and_flags_work_like_variables() {
    let output = gateway_command().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for (setting, default) in [
        ("GATEWAY_LISTEN", Some("127.0.0.1:8080")),
        ("GATEWAY_WORKERS", Some("0")),
        ("GATEWAY_UPSTREAMS", None),
        ("GATEWAY_ROUTING", Some("round_robin")),
        ("GATEWAY_MAX_CONCURRENCY", Some("64")),
        ("GATEWAY_QUEUE_CAPACITY", Some("1000")),
        ("GATEWAY_TIMEOUT_MS", Some("30000")),
        ("GATEWAY_CONNECT_TIMEOUT_MS", Some("5000")),
        ("GATEWAY_RETRY_MAX", Some("4")),
        ("GATEWAY_RETRY_BASE_MS", Some("100")),
        ("GATEWAY_DEMO_LATENCY_MS", Some("20")),
        ("GATEWAY_DEMO_FAILURE_RATE", Some("0.2")),
        ("CP2_ADVANCED_RETRY_ENABLED", Some("false")),
        ("CP2_COMPLETE_TIMEOUT_ENABLED", Some("false")),
        ("CP2_QUEUE_MANAGEMENT_ENABLED", Some("false")),
        ("CP2_OBSERVABILITY_METRICS_ENABLED", Some("false")),
        ("METRICS_TENANT_LABEL_ALLOWLIST", None),
        ("GATEWAY_FAULT_ABORT", None),
        ("GATEWAY_FAULT_DELAY", None),
        ("GATEWAY_FAULT_RESET", Some("0")),
        ("GATEWAY_FAULT_HEADERS", Some("false")),
    ] {
        let flag = format!("--{}", setting.to_lowercase().replace('_', "-"));
        let flag = flag.replace("--gateway-", "--");
        let entry = help
            .split("\n      --")
            .find(|e| e.starts_with(&flag[2..]))
            .unwrap_or_else(|| panic!("{flag} missing from --help:\n{help}"));
        assert!(entry.contains(&format!("[env: {setting}")), "{entry}");
        if let Some(default) = default {
            assert!(entry.contains(&format!("[default: {default}]")), "{entry}");
        }
    }
    // The flag form is validated the same way, naming the setting.
    let output = gateway_command()
        .args(["--routing", "random"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("GATEWAY_ROUTING"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_no_setup_on_the_embedded_demo_provider() {
    let gateway = Gateway::start(&[
        ("GATEWAY_DEMO_LATENCY_MS", "1"),
        ("GATEWAY_DEMO_FAILURE_RATE", "0"),
    ]);
    let answer = get(&client(), &gateway.url("/v1/models?x=1")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.body.contains("\"provider\":\"demo\""),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("\"path\":\"/v1/models\""),
        "{}",
        answer.body
    );
}
