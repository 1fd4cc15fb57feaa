//! [`RetryLayer`]: the builder and tower `Layer`.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::Meter;
use tower_layer::Layer;

use super::service::Retry;
use crate::backoff::Backoff;
use crate::budget::RetryBudget;
use crate::classify::HttpClassifier;
use crate::config::Config;
use crate::kind::{Generic, Http, HttpAs, IsHttp};
use crate::metrics::Instruments;

/// The most retries [`RetryLayer::max_retries`] accepts (100): far beyond any useful policy
/// (gRPC clamps at 4 retries), low enough that a retry loop always ends.
pub const MAX_RETRIES_LIMIT: u32 = 100;

/// Applies classified, budgeted, deadline-aware retries to a service.
///
/// - [`RetryLayer::for_http`]: HTTP and gRPC over HTTP, with the built-in [`HttpClassifier`],
///   idempotency rules and body replay.
/// - [`RetryLayer::new`]: any `Clone` request, with your classifier.
///
/// Defaults: at most 4 retries, exponential backoff 100/200/400/800 ms with full jitter, 30 s
/// total, server hints clamped to 300 s, a retry budget of 20% of requests over 10 s plus 10
/// retries/s, bodies buffered up to 64 KiB, the global meter `tower-retry-classified`.
///
/// All services made by one layer (and their clones) share one retry budget.
#[derive(Clone, Debug)]
pub struct RetryLayer<C = HttpClassifier, K = Http> {
    config: Config<C>,
    _kind: PhantomData<fn() -> K>,
}

impl RetryLayer<HttpClassifier, Http> {
    /// Retries of HTTP (and gRPC over HTTP) requests with the defaults and the built-in
    /// [`HttpClassifier`]: the request kind [`Http`], with idempotency rules and body replay.
    pub fn for_http() -> Self {
        Self::with(HttpClassifier::new())
    }
}

impl<C> RetryLayer<C, Generic> {
    /// Retries of any `Clone` request, classified by `classifier` (a
    /// [`Classify`](crate::Classify) implementation or a closure
    /// `Fn(Result<&Res, &BoxError>) -> Classification`). Idempotency rules do not apply; the
    /// task-local deadline (feature `deadline`) does.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use tower::{BoxError, ServiceExt};
    /// use tower_retry_classified::{Classification, Reason, RetryLayer};
    /// use tower_layer::Layer;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// // A worker calling a flaky queue: `Busy` is worth retrying, anything else is not.
    /// #[derive(Debug)]
    /// struct Busy;
    /// impl std::fmt::Display for Busy {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("busy") }
    /// }
    /// impl std::error::Error for Busy {}
    ///
    /// let classify = |outcome: Result<&u64, &BoxError>| match outcome {
    ///     Ok(_) => Classification::Success,
    ///     Err(e) if e.is::<Busy>() => Classification::retryable(Reason::new("busy")),
    ///     Err(e) => Classification::of_error(&**e),
    /// };
    /// let busy_once = Arc::new(AtomicBool::new(true));
    /// let queue = tower::service_fn(move |job: u64| {
    ///     let busy = busy_once.swap(false, Ordering::SeqCst);
    ///     async move { if busy { Err::<u64, BoxError>(Busy.into()) } else { Ok(job * 2) } }
    /// });
    /// let svc = RetryLayer::new(classify).max_retries(2).layer(queue);
    /// assert_eq!(svc.oneshot(21).await.unwrap(), 42);
    /// # }
    /// ```
    pub fn new(classifier: C) -> Self {
        Self::with(classifier)
    }
}

impl<C, K> RetryLayer<C, K> {
    fn with(classifier: C) -> Self {
        Self {
            config: Config::new(classifier),
            _kind: PhantomData,
        }
    }

    /// Replaces the classifier.
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<C2, K> {
        RetryLayer {
            config: self.config.with_classifier(classifier),
            _kind: PhantomData,
        }
    }

