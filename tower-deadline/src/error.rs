//! Typed errors: every one says what happened and the numbers behind it.

use std::fmt;
use std::sync::Once;
use std::time::Duration;

use http::StatusCode;
use tower_reliability_core::{Rejection, grpc_code};

/// Where a deadline ran out. Also the `where` attribute of the `tower.deadline.exceeded` counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// The request arrived with no time left and never reached the inner service.
    Arrival,
    /// The inner service was still handling the request when the deadline passed.
    Handling,
    /// An outgoing call (or its connect) was cut short, or never sent because no time was left.
    Outgoing,
    /// A helper-run operation (file I/O, any future) ran out of time.
    Operation,
    /// The request waited in a queue until its deadline passed (used by `tower-bounded-queue`).
    Queued,
}

impl Stage {
    /// Every stage, in the order of a request's life.
    pub const ALL: [Stage; 5] = [
        Stage::Arrival,
        Stage::Queued,
        Stage::Handling,
        Stage::Outgoing,
        Stage::Operation,
    ];

    /// The stable lower-case name used in metrics and messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Arrival => "arrival",
            Stage::Handling => "handling",
            Stage::Outgoing => "outgoing",
            Stage::Operation => "operation",
            Stage::Queued => "queued",
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Stage::Arrival => "on arrival",
            Stage::Handling => "while handling the request",
            Stage::Outgoing => "on an outgoing call",
            Stage::Operation => "during an operation",
            Stage::Queued => "while waiting in the queue",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The deadline passed before the work was done.
///
/// `budget` is the time the work was given when it started, `elapsed` how long it actually ran
/// (or waited). This error is never worth retrying: the caller's time is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadlineExceeded {
    stage: Stage,
    budget: Duration,
    elapsed: Duration,
}

impl DeadlineExceeded {
    /// A new error; other crates of the family build it for their own stages.
    pub fn new(stage: Stage, budget: Duration, elapsed: Duration) -> Self {
        register();
        Self {
            stage,
            budget,
            elapsed,
        }
    }

    /// Where the deadline ran out.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The time the work was given.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// How long the work ran or waited before it was stopped.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deadline exceeded {}: budget {:?}, elapsed {:?}",
            self.stage.describe(),
            self.budget,
            self.elapsed
        )
    }
}

impl std::error::Error for DeadlineExceeded {}

/// 504; gRPC `DEADLINE_EXCEEDED` (4).
impl Rejection for DeadlineExceeded {
    fn http_status(&self) -> StatusCode {
        StatusCode::GATEWAY_TIMEOUT
    }

    fn grpc_code(&self) -> u8 {
        grpc_code::DEADLINE_EXCEEDED
    }
}

/// A connect attempt took longer than its own connect budget (the request's deadline still had
/// time). Unlike [`DeadlineExceeded`], this is a connect failure: nothing was sent, so a retry
/// may help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectTimeout {
    budget: Duration,
}

impl ConnectTimeout {
    /// A new error; connectors of other crates build it for their own connect budgets.
    pub fn new(budget: Duration) -> Self {
        register();
        Self { budget }
    }

    /// The connect budget that ran out.
    pub fn budget(&self) -> Duration {
        self.budget
    }
}

impl fmt::Display for ConnectTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect timed out after {:?}", self.budget)
    }
}

impl std::error::Error for ConnectTimeout {}

/// 504; gRPC `UNAVAILABLE` (14): nothing was sent, so another attempt may connect.
impl Rejection for ConnectTimeout {
    fn http_status(&self) -> StatusCode {
        StatusCode::GATEWAY_TIMEOUT
    }

    fn grpc_code(&self) -> u8 {
        grpc_code::UNAVAILABLE
    }
}

/// A deadline header could not be parsed and the server layer is in strict mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidDeadlineHeader {
    header: http::HeaderName,
}

impl InvalidDeadlineHeader {
    pub(crate) fn new(header: http::HeaderName) -> Self {
        register();
        Self { header }
    }

    /// The header whose value was malformed.
    pub fn header(&self) -> &http::HeaderName {
        &self.header
    }
}

impl fmt::Display for InvalidDeadlineHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed deadline header `{}`", self.header)
    }
}

impl std::error::Error for InvalidDeadlineHeader {}

/// 400; gRPC `INVALID_ARGUMENT` (3).
impl Rejection for InvalidDeadlineHeader {
    fn http_status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    fn grpc_code(&self) -> u8 {
        grpc_code::INVALID_ARGUMENT
    }
}

/// Makes `tower_reliability_core::error_response` recognise this crate's errors; called by
/// each error's constructor, so any error that exists is recognised.
fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tower_reliability_core::register::<DeadlineExceeded>();
        tower_reliability_core::register::<ConnectTimeout>();
        tower_reliability_core::register::<InvalidDeadlineHeader>();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_numbers() {
        let e = DeadlineExceeded::new(
            Stage::Handling,
            Duration::from_secs(2),
            Duration::from_millis(2001),
        );
        assert_eq!(
            e.to_string(),
            "deadline exceeded while handling the request: budget 2s, elapsed 2.001s"
        );
        assert_eq!(
            ConnectTimeout::new(Duration::from_secs(5)).to_string(),
            "connect timed out after 5s"
        );
    }

    #[test]
    fn errors_box_and_downcast() {
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(DeadlineExceeded::new(
            Stage::Queued,
            Duration::ZERO,
            Duration::ZERO,
        ));
        assert_eq!(
            boxed.downcast_ref::<DeadlineExceeded>().map(|e| e.stage()),
            Some(Stage::Queued)
        );
    }
}
