use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use tokio::time::Instant;

use tower_reliability_core::{ErrorMode, HttpMode, Protocol, ResponseBody, answer};

use super::response::Rejection;
use crate::bounded::Bounded;
use crate::metrics::Metrics;
use crate::{BoxError, Deadline, Stage};

pin_project_lite::pin_project! {
    /// Response future of [`DeadlineService`](super::DeadlineService).
    pub struct ResponseFuture<F, M> {
        #[pin]
        state: State<F>,
        protocol: Protocol,
        _mode: PhantomData<fn() -> M>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] bounded: Bounded<F>, metrics: Metrics },
        Rejected { rejection: Option<Rejection> },
    }
}

impl<F: Future, M> ResponseFuture<F, M> {
    pub(crate) fn running(
        future: F,
        deadline: Deadline,
        start: Instant,
        metrics: Metrics,
        protocol: Protocol,
    ) -> Self {
        Self {
            state: State::Running {
                bounded: Bounded::new(future, deadline, start),
                metrics,
            },
            protocol,
            _mode: PhantomData,
        }
    }

    pub(crate) fn rejected(rejection: Rejection, protocol: Protocol) -> Self {
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
            },
            protocol,
            _mode: PhantomData,
        }
    }

    /// Drives the inner future; on a missed deadline, drops it at once (cancelling its work).
    fn poll_outcome(
        mut state: Pin<&mut State<F>>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<F::Output, Rejection>> {
        let rejection = match state.as_mut().project() {
            StateProj::Running { bounded, metrics } => match bounded.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(output)) => return Poll::Ready(Ok(output)),
                Poll::Ready(Err(elapsed)) => {
                    metrics.exceeded(Stage::Handling);
                    Rejection::Expired(elapsed.into_error(Stage::Handling))
                }
            },
            StateProj::Rejected { rejection } => rejection
                .take()
                .expect("ResponseFuture polled after completion"),
        };
        state.set(State::Rejected { rejection: None });
        Poll::Ready(Err(rejection))
    }
}

impl<F, T, E> Future for ResponseFuture<F, ErrorMode>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Self::poll_outcome(this.state, cx).map(|outcome| match outcome {
            Ok(result) => result.map_err(Into::into),
            Err(rejection) => Err(rejection.into()),
        })
    }
}

impl<F, B, E> Future for ResponseFuture<F, HttpMode>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let protocol = *this.protocol;
        Self::poll_outcome(this.state, cx).map(|outcome| match outcome {
            Ok(result) => result.map(|response| response.map(ResponseBody::inner)),
            Err(rejection) => Ok(answer(rejection.as_answer(), protocol)),
        })
    }
}

impl<F, M> std::fmt::Debug for ResponseFuture<F, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}
