use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;

use crate::bounded::Bounded;
use crate::metrics::Metrics;
use crate::{BoxError, Deadline, DeadlineExceeded, Stage};

pin_project_lite::pin_project! {
    /// Response future of [`PropagateDeadline`](super::PropagateDeadline).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Unbounded { #[pin] inner: F },
        Bounded { #[pin] bounded: Bounded<F>, metrics: Metrics },
        Failed { error: Option<DeadlineExceeded> },
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(crate) fn unbounded(inner: F) -> Self {
        Self {
            state: State::Unbounded { inner },
        }
    }

    pub(crate) fn bounded(inner: F, deadline: Deadline, start: Instant, metrics: Metrics) -> Self {
        Self {
            state: State::Bounded {
                bounded: Bounded::new(inner, deadline, start),
                metrics,
            },
        }
    }

    pub(crate) fn failed(error: DeadlineExceeded) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let error = match state.as_mut().project() {
            StateProj::Unbounded { inner } => return inner.poll(cx).map_err(Into::into),
            StateProj::Bounded { bounded, metrics } => match bounded.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(result)) => return Poll::Ready(result.map_err(Into::into)),
                Poll::Ready(Err(elapsed)) => {
                    metrics.exceeded(Stage::Outgoing);
                    elapsed.into_error(Stage::Outgoing)
                }
            },
            StateProj::Failed { error } => error
                .take()
                .expect("ResponseFuture polled after completion"),
        };
        // Drop the in-flight call now: its caller has given up on it.
        state.set(State::Failed { error: None });
        Poll::Ready(Err(Box::new(error)))
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
