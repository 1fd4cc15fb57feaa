//! Running any future under the current deadline, for code that has no request at hand.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::bounded::Elapsed;
use crate::metrics::Metrics;
use crate::{Deadline, DeadlineExceeded, Stage};

/// Runs `future` under the current [`Deadline`] (see [`Deadline::current`]): it fails with
/// [`DeadlineExceeded`] if the deadline passes first, and is dropped (cancelled) then. With no
/// current deadline the future runs unbounded. The deadline is looked up when the future is first
/// polled, so `deadline.scope(enforce(work))` binds `work` to `deadline`.
///
/// ```
/// use std::time::Duration;
/// use tower_deadline::{Deadline, enforce};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let slow = tokio::time::sleep(Duration::from_secs(10));
/// let result = Deadline::after(Duration::from_secs(1)).scope(enforce(slow)).await;
/// assert!(result.is_err());
/// # }
/// ```
pub fn enforce<F: IntoFuture>(future: F) -> Enforced<F::IntoFuture> {
    Enforced::new(future.into_future(), None)
}

/// Runs `future` with its own `budget`, but never past the current deadline: a file read given
/// 5 s inside a request with 2 s left gets 2 s. The future sees the tighter of the two as
/// [`Deadline::current`]. The budget starts when the future is first polled.
///
/// ```
/// use std::time::Duration;
/// use tower_deadline::{Deadline, enforce_within};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let request = Deadline::after(Duration::from_secs(2));
/// let seen = request
///     .scope(enforce_within(Duration::from_secs(5), async { Deadline::current() }))
///     .await
///     .unwrap();
/// assert_eq!(seen, Some(request));
/// # }
/// ```
pub fn enforce_within<F: IntoFuture>(budget: Duration, future: F) -> Enforced<F::IntoFuture> {
    Enforced::new(future.into_future(), Some(budget))
}

pin_project_lite::pin_project! {
    /// Future returned by [`enforce`] and [`enforce_within`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Enforced<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        sleep: Option<Sleep>,
        budget: Option<Duration>,
        // Resolved on first poll: `Some(None)` means there is no deadline to enforce.
        bound: Option<Option<(Deadline, Instant)>>,
    }
}

impl<F: Future> Enforced<F> {
    fn new(inner: F, budget: Option<Duration>) -> Self {
        Self {
            inner: Some(inner),
            sleep: None,
            budget,
            bound: None,
        }
    }
}

impl<F: Future> Future for Enforced<F> {
    type Output = Result<F::Output, DeadlineExceeded>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let budget = *this.budget;
        let bound = *this.bound.get_or_insert_with(|| {
            let start = Instant::now();
            let own = budget.map(|b| Deadline::after_from(start, b));
            let current = Deadline::current();
            let deadline = match (own, current) {
                (Some(own), current) => Some(own.earliest_with(current)),
                (None, current) => current,
            };
            deadline.map(|d| (d, start))
        });
        let inner = this
            .inner
            .as_mut()
            .as_pin_mut()
            .expect("Enforced polled after completion");
        let Some((deadline, start)) = bound else {
            return inner.poll(cx).map(Ok);
        };
        let sleep = this.sleep.as_mut();
        match crate::bounded::poll_within(inner, sleep, deadline, cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(output)) => {
                this.inner.set(None);
                return Poll::Ready(Ok(output));
            }
            Poll::Ready(None) => {}
        }
        // Cancel the work now: nobody is waiting for it any more.
        this.inner.set(None);
        // Failure path only: fetch the global meter here rather than keep state around.
        Metrics::instruments(None).exceeded(Stage::Operation);
        Poll::Ready(Err(Elapsed { start, deadline }.into_error(Stage::Operation)))
    }
}

impl<F> std::fmt::Debug for Enforced<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforced")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}
