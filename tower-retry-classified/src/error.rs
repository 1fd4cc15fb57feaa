//! Typed errors: invalid configuration (at build time) and the per-attempt timeout.

use std::fmt;
use std::time::Duration;

/// A configuration that cannot work, rejected when the layer is built.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The per-attempt timeout must be non-zero and below the total retry time.
    AttemptTimeout {
        /// The per-attempt timeout asked for.
        attempt: Duration,
        /// The total retry time in force.
        total: Duration,
    },
    /// The budget window must be between 1 and 60 seconds.
    BudgetWindow(Duration),
    /// The budget ratio must be finite and between 0 and 1000.
    BudgetRatio(f64),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::AttemptTimeout { attempt, total } => write!(
                f,
                "per-attempt timeout {attempt:?} must be non-zero and below the total retry time {total:?}"
            ),
            ConfigError::BudgetWindow(w) => {
                write!(f, "retry budget window {w:?} must be between 1 s and 60 s")
            }
            ConfigError::BudgetRatio(r) => {
                write!(f, "retry budget ratio {r} must be between 0 and 1000")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// One attempt took longer than the per-attempt timeout. Retryable (the next attempt may be
/// faster); returned to the caller when no retry is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptTimeout {
    timeout: Duration,
    attempt: u32,
}

impl AttemptTimeout {
    pub(crate) fn new(timeout: Duration, attempt: u32) -> Self {
        Self { timeout, attempt }
    }

    /// The timeout that ran out.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Which attempt (1 for the first) timed out.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl fmt::Display for AttemptTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempt {} timed out after {:?}",
            self.attempt, self.timeout
        )
    }
}

impl std::error::Error for AttemptTimeout {}

/// A retry's body could not be replayed: the original body failed, or it outgrew the replay
/// buffer while another attempt was already sending it. Only an abandoned attempt sees this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayError {
    pub(crate) kind: &'static str,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body cannot be replayed: {}", self.kind)
    }
}

impl std::error::Error for ReplayError {}

/// The circuit breaker is open: the call was not sent, so that a failing dependency gets time to
/// recover instead of more load. Not worth retrying against the same dependency (the retry
/// layer classifies it as permanent, [`Reason::CIRCUIT_OPEN`](crate::Reason::CIRCUIT_OPEN));
/// [`retry_after`](Self::retry_after) says when the breaker will let a probe through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_after: Duration,
}

impl CircuitOpen {
    pub(crate) fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// How long until the breaker lets a probe through (zero while probes are in flight).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up: the value of a
    /// `Retry-After` header, which never tells a caller to come back too early.
    pub fn retry_after_secs(&self) -> u64 {
        let wait = self.retry_after;
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit open: not sent, next probe in {} ms",
            self.retry_after.as_millis()
        )
    }
}

impl std::error::Error for CircuitOpen {}
