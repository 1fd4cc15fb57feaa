//! Settings: every one an environment variable and the same-named CLI flag, as in the gateway.
//!
//! clap reads raw strings (so `--help` lists every variable with its default); this module
//! validates them into [`Settings`], turning any bad value into a one-line [`ConfigError`] that
//! names the setting. `main` prints it and exits with code 2.

use example_support::settings::{ConfigError, invalid, parse_flag, parse_millis, parse_number};
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// The command line, as clap sees it: raw strings, validated by [`Settings::from_args`].
#[derive(Parser, Debug)]
#[command(
    name = "worker",
    version,
    about = "A job worker consuming JSON jobs from NATS and running their steps through the tower-reliability layers.",
    long_about = None,
)]
pub struct Args {
    /// NATS server to consume from (core NATS, plain TCP).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "WORKER_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,

    /// Subject the jobs are published (requested) on.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "WORKER_SUBJECT",
        default_value = "jobs"
    )]
    pub subject: String,

    /// Queue group: workers in the same group share the subject, each job going to one of them.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "WORKER_QUEUE_GROUP",
        default_value = "workers"
    )]
    pub queue_group: String,

    /// Address of the HTTP endpoint serving `/metrics` and `/healthz`; port 0 picks a free port
    /// (printed as `listening on http://ADDR` once the worker consumes).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "WORKER_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub listen: String,

    /// Resource pools, `name=capacity/concurrency,...`: at most `concurrency` jobs of the pool
    /// run at once, at most `capacity` wait; beyond that a job is answered `overloaded` at once.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "WORKER_POOLS",
        default_value = "cpu=1000/10,gpu=100/2,io=500/20"
    )]
    pub pools: String,

    /// Pool of jobs that name none.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "WORKER_DEFAULT_POOL",
        default_value = "cpu"
    )]
    pub default_pool: String,

    /// The worker's cap on every job's deadline, in milliseconds.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "WORKER_TIMEOUT_MS",
        default_value = "30000"
    )]
    pub timeout_ms: String,

    /// Budget for connecting to a provider, in milliseconds.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "WORKER_CONNECT_TIMEOUT_MS",
        default_value = "5000"
    )]
    pub connect_timeout_ms: String,

    /// Retries of an `http_call` after its first attempt.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "WORKER_RETRY_MAX",
        default_value = "4"
    )]
    pub retry_max: String,

    /// Base of the exponential backoff, in milliseconds (full jitter).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "WORKER_RETRY_BASE_MS",
        default_value = "100"
    )]
    pub retry_base_ms: String,

    /// Directory that `fs_read` / `fs_write` paths are relative to; no path may leave it.
    /// Unset: a directory `worker-fs` under the system's temporary directory.
    #[arg(long, allow_hyphen_values = true, env = "WORKER_FS_ROOT")]
    pub fs_root: Option<String>,

    /// This worker's id, in every reply (`"worker": ID`) so a caller can tell the workers of a
    /// queue group apart. Unset: `worker-PID`.
    #[arg(long, allow_hyphen_values = true, env = "WORKER_ID")]
    pub id: Option<String>,

    /// The feature flags and the tenant allowlist, shared with the other example.
    #[command(flatten)]
    pub flags: example_support::settings::FeatureFlags,
}

/// The four feature flags (`CP2_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub retry: bool,
    pub timeout: bool,
    pub queue: bool,
    pub metrics: bool,
}

/// One resource pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub capacity: usize,
    pub concurrency: usize,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub id: String,
    pub nats_url: String,
    pub subject: String,
    pub queue_group: String,
    pub listen: SocketAddr,
    pub pools: Vec<Pool>,
    pub default_pool: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry_max: u32,
    pub retry_base: Duration,
    pub fs_root: std::path::PathBuf,
    pub flags: Flags,
    pub tenant_allowlist: Vec<String>,
}

