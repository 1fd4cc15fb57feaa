//! The gateway's environment as the benchmark starts it: which flags are on, where it sends
//! requests. Below `run` and `instructions`, which both start gateways.

pub(crate) fn gateway_env(
    upstream: &str,
    flags_on: &[&str],
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("GATEWAY_LISTEN", "127.0.0.1:0".to_string()),
        ("GATEWAY_UPSTREAMS", format!("bench={upstream}")),
        ("RUST_LOG", "error".to_string()),
    ];
    for flag in ALL_FLAGS {
        env.push((flag, flags_on.contains(&flag).to_string()));
    }
    env.extend(extra.iter().cloned());
    env
}

pub(crate) const ALL_FLAGS: [&str; 4] = [
    "CP2_ADVANCED_RETRY_ENABLED",
    "CP2_COMPLETE_TIMEOUT_ENABLED",
    "CP2_QUEUE_MANAGEMENT_ENABLED",
    "CP2_OBSERVABILITY_METRICS_ENABLED",
];
