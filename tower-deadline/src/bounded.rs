//! The one mechanism every enforcing future here shares: poll the inner future inside the
//! deadline's task-local scope, and only if it is not ready at once arm a timer for the deadline.
//! A future that completes on its first poll never touches the timer wheel, and neither does one
//! nested inside another enforcing future with a deadline at least as tight (a client call made
//! by a handler under the server layer).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

use crate::Deadline;

pin_project_lite::pin_project! {
    pub(crate) struct Bounded<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Deadline,
        start: Instant,
    }
}

/// The deadline passed first; the caller turns this into its own typed error.
pub(crate) struct Elapsed {
    pub(crate) start: Instant,
    pub(crate) deadline: Deadline,
}

impl Elapsed {
    pub(crate) fn into_error(self, stage: crate::Stage) -> crate::DeadlineExceeded {
        crate::DeadlineExceeded::new(
            stage,
            self.deadline
                .instant()
                .saturating_duration_since(self.start),
            self.start.elapsed(),
        )
    }
}

impl<F: Future> Bounded<F> {
    pub(crate) fn new(inner: F, deadline: Deadline, start: Instant) -> Self {
        Self {
            inner,
            sleep: None,
            deadline,
            start,
        }
    }
}

impl<F: Future> Future for Bounded<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let deadline = *this.deadline;
        let inner = this.inner;
        if let Poll::Ready(output) = deadline.enter_enforced(|| inner.poll(cx)) {
            return Poll::Ready(Ok(output));
        }
        if this.sleep.is_none() {
            // An enclosing future of ours enforces a deadline no later than ours and polls us
            // now: it will drop us in time, so a second timer would be pure cost. Checked again
            // on every poll, in case we are later polled from somewhere it does not cover.
            if deadline.is_enforced_around() {
                return Poll::Pending;
            }
            this.sleep
                .set(Some(tokio::time::sleep_until(deadline.instant())));
        }
        let sleep = this.sleep.as_pin_mut().expect("armed just above");
        match sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed {
                start: *this.start,
                deadline,
            })),
            Poll::Pending => Poll::Pending,
        }
    }
}
