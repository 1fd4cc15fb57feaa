//! Settings: every one an environment variable and the same-named CLI flag.
//!
//! clap reads the raw strings (so `--help` lists every variable with its default); this module
//! validates them into [`Settings`], turning any bad value into a one-line [`ConfigError`] that
//! names the setting. `main` prints it and exits with code 2.

use example_support::settings::{ConfigError, invalid, parse_flag, parse_millis, parse_number};
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use http::{StatusCode, Uri};

use crate::edge::{EdgeLimits, MIN_HEADER_BYTES};
use crate::fault::Faults;

/// The command line, as clap sees it: raw strings, validated by [`Settings::from_args`].
#[derive(Parser, Debug)]
#[command(
    name = "gateway",
    version,
    about = "An HTTP API gateway routing /v1/* to upstream providers through the tower-reliability layers.",
    long_about = None,
)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (printed as `listening on http://ADDR`).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: String,

    /// Worker threads, each serving its own connections on its own runtime; 0: one per core.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_WORKERS",
        default_value = "0"
    )]
    pub workers: String,

    /// Upstream providers, `name=url,...` (http only). Unset: an embedded demo provider.
    #[arg(long, allow_hyphen_values = true, env = "GATEWAY_UPSTREAMS")]
    pub upstreams: Option<String>,

    /// `round_robin`, or `failover` (first healthy provider in order).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_ROUTING",
        default_value = "round_robin"
    )]
    pub routing: String,

    /// Log lines as `text` (for people) or `json` (one object per line, with the request's
    /// trace id, for log pipelines).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: String,

    /// Requests proxied at once (the queue's concurrency).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_MAX_CONCURRENCY",
        default_value = "64"
    )]
    pub max_concurrency: String,

    /// Requests that may wait for a slot; beyond it, 503 at once.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_QUEUE_CAPACITY",
        default_value = "1000"
    )]
    pub queue_capacity: String,

    /// The server's cap on every request's deadline, in milliseconds.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_TIMEOUT_MS",
        default_value = "30000"
    )]
    pub timeout_ms: String,

    /// Budget for connecting to an upstream, in milliseconds.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_CONNECT_TIMEOUT_MS",
        default_value = "5000"
    )]
    pub connect_timeout_ms: String,

    /// Retries after the first attempt.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_RETRY_MAX",
        default_value = "4"
    )]
    pub retry_max: String,

    /// Base of the exponential backoff, in milliseconds (full jitter).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_RETRY_BASE_MS",
        default_value = "100"
    )]
    pub retry_base_ms: String,

    /// Embedded demo provider: base latency in milliseconds (5% of calls take 20 times longer).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_DEMO_LATENCY_MS",
        default_value = "20"
    )]
    pub demo_latency_ms: String,

    /// Embedded demo provider: share of calls answered 503, from 0 to 1.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_DEMO_FAILURE_RATE",
        default_value = "0.2"
    )]
    pub demo_failure_rate: String,

    /// A circuit breaker per provider (`tower-retry-classified`); true or false.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "CP2_CIRCUIT_BREAKER_ENABLED",
        default_value = "false"
    )]
    pub cp2_circuit_breaker_enabled: String,

    /// Inject a status on a share of provider calls: `STATUS@PERCENT`, e.g. `503@10`.
    #[arg(long, allow_hyphen_values = true, env = "GATEWAY_FAULT_ABORT")]
    pub fault_abort: Option<String>,

    /// Delay a share of provider calls: `MILLISECONDS@PERCENT`, e.g. `200@5`.
    #[arg(long, allow_hyphen_values = true, env = "GATEWAY_FAULT_DELAY")]
    pub fault_delay: Option<String>,

    /// Reset a share of provider calls, in percent (as a provider closing the connection).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_FAULT_RESET",
        default_value = "0"
    )]
    pub fault_reset: String,

    /// Honour `x-fault-abort` / `x-fault-delay-ms` request headers (true/1/yes, false/0/no).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_FAULT_HEADERS",
        default_value = "false"
    )]
    pub fault_headers: String,

    /// Client connections open at once over all workers; beyond it a new connection is closed
    /// as soon as it is accepted.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_MAX_CONNECTIONS",
        default_value = "4096"
    )]
    pub max_connections: String,

    /// Time a client has, from a request head's first byte, to send all of it (milliseconds).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_HEADER_READ_TIMEOUT_MS",
        default_value = "10000"
    )]
    pub header_read_timeout_ms: String,

    /// A connection with nothing in flight and no byte read or written for this long is closed
    /// (milliseconds).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_IDLE_TIMEOUT_MS",
        default_value = "60000"
    )]
    pub idle_timeout_ms: String,

    /// Largest request head (HTTP/1) or header list (HTTP/2), in bytes; beyond it, 431.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_MAX_HEADER_BYTES",
        default_value = "65536"
    )]
    pub max_header_bytes: String,

    /// Most header fields in an HTTP/1 request; beyond it, 431.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_MAX_HEADERS",
        default_value = "100"
    )]
    pub max_headers: String,

    /// Largest request body, in bytes; beyond it, 413.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_MAX_BODY_BYTES",
        default_value = "10485760"
    )]
    pub max_body_bytes: String,

    /// HTTP/2 streams open at once on one connection.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_H2_MAX_STREAMS",
        default_value = "100"
    )]
    pub h2_max_streams: String,

    /// HTTP/2 receive window of each stream, in bytes.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_H2_STREAM_WINDOW",
        default_value = "65536"
    )]
    pub h2_stream_window: String,

    /// HTTP/2 receive window of each connection, in bytes.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_H2_CONNECTION_WINDOW",
        default_value = "1048576"
    )]
    pub h2_connection_window: String,

    /// Refuse (400) requests with a `_` in a header name (true/false).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_REJECT_UNDERSCORE_HEADERS",
        default_value = "true"
    )]
    pub reject_underscore_headers: String,

    /// Keep the client's `X-Forwarded-For` (appending the peer) and `Forwarded`; false: replace
    /// them with `X-Forwarded-For: <peer>`.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_TRUST_FORWARDED",
        default_value = "false"
    )]
    pub trust_forwarded: String,

    /// Fair share in the queue: `off`, or `tenant` (by `x-tenant-id`; requests without one
    /// share a key): while requests wait, a tenant holds at most its share of the queue and
    /// tenants are served in turn.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "GATEWAY_FAIR_SHARE_BY",
        default_value = "off"
    )]
    pub fair_share_by: String,

    /// The feature flags and the tenant allowlist, shared with the other example.
    #[command(flatten)]
    pub flags: example_support::settings::FeatureFlags,
}

