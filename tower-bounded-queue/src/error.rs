//! Typed errors: each says what happened and the numbers behind it, and downcasts from
//! [`tower::BoxError`](https://docs.rs/tower/latest/tower/type.BoxError.html).

use std::fmt;
use std::sync::Once;
use std::time::Duration;

use http::StatusCode;
use tower_reliability_core::grpc_code;

/// Why a request was turned away without being queued (or was pushed out of the queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverloadReason {
    /// Every concurrency slot was busy and the wait queue was full: the newest request was rejected.
    Full,
    /// The queue was full and in drop-oldest mode: this request was the oldest waiter and made room
    /// for a newer one.
    DroppedOldest,
    /// The queue was closed through [`QueueHandle::close`](crate::QueueHandle::close) or
    /// [`QueueHandle::drain`](crate::QueueHandle::drain) and admits nothing new.
    Closed,
    /// Fair share ([`BoundedQueueBuilder::fair_by`](crate::BoundedQueueBuilder::fair_by)): the
    /// request's key already had its share of the queue waiting, or this request was the newest
    /// waiter of the key furthest over its share and made room for a key under its share.
    FairShare,
}

impl OverloadReason {
    /// The stable lower-case name, also the `reason` attribute of `tower.queue.rejections`.
    pub fn as_str(&self) -> &'static str {
        match self {
            OverloadReason::Full => "full",
            OverloadReason::DroppedOldest => "dropped_oldest",
            OverloadReason::Closed => "closed",
            OverloadReason::FairShare => "fair_share",
        }
    }
}

impl fmt::Display for OverloadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The queue could not take the request; it never reached the inner service.
///
/// Returned at once, never after a wait (except for [`OverloadReason::DroppedOldest`], which a
/// waiter receives when a newer request pushes it out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overloaded {
    capacity: usize,
    depth: usize,
    reason: OverloadReason,
    retry_after: Option<Duration>,
}

impl Overloaded {
    pub(crate) fn new(
        capacity: usize,
        depth: usize,
        reason: OverloadReason,
        retry_after: Option<Duration>,
    ) -> Self {
        register();
        Self {
            capacity,
            depth,
            reason,
            retry_after,
        }
    }

    /// How many requests the queue may hold waiting.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many requests were waiting when this one was turned away.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Why the request was turned away.
    pub fn reason(&self) -> OverloadReason {
        self.reason
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            OverloadReason::Full => write!(
                f,
                "overloaded: queue full ({} of {} waiting)",
                self.depth, self.capacity
            ),
            OverloadReason::DroppedOldest => write!(
                f,
                "overloaded: dropped as the oldest waiter ({} of {} waiting)",
                self.depth, self.capacity
            ),
            OverloadReason::Closed => write!(
                f,
                "overloaded: queue closed ({} of {} waiting)",
                self.depth, self.capacity
            ),
            OverloadReason::FairShare => write!(
                f,
                "overloaded: over this key's fair share of the queue ({} of {} waiting)",
                self.depth, self.capacity
            ),
        }
    }
}

impl std::error::Error for Overloaded {}

/// The request waited in the queue for the configured maximum and left without reaching the
/// inner service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueTimeout {
    waited: Duration,
    max: Duration,
    retry_after: Option<Duration>,
}

impl QueueTimeout {
    pub(crate) fn new(waited: Duration, max: Duration, retry_after: Option<Duration>) -> Self {
        register();
        Self {
            waited,
            max,
            retry_after,
        }
    }

    /// How long the request waited.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The configured maximum wait.
    pub fn max(&self) -> Duration {
        self.max
    }
}

impl fmt::Display for QueueTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "waited {:?} in the queue, the maximum is {:?}",
            self.waited, self.max
        )
    }
}

impl std::error::Error for QueueTimeout {}

/// Both of the queue's own errors say "shed, try again later": 503 with `Retry-After`
/// ([`BoundedQueueBuilder::retry_after`](crate::BoundedQueueBuilder::retry_after)) and
/// `x-overloaded`; gRPC `UNAVAILABLE` (14) with `grpc-retry-pushback-ms`.
macro_rules! shed {
    ($error:ty) => {
        impl tower_reliability_core::Rejection for $error {
            fn http_status(&self) -> StatusCode {
                StatusCode::SERVICE_UNAVAILABLE
            }

            fn grpc_code(&self) -> u8 {
                grpc_code::UNAVAILABLE
            }

            fn retry_after(&self) -> Option<Duration> {
                self.retry_after
            }

            fn overloaded(&self) -> bool {
                true
            }
        }
    };
}

shed!(Overloaded);
shed!(QueueTimeout);

/// Makes `tower_reliability_core::error_response` recognise the queue's errors; called by each
/// error's constructor.
fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tower_reliability_core::register::<Overloaded>();
        tower_reliability_core::register::<QueueTimeout>();
    });
}

/// Why the queue answered a request itself instead of handing it to the inner service.
#[derive(Debug)]
pub(crate) enum Rejection {
    Overloaded(Overloaded),
    Timeout(QueueTimeout),
    #[cfg(feature = "deadline")]
    Deadline(tower_deadline::DeadlineExceeded),
}

impl Rejection {
    /// The reason as the family's answer protocol sees it.
    pub(crate) fn as_answer(&self) -> &dyn tower_reliability_core::Rejection {
        match self {
            Rejection::Overloaded(e) => e,
            Rejection::Timeout(e) => e,
            #[cfg(feature = "deadline")]
            Rejection::Deadline(e) => e,
        }
    }

    pub(crate) fn into_box(self) -> Box<dyn std::error::Error + Send + Sync> {
        match self {
            Rejection::Overloaded(e) => Box::new(e),
            Rejection::Timeout(e) => Box::new(e),
            #[cfg(feature = "deadline")]
            Rejection::Deadline(e) => Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_numbers() {
        assert_eq!(
            Overloaded::new(4, 4, OverloadReason::Full, None).to_string(),
            "overloaded: queue full (4 of 4 waiting)"
        );
        assert_eq!(
            QueueTimeout::new(Duration::from_millis(1500), Duration::from_secs(1), None)
                .to_string(),
            "waited 1.5s in the queue, the maximum is 1s"
        );
    }

    #[test]
    fn boxed_errors_downcast() {
        let boxed =
            Rejection::Overloaded(Overloaded::new(1, 1, OverloadReason::Closed, None)).into_box();
        let e = boxed.downcast_ref::<Overloaded>().unwrap();
        assert_eq!(e.reason(), OverloadReason::Closed);
        let boxed =
            Rejection::Timeout(QueueTimeout::new(Duration::ZERO, Duration::ZERO, None)).into_box();
        assert!(boxed.is::<QueueTimeout>());
    }
}
