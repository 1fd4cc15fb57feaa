//! [`MetricsService`]: the service [`MetricsLayer`](crate::MetricsLayer) produces.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower_service::Service;

use crate::body::MeteredBody;
use crate::future::{ResponseFuture, State};
use crate::head::RequestHead;
use crate::recorder::Recorder;
use crate::request_body::{RequestBodyTracker, Unchanged, WrapRequestBody};

/// Records metrics for each request passing to the inner service.
///
/// Errors of the inner service pass through unchanged (so an axum service with
/// `Error = Infallible` stays infallible). Responses get their body wrapped in
/// [`MeteredBody`], which carries the active-request guard and counts bytes.
pub struct MetricsService<S, W = Unchanged> {
    inner: S,
    recorder: Arc<Recorder>,
    _wrap: PhantomData<fn() -> W>,
}

impl<S: Clone, W> Clone for MetricsService<S, W> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            recorder: Arc::clone(&self.recorder),
            _wrap: PhantomData,
        }
    }
}

impl<S, W> MetricsService<S, W> {
    pub(crate) fn new(inner: S, recorder: Arc<Recorder>) -> Self {
        Self {
            inner,
            recorder,
            _wrap: PhantomData,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, W> fmt::Debug for MetricsService<S, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, W, ReqBody, ResBody> Service<Request<ReqBody>> for MetricsService<S, W>
where
    W: WrapRequestBody<ReqBody>,
    S: Service<Request<W::Output>, Response = Response<ResBody>>,
    S::Error: 'static,
    ResBody: http_body::Body,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let key = self.recorder.request_key(&RequestHead::of(&req));
        let active = self.recorder.enter_active(&key);
        let request_body = self
            .recorder
            .request_body_size()
            .then(|| Arc::new(RequestBodyTracker::new(Arc::clone(&self.recorder))));
        let tracker = request_body.clone();
        let inner = self.inner.call(req.map(|body| W::wrap(body, tracker)));
        ResponseFuture::new(
            inner,
            State {
                start,
                key,
                recorder: Arc::clone(&self.recorder),
                active,
                request_body,
            },
        )
    }
}