/// How the router picks a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Each provider in turn, skipping those that keep failing.
    RoundRobin,
    /// The first healthy provider in the configured order.
    Failover,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line; events inside a request carry its `trace_id`.
    Json,
}

/// One upstream provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    /// `http://host:port` plus an optional path prefix without trailing slash: the first
    /// instance's.
    pub base: String,
    /// Every instance's `http://host:port[/prefix]`, `base` first; several are balanced
    /// (`balance`).
    pub instances: Vec<String>,
}

/// The four feature flags (`CP2_*`), as one request sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub retry: bool,
    pub timeout: bool,
    pub queue: bool,
    pub metrics: bool,
}

/// How far each flag is rolled out: the percentage of requests (0 to 100) it applies to.
/// `true` is 100, `false` 0; which requests make up a share is the `canary` module's business.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    pub retry: u8,
    pub timeout: u8,
    pub queue: u8,
    pub metrics: u8,
}

impl Rollout {
    /// The flags of a request whose bucket (0 to 99) is `bucket`: a flag at `N%` is on for
    /// buckets below `N`, so a smaller share's requests are also in every larger share.
    pub fn flags_for(&self, bucket: u8) -> Flags {
        Flags {
            retry: bucket < self.retry,
            timeout: bucket < self.timeout,
            queue: bucket < self.queue,
            metrics: bucket < self.metrics,
        }
    }
}

