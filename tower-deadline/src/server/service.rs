use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use super::future::ResponseFuture;
use tower_reliability_core::{ErrorMode, HttpMode, Mode, Protocol, ResponseBody};

use super::response::Rejection;
use crate::headers::{self, MillisHeaders};
use crate::metrics::Metrics;
use crate::trace;
use crate::{Deadline, DeadlineExceeded, InvalidDeadlineHeader, Stage};

/// Service built by [`DeadlineLayer`](super::DeadlineLayer).
#[derive(Debug)]
pub struct DeadlineService<S, M = ErrorMode> {
    inner: S,
    shared: Arc<Shared>,
    _mode: PhantomData<fn() -> M>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) max: Duration,
    pub(crate) headers: MillisHeaders,
    pub(crate) strict: bool,
    pub(crate) metrics: Metrics,
}

impl<S: Clone, M> Clone for DeadlineService<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            _mode: PhantomData,
        }
    }
}

impl<S, M> DeadlineService<S, M> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            _mode: PhantomData,
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

impl<S, M: Mode> DeadlineService<S, M> {
    fn start<B>(&mut self, mut request: Request<B>) -> ResponseFuture<S::Future, M>
    where
        S: Service<Request<B>>,
    {
        let start = Instant::now();
        let shared = &self.shared;
        let protocol = if M::HTTP {
            Protocol::of(request.headers())
        } else {
            Protocol::Http
        };
        let announced = headers::read(request.headers(), &shared.headers);
        if let Some(header) = &announced.malformed {
            shared.metrics.invalid();
            let value = request.headers().get(header).map(|v| v.as_bytes());
            trace::malformed(header.as_str(), value.unwrap_or_default(), shared.strict);
            if shared.strict {
                let error = InvalidDeadlineHeader::new(header.clone());
                return ResponseFuture::rejected(Rejection::Malformed(error), protocol);
            }
        }
        let budget = announced.budget.map_or(shared.max, |b| b.min(shared.max));
        trace::read(
            announced.source(&shared.headers),
            announced.budget,
            budget,
            announced.budget.is_none_or(|b| b > shared.max),
        );
        let deadline = Deadline::after_from(start, budget)
            .earliest_with(Deadline::effective(request.extensions()));
        if deadline.instant() <= start {
            shared.metrics.exceeded(Stage::Arrival);
            let error = DeadlineExceeded::new(Stage::Arrival, Duration::ZERO, Duration::ZERO);
            return ResponseFuture::rejected(Rejection::Expired(error), protocol);
        }
        request.extensions_mut().insert(deadline);
        // `call` is scoped too: inner layers that decide in `call` (a queue admitting a request)
        // may have no way to read a generic request's extensions.
        let inner = &mut self.inner;
        let future = deadline.sync_scope(|| inner.call(request));
        ResponseFuture::running(future, deadline, start, shared.metrics.clone(), protocol)
    }
}

impl<S, B> Service<Request<B>> for DeadlineService<S, ErrorMode>
where
    S: Service<Request<B>>,
    S::Error: Into<crate::BoxError>,
{
    type Response = S::Response;
    type Error = crate::BoxError;
    type Future = ResponseFuture<S::Future, ErrorMode>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.start(request)
    }
}

impl<S, B, ResBody> Service<Request<B>> for DeadlineService<S, HttpMode>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, HttpMode>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.start(request)
    }
}