/// A NATS subject or queue group: non-empty, no blanks, no wildcard.
fn parse_token(setting: &'static str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    if v.is_empty()
        || v.len() > 256
        || v.bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'*' || b == b'>' || b.is_ascii_control())
        || v.starts_with('.')
        || v.ends_with('.')
        || v.contains("..")
    {
        return Err(invalid(
            setting,
            value,
            "a NATS subject: dot-separated tokens without blanks or wildcards",
        ));
    }
    Ok(v.to_string())
}

/// A worker id: 1 to 128 bytes, no blanks or control characters (it is a JSON string and a
/// log field). Unset: `worker-PID`, unique among the workers of one machine.
fn parse_id(value: Option<&str>) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok(format!("worker-{}", std::process::id()));
    };
    let id = value.trim();
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "WORKER_ID",
            value,
            "1 to 128 bytes without blanks or control characters",
        ));
    }
    Ok(id.to_string())
}

/// A pool name: 1 to 32 of `a-z 0-9 _ -`.
fn valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Most pools the worker runs (each is a label value and a queue).
pub const MAX_POOLS: usize = 16;

pub fn parse_pools(setting: &'static str, value: &str) -> Result<Vec<Pool>, ConfigError> {
    const EXPECTED: &str = "name=capacity/concurrency,... (names a-z0-9_-, capacity 0 to 1000000, concurrency 1 to 10000, at most 16 pools, no name twice)";
    let mut pools: Vec<Pool> = Vec::new();
    for entry in value.split(',') {
        let entry = entry.trim();
        let (name, limits) = entry
            .split_once('=')
            .ok_or_else(|| invalid(setting, value, EXPECTED))?;
        let (capacity, concurrency) = limits
            .split_once('/')
            .ok_or_else(|| invalid(setting, value, EXPECTED))?;
        let name = name.trim();
        let capacity = parse_number::<usize>(setting, capacity, 0, 1_000_000)
            .map_err(|_| invalid(setting, value, EXPECTED))?;
        let concurrency = parse_number::<usize>(setting, concurrency, 1, 10_000)
            .map_err(|_| invalid(setting, value, EXPECTED))?;
        if !valid_pool_name(name) || pools.iter().any(|p| p.name == name) {
            return Err(invalid(setting, value, EXPECTED));
        }
        pools.push(Pool {
            name: name.to_string(),
            capacity,
            concurrency,
        });
    }
    if pools.is_empty() || pools.len() > MAX_POOLS {
        return Err(invalid(setting, value, EXPECTED));
    }
    Ok(pools)
}