/// The embedded demo provider's behaviour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Demo {
    pub latency: Duration,
    pub failure_rate: f64,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Worker threads (at least 1; `GATEWAY_WORKERS=0` resolves to the number of cores).
    pub workers: usize,
    /// `None`: start the embedded demo provider.
    pub upstreams: Option<Vec<Upstream>>,
    pub routing: Routing,
    pub log_format: LogFormat,
    pub max_concurrency: usize,
    pub queue_capacity: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry_max: u32,
    pub retry_base: Duration,
    pub demo: Demo,
    /// What the requests in the canary get: every flag rolled out to any share (see `rollout`).
    pub flags: Flags,
    pub rollout: Rollout,
    pub tenant_allowlist: Vec<String>,
    /// Injected faults on provider calls (none by default).
    pub faults: Faults,
    /// A circuit breaker per provider; failover routing skips the open ones.
    pub circuit_breaker: bool,
    /// What the gateway allows clients (connections, time, sizes, header shapes).
    pub edge: EdgeLimits,
    /// Fair share between tenants in the queue (`GATEWAY_FAIR_SHARE_BY=tenant`).
    pub fair_share_by_tenant: bool,
}

/// A CP2 flag: on or off for every request, or on for a whole-number share of them (`10%`).
pub fn parse_rollout(setting: &'static str, value: &str) -> Result<u8, ConfigError> {
    let v = value.trim();
    match v.strip_suffix('%') {
        Some(number) if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            match number.parse::<u8>() {
                Ok(percent) if percent <= 100 => Ok(percent),
                _ => Err(invalid(setting, value, ROLLOUT_EXPECTED)),
            }
        }
        Some(_) => Err(invalid(setting, value, ROLLOUT_EXPECTED)),
        None => parse_flag(setting, value)
            .map(|on| if on { 100 } else { 0 })
            .map_err(|_| invalid(setting, value, ROLLOUT_EXPECTED)),
    }
}

const ROLLOUT_EXPECTED: &str = "true/1/yes, false/0/no, or a share from 0% to 100%";

fn parse_percent(setting: &'static str, value: &str) -> Result<f64, ConfigError> {
    match value.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(invalid(setting, value, "a percentage from 0 to 100")),
    }
}

/// `VALUE@PERCENT`, as the fault settings take it.
fn parse_share<'a>(
    setting: &'static str,
    value: &'a str,
    expected: &str,
) -> Result<(&'a str, f64), ConfigError> {
    let (what, percent) = value
        .split_once('@')
        .ok_or_else(|| invalid(setting, value, expected))?;
    let percent = parse_percent(setting, percent).map_err(|_| invalid(setting, value, expected))?;
    Ok((what.trim(), percent))
}

