//! The [`BoundedQueue`] service, in both modes.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, Request, Response};
use tower_reliability_core::{ErrorMode, HttpMode, Protocol, ResponseBody};
use tower_service::Service;

use crate::BoxError;
use crate::admission::Shared;
use crate::fair::{FairKey, NoKey};
use crate::future::{Admit, HttpAnswer, ResponseFuture, is_err};
use crate::handle::QueueHandle;
use crate::http::{deadline_of, failed_answer};

/// Admission control in front of `S`: at most `concurrency` requests inside `S`, at most
/// `capacity` waiting, the rest rejected at once with [`Overloaded`](crate::Overloaded).
///
/// Built by [`BoundedQueueLayer`](crate::BoundedQueueLayer); every service a layer builds shares
/// one queue.
///
/// - [`ErrorMode`]: errors are boxed: the queue's own ([`Overloaded`](crate::Overloaded),
///   [`QueueTimeout`](crate::QueueTimeout), `DeadlineExceeded`) and the inner service's,
///   unchanged, all downcastable. With the `deadline` feature, the task-local
///   `tower_deadline::Deadline::current()` at `call` time bounds the wait.
/// - [`HttpMode`]: the queue's rejections are answered (see
///   [`tower_reliability_core::answer`]); the inner service's errors pass through unchanged and
///   its bodies are wrapped in [`ResponseBody`]. The wait is bounded by
///   `tower_deadline::Deadline::effective(request.extensions())` (feature `deadline`). With an
///   [adaptive](crate::Adaptive) limit, the controller counts as failures the inner service's
///   errors and the answers that say a server is failing or short of capacity: any 5xx, 429,
///   and trailers-only gRPC answers with `grpc-status` 4, 8 or 14.
///
/// `poll_ready` is always ready: the queue never applies backpressure, it decides in `call`. The
/// response future drives a clone of `S` (`poll_ready`, then `call`) once admitted, so `S` must be
/// `Clone` (axum routers and most tower stacks are).
///
/// `K` keys requests for fair share ([`crate::fair`]); [`NoKey`] (the default) has none.
pub struct BoundedQueue<S, M = ErrorMode, K = NoKey> {
    inner: S,
    shared: Arc<Shared>,
    status_header: Option<HeaderName>,
    key: K,
    _mode: PhantomData<fn() -> M>,
}

impl<S, M, K> BoundedQueue<S, M, K> {
    pub(crate) fn new(
        inner: S,
        shared: Arc<Shared>,
        status_header: Option<HeaderName>,
        key: K,
    ) -> Self {
        Self {
            inner,
            shared,
            status_header,
            key,
            _mode: PhantomData,
        }
    }

    /// A handle on this service's queue.
    pub fn handle(&self) -> QueueHandle {
        QueueHandle::new(Arc::clone(&self.shared))
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the queue service, returning the wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, M, K: Clone> Clone for BoundedQueue<S, M, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            status_header: self.status_header.clone(),
            key: self.key.clone(),
            _mode: PhantomData,
        }
    }
}

impl<S: std::fmt::Debug, M, K> std::fmt::Debug for BoundedQueue<S, M, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedQueue")
            .field("inner", &self.inner)
            .field("queue", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S, Req, K> Service<Req> for BoundedQueue<S, ErrorMode, K>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: FairKey<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, ErrorMode>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Never backpressure: admission is decided in `call`, on counts alone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let admit = Admit::new(
            &self.shared,
            &self.inner,
            request,
            crate::current_deadline::<Req>,
            |request| self.key.key(request, &self.shared.keys),
            is_err::<S::Response, S::Error>,
        );
        ResponseFuture::new(admit, ())
    }
}

impl<S, ReqBody, ResBody, K> Service<Request<ReqBody>> for BoundedQueue<S, HttpMode, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: FairKey<Request<ReqBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>, HttpMode>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let protocol = Protocol::of(request.headers());
        let status = self
            .status_header
            .as_ref()
            .map(|name| (name.clone(), Arc::clone(&self.shared)));
        let admit = Admit::new(
            &self.shared,
            &self.inner,
            request,
            deadline_of::<ReqBody>,
            |request| self.key.key(request, &self.shared.keys),
            failed_answer::<ResBody, S::Error>,
        );
        ResponseFuture::new(admit, HttpAnswer { protocol, status })
    }
}