impl Settings {
    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        let nats_url = args.nats_url.trim();
        if !nats_url.starts_with("nats://") || nats_url.len() <= "nats://".len() {
            return Err(invalid(
                "WORKER_NATS_URL",
                &args.nats_url,
                "nats://host:port (plain TCP)",
            ));
        }
        let listen = args.listen.trim().parse().map_err(|_| {
            invalid(
                "WORKER_LISTEN",
                &args.listen,
                "an address such as 127.0.0.1:9090",
            )
        })?;
        let pools = parse_pools("WORKER_POOLS", &args.pools)?;
        let default_pool = args.default_pool.trim().to_string();
        if !pools.iter().any(|p| p.name == default_pool) {
            return Err(invalid(
                "WORKER_DEFAULT_POOL",
                &args.default_pool,
                "the name of one of WORKER_POOLS",
            ));
        }
        let fs_root = match &args.fs_root {
            Some(root) if root.trim().is_empty() => {
                return Err(invalid("WORKER_FS_ROOT", root, "a directory"));
            }
            Some(root) => std::path::PathBuf::from(root.trim()),
            None => std::env::temp_dir().join("worker-fs"),
        };
        let tenant_allowlist = args
            .flags
            .metrics_tenant_label_allowlist
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Settings {
            id: parse_id(args.id.as_deref())?,
            nats_url: nats_url.to_string(),
            subject: parse_token("WORKER_SUBJECT", &args.subject)?,
            queue_group: parse_token("WORKER_QUEUE_GROUP", &args.queue_group)?,
            listen,
            pools,
            default_pool,
            timeout: parse_millis("WORKER_TIMEOUT_MS", &args.timeout_ms, 1, 3_600_000)?,
            connect_timeout: parse_millis(
                "WORKER_CONNECT_TIMEOUT_MS",
                &args.connect_timeout_ms,
                1,
                600_000,
            )?,
            retry_max: parse_number("WORKER_RETRY_MAX", &args.retry_max, 0, 100)?,
            retry_base: parse_millis("WORKER_RETRY_BASE_MS", &args.retry_base_ms, 1, 60_000)?,
            fs_root,
            flags: Flags {
                retry: parse_flag(
                    "CP2_ADVANCED_RETRY_ENABLED",
                    &args.flags.cp2_advanced_retry_enabled,
                )?,
                timeout: parse_flag(
                    "CP2_COMPLETE_TIMEOUT_ENABLED",
                    &args.flags.cp2_complete_timeout_enabled,
                )?,
                queue: parse_flag(
                    "CP2_QUEUE_MANAGEMENT_ENABLED",
                    &args.flags.cp2_queue_management_enabled,
                )?,
                metrics: parse_flag(
                    "CP2_OBSERVABILITY_METRICS_ENABLED",
                    &args.flags.cp2_observability_metrics_enabled,
                )?,
            },
            tenant_allowlist,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["worker"];
        argv.extend_from_slice(args);
        Settings::from_args(&Args::try_parse_from(argv).expect("clap accepts raw strings"))
    }

    #[test]
    fn defaults_are_the_briefs_pools() {
        // Flags given explicitly so the test does not depend on the environment.
        let s = settings(&["--pools", "cpu=1000/10,gpu=100/2,io=500/20"]).unwrap();
        let pools: Vec<_> = s
            .pools
            .iter()
            .map(|p| (p.name.as_str(), p.capacity, p.concurrency))
            .collect();
        assert_eq!(pools, [("cpu", 1000, 10), ("gpu", 100, 2), ("io", 500, 20)]);
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (flag, value, setting) in [
            ("--pools", "cpu=10", "WORKER_POOLS"),
            ("--pools", "cpu=10/0", "WORKER_POOLS"),
            ("--pools", "cpu=1/1,cpu=2/2", "WORKER_POOLS"),
            ("--pools", "CPU=1/1", "WORKER_POOLS"),
            ("--default-pool", "tpu", "WORKER_DEFAULT_POOL"),
            ("--timeout-ms", "0", "WORKER_TIMEOUT_MS"),
            ("--retry-max", "-1", "WORKER_RETRY_MAX"),
            ("--subject", "jobs.>", "WORKER_SUBJECT"),
            ("--nats-url", "http://x", "WORKER_NATS_URL"),
            ("--listen", "nowhere", "WORKER_LISTEN"),
            ("--id", " ", "WORKER_ID"),
            ("--id", "a b", "WORKER_ID"),
            (
                "--cp2-queue-management-enabled",
                "maybe",
                "CP2_QUEUE_MANAGEMENT_ENABLED",
            ),
        ] {
            let error = settings(&[flag, value]).expect_err(value);
            assert_eq!(error.setting, setting, "{flag} {value}");
        }
    }

    #[test]
    fn the_id_defaults_to_the_pid() {
        let s = settings(&["--pools", "cpu=1/1"]).unwrap();
        if std::env::var_os("WORKER_ID").is_none() {
            assert_eq!(s.id, format!("worker-{}", std::process::id()));
        }
        assert_eq!(settings(&["--id", " w-1 "]).unwrap().id, "w-1");
    }

    #[test]
    fn flags_take_the_gateways_grammar() {
        assert!(parse_flag("X", " YES ").unwrap());
        assert!(!parse_flag("X", "0").unwrap());
        assert!(parse_flag("X", "10%").is_err());
    }
}