/// Every setting a user can give, by command-line flag and by the name its errors report: what
/// the property test below and the fuzz target (`fuzz/fuzz_targets/settings.rs`) feed text to.
#[cfg_attr(not(test), allow(dead_code))]
pub const EVERY_SETTING: [(&str, &str); 31] = [
    ("--listen", "GATEWAY_LISTEN"),
    ("--log-format", "GATEWAY_LOG_FORMAT"),
    ("--workers", "GATEWAY_WORKERS"),
    ("--upstreams", "GATEWAY_UPSTREAMS"),
    ("--routing", "GATEWAY_ROUTING"),
    ("--max-concurrency", "GATEWAY_MAX_CONCURRENCY"),
    ("--queue-capacity", "GATEWAY_QUEUE_CAPACITY"),
    ("--timeout-ms", "GATEWAY_TIMEOUT_MS"),
    ("--connect-timeout-ms", "GATEWAY_CONNECT_TIMEOUT_MS"),
    ("--retry-max", "GATEWAY_RETRY_MAX"),
    ("--retry-base-ms", "GATEWAY_RETRY_BASE_MS"),
    ("--demo-latency-ms", "GATEWAY_DEMO_LATENCY_MS"),
    ("--demo-failure-rate", "GATEWAY_DEMO_FAILURE_RATE"),
    ("--cp2-advanced-retry-enabled", "CP2_ADVANCED_RETRY_ENABLED"),
    (
        "--cp2-circuit-breaker-enabled",
        "CP2_CIRCUIT_BREAKER_ENABLED",
    ),
    ("--fault-abort", "GATEWAY_FAULT_ABORT"),
    ("--fault-delay", "GATEWAY_FAULT_DELAY"),
    ("--fault-reset", "GATEWAY_FAULT_RESET"),
    ("--fault-headers", "GATEWAY_FAULT_HEADERS"),
    ("--max-connections", "GATEWAY_MAX_CONNECTIONS"),
    ("--header-read-timeout-ms", "GATEWAY_HEADER_READ_TIMEOUT_MS"),
    ("--idle-timeout-ms", "GATEWAY_IDLE_TIMEOUT_MS"),
    ("--max-header-bytes", "GATEWAY_MAX_HEADER_BYTES"),
    ("--max-headers", "GATEWAY_MAX_HEADERS"),
    ("--max-body-bytes", "GATEWAY_MAX_BODY_BYTES"),
    ("--h2-max-streams", "GATEWAY_H2_MAX_STREAMS"),
    ("--h2-stream-window", "GATEWAY_H2_STREAM_WINDOW"),
    ("--h2-connection-window", "GATEWAY_H2_CONNECTION_WINDOW"),
    (
        "--reject-underscore-headers",
        "GATEWAY_REJECT_UNDERSCORE_HEADERS",
    ),
    ("--trust-forwarded", "GATEWAY_TRUST_FORWARDED"),
    ("--fair-share-by", "GATEWAY_FAIR_SHARE_BY"),
];

/// The edge's limits from their settings; HTTP/2 windows within what the protocol allows
/// (RFC 9113 section 6.9.1: at most 2^31 - 1; a stream window of at least the 65,535 every
/// peer starts with, so that a setting never shrinks one).
fn parse_edge(args: &Args) -> Result<EdgeLimits, ConfigError> {
    const DAY_MS: u64 = 86_400_000;
    const WINDOW_MAX: u32 = (1 << 31) - 1;
    Ok(EdgeLimits {
        max_connections: parse_number(
            "GATEWAY_MAX_CONNECTIONS",
            &args.max_connections,
            1,
            1 << 20,
        )?,
        header_read_timeout: parse_millis(
            "GATEWAY_HEADER_READ_TIMEOUT_MS",
            &args.header_read_timeout_ms,
            1,
            DAY_MS,
        )?,
        idle_timeout: parse_millis("GATEWAY_IDLE_TIMEOUT_MS", &args.idle_timeout_ms, 1, DAY_MS)?,
        max_header_bytes: parse_number(
            "GATEWAY_MAX_HEADER_BYTES",
            &args.max_header_bytes,
            MIN_HEADER_BYTES,
            16 << 20,
        )?,
        max_headers: parse_number("GATEWAY_MAX_HEADERS", &args.max_headers, 1, 10_000)?,
        max_body_bytes: parse_number("GATEWAY_MAX_BODY_BYTES", &args.max_body_bytes, 0, 1 << 40)?,
        h2_max_streams: parse_number("GATEWAY_H2_MAX_STREAMS", &args.h2_max_streams, 1, 10_000)?,
        h2_stream_window: parse_number(
            "GATEWAY_H2_STREAM_WINDOW",
            &args.h2_stream_window,
            65_535,
            WINDOW_MAX,
        )?,
        h2_connection_window: parse_number(
            "GATEWAY_H2_CONNECTION_WINDOW",
            &args.h2_connection_window,
            65_535,
            WINDOW_MAX,
        )?,
        reject_underscore_headers: parse_flag(
            "GATEWAY_REJECT_UNDERSCORE_HEADERS",
            &args.reject_underscore_headers,
        )?,
        trust_forwarded: parse_flag("GATEWAY_TRUST_FORWARDED", &args.trust_forwarded)?,
    })
}

