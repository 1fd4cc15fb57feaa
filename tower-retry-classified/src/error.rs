//! Typed errors: invalid configuration (at build time) and the per-attempt timeout.

use std::fmt;
use std::time::Duration;

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
    #[cfg_attr(not(feature = "breaker"), allow(dead_code))]
    pub(crate) fn new(retry_after: Duration) -> Self {
        static REGISTER: std::sync::Once = std::sync::Once::new();
        REGISTER.call_once(tower_reliability_core::register::<CircuitOpen>);
        Self { retry_after }
    }

    /// How long until the breaker lets a probe through (zero while probes are in flight).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
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

/// 503 with `Retry-After` (the time until a probe, in whole seconds rounded up) and
/// `x-overloaded`, so retry layers above leave it alone; gRPC `UNAVAILABLE` (14) with
/// `grpc-retry-pushback-ms`.
impl tower_reliability_core::Rejection for CircuitOpen {
    fn http_status(&self) -> http::StatusCode {
        http::StatusCode::SERVICE_UNAVAILABLE
    }

    fn grpc_code(&self) -> u8 {
        tower_reliability_core::grpc_code::UNAVAILABLE
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(self.retry_after)
    }

    fn overloaded(&self) -> bool {
        true
    }
}
