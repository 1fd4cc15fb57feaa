//! [`CircuitBreaker`]: the service, and its response future.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_reliability_core::{ErrorMode, HttpMode, Protocol, ResponseBody, answer};
use tower_service::Service;

use super::keys::{Keying, Recipe, Single};
use super::shared::Shared;
use super::state::Pass;
use crate::BoxError;
use crate::classify::{Classification, Classify};
use crate::error::CircuitOpen;

/// A circuit breaker around a service; see [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
pub struct CircuitBreaker<S, C, M = ErrorMode, K = Single> {
    inner: S,
    classifier: C,
    recipe: Arc<Recipe>,
    keys: K,
    _mode: PhantomData<fn() -> M>,
}

impl<S, C, M, K> CircuitBreaker<S, C, M, K> {
    pub(crate) fn new(inner: S, classifier: C, recipe: Arc<Recipe>, keys: K) -> Self {
        Self {
            inner,
            classifier,
            recipe,
            keys,
            _mode: PhantomData,
        }
    }

    fn start<Req>(&mut self, request: Req, protocol: Protocol) -> ResponseFuture<S::Future, C, M>
    where
        S: Service<Req>,
        C: Clone,
        K: Keying<Req>,
    {
        let shared = self.keys.breaker(&self.recipe, &request).shared;
        let state = match shared.admit() {
            Ok(pass) => State::Running {
                inner: self.inner.call(request),
                guard: Guard {
                    shared,
                    pass,
                    done: false,
                },
                classifier: self.classifier.clone(),
                _mode: PhantomData,
            },
            Err(open) => State::Refused { open: Some(open) },
        };
        ResponseFuture { state, protocol }
    }
}

impl<S: Clone, C: Clone, M, K: Clone> Clone for CircuitBreaker<S, C, M, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            classifier: self.classifier.clone(),
            recipe: Arc::clone(&self.recipe),
            keys: self.keys.clone(),
            _mode: PhantomData,
        }
    }
}

impl<S, C, M, K> std::fmt::Debug for CircuitBreaker<S, C, M, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.recipe.name)
            .finish_non_exhaustive()
    }
}

impl<S, C, K, Req> Service<Req> for CircuitBreaker<S, C, ErrorMode, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
    K: Keying<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, ErrorMode>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.start(request, Protocol::Http)
    }
}

impl<S, C, K, ReqBody, B> Service<Request<ReqBody>> for CircuitBreaker<S, C, HttpMode, K>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    C: Classify<Response<B>> + Clone,
    K: Keying<Request<ReqBody>>,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, HttpMode>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let protocol = Protocol::of(request.headers());
        self.start(request, protocol)
    }
}

/// Counts the call's outcome once; a future dropped before it has one frees its probe slot.
struct Guard {
    shared: Arc<Shared>,
    pass: Pass,
    done: bool,
}

impl Guard {
    fn finish(&mut self, failed: bool) {
        self.done = true;
        self.shared.record(self.pass, failed);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.shared.abandon(self.pass);
        }
    }
}

pin_project! {
    /// The response future of [`CircuitBreaker`].
    pub struct ResponseFuture<F, C, M = ErrorMode> {
        #[pin]
        state: State<F, C, M>,
        protocol: Protocol,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C, M> {
        // The call went through; its outcome is counted when it completes.
        Running {
            #[pin]
            inner: F,
            guard: Guard,
            classifier: C,
            _mode: PhantomData<fn() -> M>,
        },
        // The breaker refused the call.
        Refused { open: Option<CircuitOpen> },
    }
}

impl<F, C, M> std::fmt::Debug for ResponseFuture<F, C, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl<F, C, M, Res, E> ResponseFuture<F, C, M>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Classify<Res>,
{
    /// The inner outcome, counted; or the refusal.
    fn poll_outcome(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Result<Res, BoxError>, CircuitOpen>> {
        match self.project().state.project() {
            StateProj::Running {
                inner,
                guard,
                classifier,
                ..
            } => {
                let outcome = ready!(inner.poll(cx)).map_err(Into::into);
                // Only what a retry could fix counts against the dependency: a 4xx is the
                // caller's.
                let failed = matches!(
                    classifier.classify(outcome.as_ref()),
                    Classification::Retryable { .. }
                );
                guard.finish(failed);
                Poll::Ready(Ok(outcome))
            }
            StateProj::Refused { open } => Poll::Ready(Err(open
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C, ErrorMode>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Classify<Res>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.poll_outcome(cx)) {
            Ok(outcome) => outcome,
            Err(open) => Err(open.into()),
        })
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C, HttpMode>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: Classify<Response<B>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            StateProj::Running {
                inner,
                guard,
                classifier,
                ..
            } => {
                let outcome = ready!(inner.poll(cx));
                // The error stays the inner service's own (axum needs `Infallible`), so the
                // classifier sees answers only; an error is always a failure.
                let failed = match &outcome {
                    Ok(response) => matches!(
                        classifier.classify(Ok(response)),
                        Classification::Retryable { .. }
                    ),
                    Err(_) => true,
                };
                guard.finish(failed);
                Poll::Ready(outcome.map(|response| response.map(ResponseBody::inner)))
            }
            StateProj::Refused { open } => {
                let open = open.take().expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(answer(&open, *this.protocol)))
            }
        }
    }
}