fn parse_faults(args: &Args) -> Result<Faults, ConfigError> {
    const ABORT: &str = "GATEWAY_FAULT_ABORT";
    const DELAY: &str = "GATEWAY_FAULT_DELAY";
    let abort = match args.fault_abort.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(value) => {
            let expected = "STATUS@PERCENT, e.g. 503@10 (a status from 100 to 599)";
            let (status, percent) = parse_share(ABORT, value, expected)?;
            let status = status
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| invalid(ABORT, value, expected))?;
            Some((status, percent))
        }
    };
    let delay = match args.fault_delay.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(value) => {
            let expected = "MILLISECONDS@PERCENT, e.g. 200@5";
            let (ms, percent) = parse_share(DELAY, value, expected)?;
            let ms = parse_number::<u64>(DELAY, ms, 0, 86_400_000)
                .map_err(|_| invalid(DELAY, value, expected))?;
            Some((Duration::from_millis(ms), percent))
        }
    };
    Ok(Faults {
        abort,
        delay,
        reset_percent: parse_percent("GATEWAY_FAULT_RESET", &args.fault_reset)?,
        headers: parse_flag("GATEWAY_FAULT_HEADERS", &args.fault_headers)?,
    })
}

/// The most instances one provider may name.
const MAX_INSTANCES: usize = 16;

/// Parses `name=url[|url...],...`: names unique and non-empty, URLs `http://host[:port][/prefix]`,
/// a provider's instances separated by `|`.
pub fn parse_upstreams(value: &str) -> Result<Vec<Upstream>, ConfigError> {
    const SETTING: &str = "GATEWAY_UPSTREAMS";
    let expected = "comma-separated name=http://host:port entries";
    let mut upstreams: Vec<Upstream> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, url)) = entry.split_once('=') else {
            return Err(invalid(SETTING, value, expected));
        };
        let (name, url) = (name.trim(), url.trim());
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok || upstreams.iter().any(|u| u.name == name) {
            return Err(invalid(
                SETTING,
                value,
                "unique provider names of letters, digits, '-', '_', '.'",
            ));
        }
        // Several instances of one provider: `http://a:1|http://b:2`, each balanced (`balance`).
        let mut instances: Vec<String> = Vec::new();
        for url in url.split('|').map(str::trim) {
            let uri: Uri = url.parse().map_err(|_| invalid(SETTING, value, expected))?;
            let plain_http = uri.scheme_str() == Some("http");
            let has_host = uri.host().is_some_and(|h| !h.is_empty());
            let no_query = uri.query().is_none();
            if !plain_http || !has_host || !no_query {
                return Err(invalid(
                    SETTING,
                    value,
                    "http://host[:port][/prefix] URLs (no https, no query)",
                ));
            }
            let prefix = uri.path().trim_end_matches('/');
            let same_prefix = instances.first().is_none_or(|first| {
                first
                    .parse::<Uri>()
                    .is_ok_and(|f| f.path().trim_end_matches('/') == prefix)
            });
            if !same_prefix || instances.len() == MAX_INSTANCES {
                return Err(invalid(
                    SETTING,
                    value,
                    "at most 16 instances per provider, separated by '|', with one path prefix",
                ));
            }
            instances.push(url.trim_end_matches('/').to_string());
        }
        upstreams.push(Upstream {
            name: name.to_string(),
            base: instances[0].clone(),
            instances,
        });
    }
    if upstreams.is_empty() {
        return Err(invalid(SETTING, value, expected));
    }
    Ok(upstreams)
}

