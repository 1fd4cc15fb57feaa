//! Tower middleware that calls a dependency only in ways that can help: **retries** of what a
//! retry can fix ([`retry`]), a **circuit breaker** that stops calling a dependency that keeps
//! failing ([`breaker`]), and **hedging** that cuts tail latency with a second attempt
//! ([`hedge`]), all three deciding on one [classifier](classify).
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_retry_classified::{Attempts, ReplayBody, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // An upstream that is unavailable twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let upstream = tower::service_fn({
//!     let calls = calls.clone();
//!     move |req: Request<ReplayBody<Full<Bytes>>>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let body = req.into_body().collect().await?.to_bytes();
//!             let status = if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!             Ok::<_, tower::BoxError>(Response::builder().status(status).body(body).unwrap())
//!         }
//!     }
//! });
//!
//! let mut client = ServiceBuilder::new()
//!     .layer(RetryLayer::for_http()) // 4 retries, 100/200/400/800 ms full jitter, 30 s cap
//!     .service(upstream);
//!
//! let request = Request::post("http://upstream/orders")
//!     .header("idempotency-key", "order-42") // POST is retried only with a key
//!     .body(Full::new(Bytes::from_static(b"{\"qty\":1}")))?;
//! let response = client.ready().await?.call(request).await?;
//!
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(Attempts::of(&response), 3);
//! assert_eq!(response.into_body(), "{\"qty\":1}"); // the body was replayed byte for byte
//! # Ok(()) }
//! ```
//!
//! # Three layers, one classifier
//!
//! - [`RetryLayer`] ([`retry`]): the example above.
//! - [`CircuitBreakerLayer`] ([`breaker`], feature `breaker`, on by default): stops calling a
//!   dependency whose calls keep failing and refuses at once with [`CircuitOpen`], or after
//!   `.http()` with 503 + `Retry-After` (gRPC: 14 with `grpc-retry-pushback-ms`).
//! - [`HedgeLayer`] ([`hedge`], feature `hedge`, on by default): sends one more attempt of an
//!   idempotent request that is slower than most, within the same [`RetryBudget`].
//!
//! Only what a retry could fix counts as a failure for any of them ([classify]): a 4xx never
//! opens the breaker, and the breaker's own refusal is never retried.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_retry_classified::{
//!     CircuitBreakerBuilder, HedgeBuilder, ReplayBody, RetryBudget, RetryLayer,
//! };
//!
//! # let client = tower::service_fn(|_: http::Request<ReplayBody<String>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! # });
//! let budget = RetryBudget::default(); // retries and hedges share it
//! let breaker = CircuitBreakerBuilder::new()
//!     .failure_ratio(0.5)
//!     .open_time(Duration::from_secs(5), Duration::from_secs(60))
//!     .build();
//! let stack = ServiceBuilder::new()
//!     .layer(RetryLayer::for_http().budget(budget.clone()))
//!     .layer(HedgeBuilder::for_http().budget(budget).build())
//!     .layer(breaker) // below both: every attempt counts, a refusal is not retried
//!     .service(client);
//! # let _ = stack;
//! ```
//!
//! # What is retried
//!
//! Every attempt's outcome is [classified](Classification) as a success, a retryable failure
//! or a permanent one, with a named [`Reason`]. The built-in [`HttpClassifier`] retries 408,
//! 429, 500, 502, 503, 504, gRPC UNAVAILABLE and transport failures (connection refused, reset
//! or aborted, broken pipe, unexpected EOF, connect errors, HTTP/2 REFUSED_STREAM); other 4xx,
//! 501, 505 and `tower_deadline::DeadlineExceeded` are never retried. A closure can replace
//! it ([`RetryLayer::classifier`]) or refine it ([`HttpClassifier::refine`]).
//!
//! A retryable failure is retried only if all of these hold, checked in this order; otherwise
//! the caller gets that failure itself (the upstream's response or error, never an error of
//! this crate), and `tower.retry.skipped` counts why:
//!
//! 1. the request is idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) or carries
//!    `Idempotency-Key`, or the failure proves it was not processed (connect errors,
//!    REFUSED_STREAM) — `non_idempotent`;
//! 2. retries are left (default 4) — `max_retries`;
//! 3. the delay (the server's `Retry-After` / `grpc-retry-pushback-ms`, clamped to 300 s, else
//!    the [`Backoff`]) ends before the total retry time (default 30 s) — `total_cap` — and
//!    before the request's deadline (feature `deadline`) — `deadline`;
//! 4. the body can be replayed (at most 64 KiB buffered, see [`ReplayBody`]) —
//!    `body_too_large`;
//! 5. the shared [`RetryBudget`] allows it (20% of requests over 10 s plus 10/s) — `budget`.
//!
//! Retry decisions are made on response heads only: once a response is handed to the caller
//! its body streams straight through and is never restarted.
//!
//! # Metrics
//!
//! On the meter given to the layer (default: the global meter `tower-retry-classified`):
//!
//! | instrument | kind | attributes |
//! |---|---|---|
//! | `tower.retry.attempts` | counter | `outcome` (`success`, `retryable`, `permanent`), `reason` |
//! | `tower.retry.retries` | counter | `reason`: the classifier's reason of the failure retried |
//! | `tower.retry.skipped` | counter | `reason` ([`SkipReason`]); `budget` counts the budget running dry |
//! | `tower.retry.budget.balance` | gauge | - (retries the layer's [`RetryBudget`] allows now) |
//! | `tower.retry.backoff` | histogram (s) | - |
//! | `tower.circuit.state` | gauge (0 closed, 1 half-open, 2 open) | `tower.circuit.name` |
//! | `tower.circuit.transitions` | counter | `tower.circuit.name`, `from`, `to` |
//! | `tower.hedge.sent`, `.won`, `.lost`, `.refused` | counters | - |
//!
//! Series whose labels are known up front exist from the first collection, at 0: every reason
//! of `tower.retry.skipped`, every reason the built-in classifier retries in
//! `tower.retry.retries` (a custom classifier's own reasons appear with their first retry),
//! the success series of `tower.retry.attempts`, each transition of
//! a breaker (from its first use) and the hedge counters. A rate over them reads 0 until
//! something happens, and an alert on them can fire and resolve.
//!
//! # Features
//!
//! - `breaker` (default): [`CircuitBreakerLayer`].
//! - `hedge` (default): [`HedgeLayer`].
//! - `hyper-util` (default): recognise hyper-util connect errors and hyper's canceled and
//!   incomplete-message errors.
//! - `h2`: recognise HTTP/2 REFUSED_STREAM.
//! - `deadline`: consult `tower_deadline::Deadline::effective` and classify its errors.
//! - `tracing` (default): a `debug` event for every retry scheduled or not, and a `warn`
//!   summary of give-ups at most every 10 s (target `tower_retry_classified`).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub mod breaker;
mod budget;
pub mod classify;
mod config;
mod error;
#[cfg(feature = "hedge")]
#[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
pub mod hedge;
mod hint;
mod kind;
mod metrics;
mod replay;
pub mod retry;
mod trace;

pub use backoff::{Backoff, Jitter};
#[cfg(feature = "breaker")]
pub use breaker::{CircuitBreakerBuilder, CircuitBreakerLayer, CircuitHandle, CircuitState};
pub use budget::RetryBudget;
pub use classify::{Classification, Classify, HttpClassifier, Reason, Refine, X_OVERLOADED};
pub use config::{DEFAULT_MAX_HINT, DEFAULT_MAX_RETRIES, DEFAULT_MAX_TOTAL, DEFAULT_REPLAY_CAP};
pub use error::{AttemptTimeout, CircuitOpen, ReplayError};
#[cfg(feature = "hedge")]
pub use hedge::{HedgeBuilder, HedgeLayer};
pub use kind::{Facts, Generic, Http, HttpAs, RequestKind, ResponseKind};
pub use metrics::SkipReason;
pub use replay::ReplayBody;
pub use retry::{MAX_RETRIES_LIMIT, Retry, RetryLayer};

// The README's examples compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The boxed error type of the retry service: the inner service's error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How many attempts produced an HTTP response, in its extensions when it was retried; and,
/// in the extensions of each HTTP request the layer sends again, which attempt it is (2 for the
/// first retry), so a layer under the retry layer (a client span, a log line) can tell a resend
/// from a first try.
///
/// Responses that took one attempt, and first attempts, carry no extension (inserting one would
/// allocate on every call); use [`Attempts::of`] and [`Attempts::of_request`], which read that
/// as 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempts(pub u32);

impl Attempts {
    /// The attempt count of a response that went through the retry layer.
    pub fn of<B>(response: &http::Response<B>) -> u32 {
        response.extensions().get::<Attempts>().map_or(1, |a| a.0)
    }

    /// Which attempt a request the layer sent is: 1 for the first, 2 for the first retry. The
    /// OpenTelemetry attribute `http.request.resend_count` is this minus 1.
    pub fn of_request<B>(request: &http::Request<B>) -> u32 {
        request.extensions().get::<Attempts>().map_or(1, |a| a.0)
    }
}
