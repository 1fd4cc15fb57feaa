//! [`ResponseFuture`]: records when the response head is ready, or when dropped early.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use crate::attributes::{Outcome, STATUS_NONE};
use crate::body::{BodyGuard, MeteredBody, PendingCall};
use crate::config::Mode;
use crate::grpc;
use crate::recorder::Recorder;
use crate::request_body::RequestBodyTracker;
use crate::request_key::RequestKey;
use crate::series::{ActiveGuard, Series};

pub(crate) struct State {
    pub(crate) start: Instant,
    pub(crate) key: RequestKey,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) active: Option<ActiveGuard>,
    pub(crate) request_body: Option<Arc<RequestBodyTracker>>,
}

impl State {
    /// Records the duration; returns the series when `keep` asks for it (response
    /// body size). Hands the series to the request-body tracker, if any.
    fn finish(&mut self, status: u16, outcome: Outcome, keep: bool) -> Option<Arc<Series>> {
        let elapsed = self.start.elapsed().as_secs_f64();
        if !keep && self.request_body.is_none() {
            self.recorder.record(&self.key, status, outcome, elapsed);
            return None;
        }
        let series = self.recorder.series(&self.key, status, outcome);
        series.record_duration(&self.recorder.instruments, elapsed);
        if let Some(tracker) = self.request_body.take() {
            tracker.response_finished(Arc::clone(&series));
        }
        keep.then_some(series)
    }
}

pin_project! {
    /// Response future of [`MetricsService`](crate::MetricsService).
    ///
    /// Dropping it before completion records the request with `error.type="cancelled"`
    /// and releases its active-request count.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<State>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(mut state) = this.project().state.take() {
                state.finish(STATUS_NONE, Outcome::Cancelled, false);
                // `state.active` drops here, decrementing the active count.
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, state: State) -> Self {
        Self {
            inner,
            state: Some(state),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    E: 'static,
{
    type Output = Result<Response<MeteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut state) = this.state.take() else {
            // Polled after completion: a contract violation by the caller. Pass the
            // result on without recording twice.
            return Poll::Ready(result.map(|res| res.map(MeteredBody::bare)));
        };
        let mode = state.recorder.mode();
        match result {
            Ok(res) if mode.is_grpc() => {
                let code = grpc::status(res.headers()).or_else(|| {
                    (res.status() != StatusCode::OK).then(|| grpc::from_http(res.status()))
                });
                match code {
                    // Trailers-only response (or an HTTP-level failure): done now.
                    Some(code) => {
                        let outcome = if grpc::is_error(code, mode.is_client()) {
                            Outcome::Status
                        } else {
                            Outcome::Ok
                        };
                        state.finish(code, outcome, false);
                        Poll::Ready(Ok(res.map(MeteredBody::bare)))
                    }
                    // The status comes in the trailers: the body finishes the record.
                    None => {
                        let guard = BodyGuard::pending(PendingCall {
                            start: state.start,
                            key: state.key,
                            recorder: state.recorder,
                        });
                        Poll::Ready(Ok(res.map(|body| MeteredBody::new(body, guard))))
                    }
                }
            }
            Ok(res) => {
                let status = res.status().as_u16();
                let is_error = match mode {
                    Mode::Client | Mode::GrpcClient => status >= 400,
                    Mode::Server | Mode::GrpcServer => status >= 500,
                };
                let outcome = if is_error {
                    Outcome::Status
                } else {
                    Outcome::Ok
                };
                let series = state.finish(status, outcome, state.recorder.body_size());
                if series.is_none() && state.active.is_none() {
                    return Poll::Ready(Ok(res.map(MeteredBody::bare)));
                }
                let size = series.map(|series| (series, state.recorder));
                let guard = BodyGuard::new(state.active.take(), size);
                Poll::Ready(Ok(res.map(|body| MeteredBody::new(body, guard))))
            }
            Err(err) => {
                let name = state.recorder.classify_error(&err as &dyn Any);
                state.finish(STATUS_NONE, Outcome::Error(name), false);
                Poll::Ready(Err(err))
            }
        }
    }
}
