//! Why the server layer answers a request itself: one of the crate's errors, each a
//! [`Rejection`](tower_reliability_core::Rejection), answered by
//! [`tower_reliability_core::answer`] in HTTP mode.
//!
//! The service and its response future both reject, so the reasons live here, below both.

use tower_reliability_core::Rejection as AnswerRejection;

use crate::{BoxError, DeadlineExceeded, InvalidDeadlineHeader};

/// Why the layer answered a request itself.
#[derive(Debug)]
pub(crate) enum Rejection {
    Expired(DeadlineExceeded),
    Malformed(InvalidDeadlineHeader),
}

impl Rejection {
    pub(crate) fn as_answer(&self) -> &dyn AnswerRejection {
        match self {
            Rejection::Expired(e) => e,
            Rejection::Malformed(e) => e,
        }
    }
}

/// Error mode's answer: the reason itself, boxed.
impl From<Rejection> for BoxError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Expired(e) => Box::new(e),
            Rejection::Malformed(e) => Box::new(e),
        }
    }
}