    /// Retries after the first attempt (default 4; 0 disables retrying; clamped to at most
    /// [`MAX_RETRIES_LIMIT`]). The limit keeps a retry loop finite whatever else is set: the
    /// budget's floor alone would allow a lone caller retries forever.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.config.max_retries = retries.min(MAX_RETRIES_LIMIT);
        self
    }

    /// The backoff between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Total time, from the call, after which no retry starts (default 30 s). A per-attempt
    /// timeout longer than this is clamped to it.
    pub fn max_total_time(mut self, total: Duration) -> Self {
        self.config.max_total = total;
        self
    }

    /// Cuts each attempt after `timeout` (an [`AttemptTimeout`](crate::AttemptTimeout) error,
    /// retryable). Clamped to at least 1 ms, and when an attempt is sent, to at most the total
    /// retry time, whichever order the two are set in.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }

    /// The longest server hint (`Retry-After`, `grpc-retry-pushback-ms`) honoured; longer hints
    /// are clamped to it (default 300 s).
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.config.max_hint = max;
        self
    }

    /// Uses `budget` (which may be shared with other layers).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.config.budget = Some(budget);
        self
    }

    /// Disables the retry budget.
    pub fn no_budget(mut self) -> Self {
        self.config.budget = None;
        self
    }

    /// Records metrics on `meter` instead of the global meter. (The global meter is taken when
    /// the layer is built: install a global provider before that, or pass a meter here.)
    pub fn meter(mut self, meter: &Meter) -> Self {
        self.config.instruments = Instruments::new(meter);
        self
    }
}

impl<C> RetryLayer<C, Http> {
    /// Hands the inner service `http::Request<T>` instead of `http::Request<ReplayBody<B>>`:
    /// each attempt's [`ReplayBody`](crate::ReplayBody) is turned into `T` with `T::from`.
    ///
    /// For a client typed for another body, such as one shared by a stack with the retry layer
    /// and one without: type it for `http_body_util::Either<ReplayBody<B>, Other>` (this crate
    /// provides that `From`), or for an enum body of your own that implements
    /// `From<ReplayBody<B>>`. The conversion only wraps the body: nothing is boxed or allocated
    /// per attempt, unlike a `map_request` to a boxed body such as `axum::body::Body`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{Either, Full};
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use tower_layer::Layer;
    /// use tower_retry_classified::{ReplayBody, RetryLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// type Body = Full<Bytes>;
    /// // One client for calls with retries (Left) and without (Right).
    /// let client = Client::builder(TokioExecutor::new())
    ///     .build_http::<Either<ReplayBody<Body>, Body>>();
    /// let retrying = RetryLayer::for_http()
    ///     .attempt_body::<Either<ReplayBody<Body>, Body>>()
    ///     .layer(client.clone());
    /// # let _ = (retrying, client);
    /// # }
    /// ```
    pub fn attempt_body<T>(self) -> RetryLayer<C, HttpAs<T>> {
        RetryLayer {
            config: self.config,
            _kind: PhantomData,
        }
    }
}

impl<C, K: IsHttp> RetryLayer<C, K> {
    /// Retries every method on any retryable failure, not only idempotent ones or those with
    /// `Idempotency-Key` (default false). Failures that prove the request was not processed
    /// are retried for every method regardless.
    pub fn retry_any_method(mut self, yes: bool) -> Self {
        self.config.retry_any_method = yes;
        self
    }

    /// How many request body bytes are kept for replay (default 64 KiB). Larger bodies are sent
    /// once and not retried.
    pub fn max_replay_body(mut self, bytes: usize) -> Self {
        self.config.replay_cap = bytes;
        self
    }
}

impl<S, C: Clone, K> Layer<S> for RetryLayer<C, K> {
    type Service = Retry<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        if let Some(budget) = &self.config.budget {
            self.config.instruments.observe(budget);
        }
        // Clones share the budget, instruments and seeded generator (all `Arc`s inside).
        let replicas = (0..crate::budget::SHARDS)
            .map(|_| Arc::new(self.config.clone()))
            .collect();
        Retry::from_config(inner, replicas)
    }
}
