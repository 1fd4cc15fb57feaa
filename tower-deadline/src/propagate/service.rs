use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, Request};
use tokio::time::Instant;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::metrics::Metrics;
use crate::{BoxError, Deadline, DeadlineExceeded, Stage, headers};

/// Below this, a millisecond header would say 0: nothing useful can be sent.
const LEAST_USEFUL_BUDGET: Duration = Duration::from_millis(1);

/// Service built by [`PropagateDeadlineLayer`](super::PropagateDeadlineLayer).
#[derive(Clone, Debug)]
pub struct PropagateDeadline<S> {
    inner: S,
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) margin: Duration,
    pub(crate) header: HeaderName,
    pub(crate) metrics: Metrics,
}

impl<S> PropagateDeadline<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let Some(deadline) = Deadline::effective(request.extensions()) else {
            return ResponseFuture::unbounded(self.inner.call(request));
        };
        let start = Instant::now();
        let left = deadline.instant().saturating_duration_since(start);
        let budget = left.saturating_sub(self.shared.margin);
        if budget < LEAST_USEFUL_BUDGET {
            self.shared.metrics.exceeded(Stage::Outgoing);
            return ResponseFuture::failed(DeadlineExceeded::new(
                Stage::Outgoing,
                left,
                Duration::ZERO,
            ));
        }
        headers::write(request.headers_mut(), budget, &self.shared.header);
        let future = self.inner.call(request);
        // Cut the call when the budget we sent runs out, not at our own deadline: the margin is
        // then left to answer our caller, and a call cut short is counted where it was cut
        // (`outgoing`), ahead of the server layer's timer for the same deadline.
        let cut = Deadline::at(start + budget);
        ResponseFuture::bounded(future, cut, start, self.shared.metrics.clone())
    }
}
