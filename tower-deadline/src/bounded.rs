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
        let this = self.project();
        let deadline = *this.deadline;
        poll_within(this.inner, this.sleep, deadline, cx).map(|outcome| {
            outcome.ok_or(Elapsed {
                start: *this.start,
                deadline,
            })
        })
    }
}

/// One poll of `inner` under `deadline`: `Ready(Some(output))` when it finished, `Ready(None)`
/// when the deadline passed first. The timer in `sleep` is armed only once `inner` is pending,
/// and not at all while an enclosing future of ours enforces a deadline no later than this one
/// and polls us: it will drop us in time, so a second timer would be pure cost. That is checked
/// again on every poll, in case we are later polled from somewhere it does not cover.
pub(crate) fn poll_within<F: Future>(
    inner: Pin<&mut F>,
    mut sleep: Pin<&mut Option<Sleep>>,
    deadline: Deadline,
    cx: &mut Context<'_>,
) -> Poll<Option<F::Output>> {
    if let Poll::Ready(output) = deadline.enter_enforced(|| inner.poll(cx)) {
        return Poll::Ready(Some(output));
    }
    if sleep.is_none() {
        if deadline.is_enforced_around() {
            return Poll::Pending;
        }
        sleep.set(Some(tokio::time::sleep_until(deadline.instant())));
    }
    let armed = sleep.as_pin_mut().expect("armed just above");
    armed.poll(cx).map(|()| None)
}