impl Settings {
    /// Validates the raw arguments.
    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        let rollout = Rollout {
            retry: parse_rollout(
                "CP2_ADVANCED_RETRY_ENABLED",
                &args.flags.cp2_advanced_retry_enabled,
            )?,
            timeout: parse_rollout(
                "CP2_COMPLETE_TIMEOUT_ENABLED",
                &args.flags.cp2_complete_timeout_enabled,
            )?,
            queue: parse_rollout(
                "CP2_QUEUE_MANAGEMENT_ENABLED",
                &args.flags.cp2_queue_management_enabled,
            )?,
            metrics: parse_rollout(
                "CP2_OBSERVABILITY_METRICS_ENABLED",
                &args.flags.cp2_observability_metrics_enabled,
            )?,
        };
        let flags = rollout.flags_for(0);
        let listen = args.listen.trim().parse::<SocketAddr>().map_err(|_| {
            invalid(
                "GATEWAY_LISTEN",
                &args.listen,
                "an IP:port address such as 127.0.0.1:8080",
            )
        })?;
        let upstreams = match args.upstreams.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(list) => Some(parse_upstreams(list)?),
        };
        let routing = match args.routing.trim() {
            r if r.eq_ignore_ascii_case("round_robin") => Routing::RoundRobin,
            r if r.eq_ignore_ascii_case("failover") => Routing::Failover,
            _ => {
                return Err(invalid(
                    "GATEWAY_ROUTING",
                    &args.routing,
                    "round_robin or failover",
                ));
            }
        };
        let log_format = match args.log_format.trim() {
            f if f.eq_ignore_ascii_case("text") => LogFormat::Text,
            f if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => {
                return Err(invalid(
                    "GATEWAY_LOG_FORMAT",
                    &args.log_format,
                    "text or json",
                ));
            }
        };
        let failure_rate = match args.demo_failure_rate.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                return Err(invalid(
                    "GATEWAY_DEMO_FAILURE_RATE",
                    &args.demo_failure_rate,
                    "a number from 0 to 1",
                ));
            }
        };
        let faults = parse_faults(args)?;
        let edge = parse_edge(args)?;
        let fair_share_by_tenant = match args.fair_share_by.trim() {
            f if f.eq_ignore_ascii_case("off") => false,
            f if f.eq_ignore_ascii_case("tenant") => true,
            _ => {
                return Err(invalid(
                    "GATEWAY_FAIR_SHARE_BY",
                    &args.fair_share_by,
                    "off or tenant",
                ));
            }
        };
        const DAY_MS: u64 = 86_400_000;
        let workers = match parse_number("GATEWAY_WORKERS", &args.workers, 0, 1024)? {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Ok(Settings {
            listen,
            workers,
            upstreams,
            routing,
            log_format,
            max_concurrency: parse_number(
                "GATEWAY_MAX_CONCURRENCY",
                &args.max_concurrency,
                1,
                1 << 20,
            )?,
            queue_capacity: parse_number(
                "GATEWAY_QUEUE_CAPACITY",
                &args.queue_capacity,
                0,
                1 << 24,
            )?,
            timeout: parse_millis("GATEWAY_TIMEOUT_MS", &args.timeout_ms, 1, DAY_MS)?,
            connect_timeout: parse_millis(
                "GATEWAY_CONNECT_TIMEOUT_MS",
                &args.connect_timeout_ms,
                1,
                DAY_MS,
            )?,
            retry_max: parse_number("GATEWAY_RETRY_MAX", &args.retry_max, 0, 100)?,
            retry_base: parse_millis("GATEWAY_RETRY_BASE_MS", &args.retry_base_ms, 1, DAY_MS)?,
            demo: Demo {
                latency: parse_millis("GATEWAY_DEMO_LATENCY_MS", &args.demo_latency_ms, 0, DAY_MS)?,
                failure_rate,
            },
            flags,
            rollout,
            faults,
            circuit_breaker: parse_flag(
                "CP2_CIRCUIT_BREAKER_ENABLED",
                &args.cp2_circuit_breaker_enabled,
            )?,
            tenant_allowlist: args
                .flags
                .metrics_tenant_label_allowlist
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
            edge,
            fair_share_by_tenant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["gateway"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("clap accepts the raw strings")
    }

    #[test]
    fn flag_grammar_accepts_the_six_words_in_any_case() {
        for yes in ["true", "TRUE", "True", "1", "yes", "YES", " yes "] {
            assert_eq!(parse_flag("F", yes), Ok(true), "{yes:?}");
        }
        for no in ["false", "FALSE", "False", "0", "no", "No"] {
            assert_eq!(parse_flag("F", no), Ok(false), "{no:?}");
        }
    }

    #[test]
    fn flag_grammar_refuses_anything_else_naming_the_flag() {
        for bad in ["", "on", "off", "2", "y", "n", "enabled", "truee", "-1"] {
            let error = parse_flag("CP2_QUEUE_MANAGEMENT_ENABLED", bad).unwrap_err();
            assert_eq!(error.setting, "CP2_QUEUE_MANAGEMENT_ENABLED");
            let line = error.to_string();
            assert!(line.contains("CP2_QUEUE_MANAGEMENT_ENABLED"), "{line}");
            assert!(line.contains("--cp2-queue-management-enabled"), "{line}");
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn defaults_follow_the_issue() {
        let s = Settings::from_args(&args(&[])).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.upstreams, None);
        assert_eq!(s.routing, Routing::RoundRobin);
        assert_eq!(s.max_concurrency, 64);
        assert_eq!(s.queue_capacity, 1000);
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.connect_timeout, Duration::from_secs(5));
        assert_eq!(s.retry_max, 4);
        assert_eq!(s.retry_base, Duration::from_millis(100));
        assert_eq!(s.flags, Flags::default());
        assert!(s.tenant_allowlist.is_empty());
        assert!(!s.faults.any(), "no fault injected unless configured");
    }

    #[test]
    fn faults_are_read_from_their_settings() {
        let args = Args::try_parse_from([
            "gateway",
            "--fault-abort",
            "503@12.5",
            "--fault-delay",
            "200@5",
            "--fault-reset",
            "3",
            "--fault-headers",
            "yes",
        ])
        .unwrap();
        let faults = Settings::from_args(&args).unwrap().faults;
        assert_eq!(faults.abort, Some((StatusCode::SERVICE_UNAVAILABLE, 12.5)));
        assert_eq!(faults.delay, Some((Duration::from_millis(200), 5.0)));
        assert_eq!(faults.reset_percent, 3.0);
        assert!(faults.headers);
    }

    #[test]
    fn every_bad_value_names_its_setting() {
        let cases: &[(&[&str], &str)] = &[
            (&["--listen", "localhost"], "GATEWAY_LISTEN"),
            (&["--routing", "random"], "GATEWAY_ROUTING"),
            (&["--log-format", "xml"], "GATEWAY_LOG_FORMAT"),
            (&["--max-concurrency", "0"], "GATEWAY_MAX_CONCURRENCY"),
            (&["--queue-capacity", "-1"], "GATEWAY_QUEUE_CAPACITY"),
            (&["--timeout-ms", "abc"], "GATEWAY_TIMEOUT_MS"),
            (&["--connect-timeout-ms", "0"], "GATEWAY_CONNECT_TIMEOUT_MS"),
            (&["--retry-max", "1e3"], "GATEWAY_RETRY_MAX"),
            (&["--fault-abort", "503"], "GATEWAY_FAULT_ABORT"),
            (&["--fault-abort", "999@10"], "GATEWAY_FAULT_ABORT"),
            (&["--fault-abort", "503@101"], "GATEWAY_FAULT_ABORT"),
            (&["--fault-delay", "x@5"], "GATEWAY_FAULT_DELAY"),
            (&["--fault-reset", "-1"], "GATEWAY_FAULT_RESET"),
            (&["--fault-headers", "maybe"], "GATEWAY_FAULT_HEADERS"),
            (&["--workers", "2000"], "GATEWAY_WORKERS"),
            (&["--retry-base-ms", ""], "GATEWAY_RETRY_BASE_MS"),
            (&["--demo-failure-rate", "1.5"], "GATEWAY_DEMO_FAILURE_RATE"),
            (&["--upstreams", "a=https://x"], "GATEWAY_UPSTREAMS"),
            (&["--upstreams", "a=not a url"], "GATEWAY_UPSTREAMS"),
            (&["--upstreams", "nameonly"], "GATEWAY_UPSTREAMS"),
            (
                &["--upstreams", "a=http://x,a=http://y"],
                "GATEWAY_UPSTREAMS",
            ),
            (
                &["--cp2-observability-metrics-enabled", "maybe"],
                "CP2_OBSERVABILITY_METRICS_ENABLED",
            ),
        ];
        for (argv, setting) in cases {
            let error = Settings::from_args(&args(argv)).unwrap_err();
            assert_eq!(error.setting, *setting, "{argv:?}");
        }
    }

    #[test]
    fn upstreams_keep_order_and_prefix() {
        let list =
            parse_upstreams("openai=http://127.0.0.1:9000/, local = http://10.0.0.1/api").unwrap();
        assert_eq!(
            list,
            vec![
                Upstream {
                    name: "openai".into(),
                    base: "http://127.0.0.1:9000".into(),
                    instances: vec!["http://127.0.0.1:9000".into()],
                },
                Upstream {
                    name: "local".into(),
                    base: "http://10.0.0.1/api".into(),
                    instances: vec!["http://10.0.0.1/api".into()],
                },
            ]
        );
    }

    #[test]
    fn a_provider_may_name_several_instances_with_one_prefix() {
        let list = parse_upstreams("p=http://a:1/v | http://b:2/v/ |http://c:3/v").unwrap();
        assert_eq!(list[0].base, "http://a:1/v");
        assert_eq!(
            list[0].instances,
            ["http://a:1/v", "http://b:2/v", "http://c:3/v"]
        );
        for bad in [
            "p=http://a:1|http://b:2/other",
            "p=http://a:1|",
            "p=http://a:1|https://b",
        ] {
            assert!(parse_upstreams(bad).is_err(), "{bad}");
        }
        let seventeen: Vec<String> = (0..17).map(|i| format!("http://h:{i}")).collect();
        assert!(parse_upstreams(&format!("p={}", seventeen.join("|"))).is_err());
    }

    #[test]
    fn cp2_flags_take_booleans_or_whole_percentages() {
        for (value, share) in [
            ("true", 100),
            ("false", 0),
            ("yes", 100),
            ("0", 0),
            ("0%", 0),
            ("10%", 10),
            (" 50% ", 50),
            ("100%", 100),
        ] {
            assert_eq!(parse_rollout("CP2_X", value), Ok(share), "{value}");
        }
        for bad in ["110%", "-1%", "ten", "%", "12.5%", "10 %", "1e1%", "256%"] {
            let error = parse_rollout("CP2_ADVANCED_RETRY_ENABLED", bad).unwrap_err();
            assert_eq!(error.setting, "CP2_ADVANCED_RETRY_ENABLED", "{bad}");
        }
    }

    proptest::proptest! {
        /// Every setting, given any text: the gateway starts or refuses with an error naming
        /// that very setting; nothing panics, and parsing allocates within a bound. (Stable
        /// stand-in for a fuzz target: the parsers live in this binary crate, which cargo fuzz
        /// cannot link.)
        #[test]
        fn any_text_in_any_setting_is_taken_or_refused_naming_it(value in "\\PC{0,40}") {
            for (flag, setting) in EVERY_SETTING {
                let Ok(args) = Args::try_parse_from(["gateway", flag, value.as_str()]) else {
                    continue;
                };
                let (parsed, used) = alloc_meter::measure(|| Settings::from_args(&args));
                // A handful of allocations, bounded by the text: a settings struct and, on
                // refusal, a message quoting the value.
                proptest::prop_assert!(used.allocations <= 8, "{setting}: {used:?}");
                proptest::prop_assert!(
                    used.bytes <= 4 * value.len() as u64 + 1024,
                    "{setting}: {used:?}"
                );
                if let Err(error) = parsed {
                    proptest::prop_assert_eq!(error.setting, setting, "{}", error);
                }
            }
        }
    }
}
