//! The [`BoundedQueue`] service.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::BoxError;
use crate::admission::Shared;
use crate::future::{Admit, ResponseFuture, is_err};
use crate::handle::QueueHandle;

/// Admission control in front of `S`: at most `concurrency` requests inside `S`, at most
/// `capacity` waiting, the rest rejected at once with [`Overloaded`](crate::Overloaded).
///
/// Built by [`BoundedQueueLayer`](crate::BoundedQueueLayer); every service a layer builds shares
/// one queue. Errors are boxed: the queue's own ([`Overloaded`](crate::Overloaded),
/// [`QueueTimeout`](crate::QueueTimeout), `DeadlineExceeded`) and the inner service's, unchanged,
/// all downcastable.
///
/// `poll_ready` is always ready: the queue never applies backpressure, it decides in `call`. The
/// response future drives a clone of `S` (`poll_ready`, then `call`) once admitted, so `S` must be
/// `Clone` (axum routers and most tower stacks are).
///
/// With the `deadline` feature, the task-local `tower_deadline::Deadline::current()` at `call`
/// time bounds the wait (use [`HttpBoundedQueue`](crate::HttpBoundedQueue) to also read it from
/// request extensions).
pub struct BoundedQueue<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> BoundedQueue<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
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

impl<S: Clone> Clone for BoundedQueue<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for BoundedQueue<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedQueue")
            .field("inner", &self.inner)
            .field("queue", &self.shared)
            .finish()
    }
}

impl<S, Req> Service<Req> for BoundedQueue<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Never backpressure: admission is decided in `call`, on counts alone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::new(Admit::new(
            &self.shared,
            &self.inner,
            request,
            crate::current_deadline::<Req>,
            is_err::<S::Response, S::Error>,
        ))
    }
}
