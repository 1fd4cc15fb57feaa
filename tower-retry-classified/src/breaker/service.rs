//! [`CircuitBreaker`]: the service, and its response future.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::keys::{Keying, Recipe, Single};
use super::shared::Shared;
use super::state::Pass;
use crate::BoxError;
use crate::classify::{Classification, Classify};
use crate::error::CircuitOpen;

/// Mode marker: a refused call fails with [`CircuitOpen`] (boxed, downcastable).
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorMode;

/// Mode marker: a refused HTTP call is answered `503 Service Unavailable` with `Retry-After`
/// (the time left, rounded up to whole seconds) and [`X_OVERLOADED`](crate::X_OVERLOADED), so
/// that retry layers above, ours included, do not retry it. The inner service's error type is
/// kept (an axum app's `Infallible`); an inner error counts as a failure. The response body
/// type must be `Default` (axum's `Body`, `Full`, `String`...).
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpMode;

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

    fn start<Req>(&mut self, request: Req) -> BreakerFuture<S::Future, C, M>
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
        BreakerFuture { state }
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
    type Future = BreakerFuture<S::Future, C, ErrorMode>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.start(request)
    }
}

impl<S, C, K, Req, B> Service<Req> for CircuitBreaker<S, C, HttpMode, K>
where
    S: Service<Req, Response = Response<B>>,
    C: Classify<Response<B>> + Clone,
    K: Keying<Req>,
    B: Default,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = BreakerFuture<S::Future, C, HttpMode>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.start(request)
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
    pub struct BreakerFuture<F, C, M> {
        #[pin]
        state: State<F, C, M>,
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

impl<F, C, M> std::fmt::Debug for BreakerFuture<F, C, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BreakerFuture")
    }
}

impl<F, C, M, Res, E> BreakerFuture<F, C, M>
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
                .expect("BreakerFuture polled after completion"))),
        }
    }
}

impl<F, C, Res, E> Future for BreakerFuture<F, C, ErrorMode>
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

impl<F, C, B, E> Future for BreakerFuture<F, C, HttpMode>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: Classify<Response<B>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
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
                Poll::Ready(outcome)
            }
            StateProj::Refused { open } => {
                let open = open.take().expect("BreakerFuture polled after completion");
                Poll::Ready(Ok(open_response(&open)))
            }
        }
    }
}

/// `503` + `Retry-After` (whole seconds, rounded up) + `x-overloaded: true`, empty body.
fn open_response<B: Default>(open: &CircuitOpen) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(open.retry_after_secs()),
    );
    headers.insert(crate::X_OVERLOADED, HeaderValue::from_static("true"));
    response
}
