//! The settings grammar the example programs share: one error for any refused value, the flag,
//! number and millisecond parsers, and the command line's error exit.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

/// The four feature flags and the tenant-label allowlist, which both programs take under the
/// same names (`#[command(flatten)]` into a program's own arguments). Values stay text here:
/// each program parses them with its own grammar (the gateway also takes a share, `10%`).
#[derive(clap::Args, Clone, Debug)]
pub struct FeatureFlags {
    /// Classified retries on outgoing calls: true/1/yes or false/0/no (the gateway also takes
    /// a share of requests such as `10%`).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "CP2_ADVANCED_RETRY_ENABLED",
        default_value = "false"
    )]
    pub cp2_advanced_retry_enabled: String,

    /// Deadlines: read, cap, enforce and propagate; true/false (or a share, gateway).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "CP2_COMPLETE_TIMEOUT_ENABLED",
        default_value = "false"
    )]
    pub cp2_complete_timeout_enabled: String,

    /// Bounded queues with admission control; true/false (or a share, gateway).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "CP2_QUEUE_MANAGEMENT_ENABLED",
        default_value = "false"
    )]
    pub cp2_queue_management_enabled: String,

    /// Metrics and GET /metrics; true/false (or a share, gateway).
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "CP2_OBSERVABILITY_METRICS_ENABLED",
        default_value = "false"
    )]
    pub cp2_observability_metrics_enabled: String,

    /// Tenants allowed as the `tenant` metric label, comma-separated; others become `other`.
    #[arg(
        long,
        allow_hyphen_values = true,
        env = "METRICS_TENANT_LABEL_ALLOWLIST",
        default_value = ""
    )]
    pub metrics_tenant_label_allowlist: String,
}

/// Exit code for any invalid setting or argument.
pub const EXIT_INVALID: u8 = 2;

/// A setting with a value the program refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable (and, lower-cased with dashes and without the program's prefix,
    /// the CLI flag).
    pub setting: &'static str,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = self.setting.to_ascii_lowercase().replace('_', "-");
        // The programs' environment prefixes; their flags go without them.
        let flag = ["gateway-", "worker-"]
            .iter()
            .find_map(|prefix| flag.strip_prefix(prefix))
            .unwrap_or(&flag);
        write!(
            f,
            "invalid {} (--{flag}): {:?}: expected {}",
            self.setting, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// The error for `value` of `setting`, which should have been `expected`.
pub fn invalid(setting: &'static str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// The flag grammar: true/1/yes and false/0/no in any case, surrounding blanks ignored.
pub fn parse_flag(setting: &'static str, value: &str) -> Result<bool, ConfigError> {
    let v = value.trim();
    if ["true", "1", "yes"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
    {
        Ok(true)
    } else if ["false", "0", "no"]
        .iter()
        .any(|f| v.eq_ignore_ascii_case(f))
    {
        Ok(false)
    } else {
        Err(invalid(setting, value, "true/1/yes or false/0/no"))
    }
}

/// A whole number from `min` to `max`, surrounding blanks ignored.
pub fn parse_number<T>(setting: &'static str, value: &str, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    match value.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(invalid(
            setting,
            value,
            format!("a whole number from {min} to {max}"),
        )),
    }
}

/// Whole milliseconds from `min` to `max`.
pub fn parse_millis(
    setting: &'static str,
    value: &str,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    parse_number(setting, value, min, max).map(Duration::from_millis)
}

/// Parses the command line (and the environment clap reads), or says why not: `Err` carries the
/// exit code, after printing help or version (success) or the first line of clap's message,
/// which names the flag, prefixed by `program` (exit 2).
pub fn parse_args<A: clap::Parser>(program: &str) -> Result<A, ExitCode> {
    A::try_parse().map_err(|error| {
        use clap::error::ErrorKind;
        if matches!(
            error.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
        ) {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        // clap's own message spans several lines; keep the first, which names the flag.
        let rendered = error.to_string();
        let first = rendered.lines().next().unwrap_or("invalid arguments");
        eprintln!("{program}: {}", first.trim_start_matches("error: "));
        ExitCode::from(EXIT_INVALID)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_name_the_setting_without_the_programs_prefix() {
        let error = parse_flag("GATEWAY_TRACE", "maybe").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid GATEWAY_TRACE (--trace): \"maybe\": expected true/1/yes or false/0/no"
        );
        let error = parse_number("WORKER_POOL_SIZE", "0", 1u32, 8).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid WORKER_POOL_SIZE (--pool-size): \"0\": expected a whole number from 1 to 8"
        );
        let error = parse_flag("CP2_QUEUE_ENABLED", "x").unwrap_err();
        assert!(error.to_string().contains("(--cp2-queue-enabled)"));
    }

    #[test]
    fn the_grammar() {
        assert_eq!(parse_flag("X", " Yes "), Ok(true));
        assert_eq!(parse_flag("X", "0"), Ok(false));
        assert_eq!(
            parse_millis("X", "250", 1, 1000),
            Ok(Duration::from_millis(250))
        );
        assert!(parse_millis("X", "1001", 1, 1000).is_err());
    }
}
