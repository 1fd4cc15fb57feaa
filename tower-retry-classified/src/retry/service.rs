//! [`Retry`]: the tower `Service`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::BoxError;
use crate::budget::shard;
use crate::classify::Classify;
use crate::config::Config;
use crate::kind::{RequestKind, ResponseKind};

/// Retries failed calls to the inner service when they are classified retryable and time,
/// budget, idempotency and body size allow. Made by [`RetryLayer`](crate::RetryLayer).
///
/// Errors are the inner service's own, boxed: downcast them to its error type. When no retry
/// is possible the caller gets the last real outcome (the upstream's response or error),
/// never an error of this layer.
pub struct Retry<S, C, K> {
    inner: S,
    // One copy of the configuration per shard: every call clones an `Arc` for its future, and
    // threads that clone different `Arc`s do not fight over one reference count.
    config: Arc<[Arc<Config<C>>]>,
    _kind: PhantomData<fn() -> K>,
}

impl<S, C, K> Retry<S, C, K> {
    pub(crate) fn from_config(inner: S, config: Arc<[Arc<Config<C>>]>) -> Self {
        Self {
            inner,
            config,
            _kind: PhantomData,
        }
    }

    fn config(&self) -> &Arc<Config<C>> {
        &self.config[shard() % self.config.len()]
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C, K> Clone for Retry<S, C, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
            _kind: PhantomData,
        }
    }
}

impl<S: fmt::Debug, C, K> fmt::Debug for Retry<S, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("max_retries", &self.config[0].max_retries)
            .field("max_total", &self.config[0].max_total)
            .finish_non_exhaustive()
    }
}

impl<S, C, K, Req> Service<Req> for Retry<S, C, K>
where
    K: RequestKind<Req> + ResponseKind<S::Response>,
    S: Service<K::Attempt> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, C, K, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let now = Instant::now();
        let config = self.config().clone();
        if let Some(budget) = &config.budget {
            budget.deposit_at(now);
        }
        let (attempt, saved, facts) = K::split(req, config.retry_any_method, config.replay_cap);
        // tower convention: the ready service takes this call; the future keeps a clone that it
        // drives to readiness itself before any retry.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let future = ready.call(attempt);
        ResponseFuture::new(future, ready, saved, config, facts, now)
    }
}
