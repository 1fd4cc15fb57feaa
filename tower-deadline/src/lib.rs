//! One deadline for a whole request: every hop, queue, retry, connect and file operation.
//!
//! A caller says how long it will wait (`grpc-timeout`, or `x-request-timeout-ms`); the server
//! caps that with its own limit, answers at once if no time is left, and otherwise hands the
//! absolute [`Deadline`] to everything the request does: the handler (request extensions), code
//! with no request at hand (a task-local scope, [`Deadline::current`]), outgoing calls (which
//! write the *remaining* budget downstream), connects and file I/O. When the deadline passes the
//! work is dropped and the caller gets 504, gRPC `DEADLINE_EXCEEDED`, or a typed
//! [`DeadlineExceeded`] error.
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_deadline::{Deadline, DeadlineLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let app = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new().max(Duration::from_secs(30)).http())
//!     .service(service_fn(|request: Request<String>| async move {
//!         // The handler sees the effective deadline: min(header, cap).
//!         let deadline = Deadline::from_extensions(request.extensions()).unwrap();
//!         assert_eq!(deadline.remaining(), Duration::from_millis(1500));
//!         tokio::time::sleep(Duration::from_secs(5)).await; // too slow
//!         Ok::<_, Infallible>(Response::new(String::from("done")))
//!     }));
//!
//! let request = Request::builder()
//!     .header("x-request-timeout-ms", "1500")
//!     .body(String::new())
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
//! # }
//! ```
//!
//! # Pieces
//!
//! - [`server`]: [`DeadlineLayer`], the server layer. [`DeadlineLayer::new`] fails with errors
//!   ([`ErrorMode`](tower_reliability_core::ErrorMode)); `.http()` answers with responses
//!   ([`HttpMode`](tower_reliability_core::HttpMode)), like every layer of the family.
//! - [`propagate`]: [`PropagateDeadlineLayer`], the client layer that writes the remaining budget
//!   on each outgoing request and enforces it locally.
//! - [`connect`]: [`ConnectDeadline`] bounds a connector (hyper-util's `HttpConnector`) by
//!   min(connect budget, current deadline).
//! - [`enforce`] / [`enforce_within`] and [`fs`]: run any future, or a file operation, under the
//!   current deadline.
//!
//! The client side: a hyper-util client whose connects are bounded by the deadline, behind a
//! layer that sends what is left of it (less a margin for the way back) with each request:
//!
//! ```
//! use std::time::Duration;
//! use hyper_util::client::legacy::{Client, connect::HttpConnector};
//! use hyper_util::rt::TokioExecutor;
//! use tower::ServiceBuilder;
//! use tower_deadline::{ConnectDeadline, PropagateDeadlineLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let connector = ConnectDeadline::new(HttpConnector::new()).budget(Duration::from_secs(2));
//! let client: Client<_, String> = Client::builder(TokioExecutor::new()).build(connector);
//! let upstream = ServiceBuilder::new()
//!     .layer(PropagateDeadlineLayer::new().margin(Duration::from_millis(20)))
//!     .service(client);
//! # let _ = upstream;
//! # }
//! ```
//!
//! Every error ([`DeadlineExceeded`], [`ConnectTimeout`], [`InvalidDeadlineHeader`]) is a
//! [`Rejection`](tower_reliability_core::Rejection): a proxy answers any of them, found anywhere
//! in an error's source chain, with `tower_reliability_core::error_response`.
//!
//! # Wire formats
//!
//! `grpc-timeout` follows the gRPC over HTTP/2 spec exactly (1 to 8 digits, units `H M S m u n`);
//! outgoing values use the most precise unit that fits and are truncated, never rounded up.
//! Millisecond headers are plain non-negative integers. When several headers arrive the tightest
//! wins; malformed ones are ignored and counted (or refused in strict mode).
//!
//! # Metrics
//!
//! Through the OpenTelemetry API, on the meter you pass (default: the global meter named
//! `tower-deadline`): `tower.deadline.exceeded` (attribute `where`: `arrival`, `handling`,
//! `outgoing`, `operation`, `queued`) and `tower.deadline.invalid`. Every one of these series
//! exists from the first collection, at 0, so a rate over it reads 0 until something happens.
//!
//! # Logs
//!
//! With the `tracing` feature (on by default), `debug` events with target `tower_deadline` for
//! each deadline read (its source header, the budget asked and granted, whether the cap cut it),
//! each malformed header and each deadline exceeded (where), and a `warn` summary of exceeded
//! deadlines at most every 10 s.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bounded;
pub mod connect;
mod deadline;
mod enforce;
mod error;
#[cfg(feature = "fs")]
#[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
pub mod fs;
mod grpc_timeout;
mod headers;
mod metrics;
mod millis;
pub mod propagate;
pub mod server;
mod trace;

pub use connect::{
    ConnectDeadline, ConnectDeadlineLayer, DEFAULT_CONNECT_BUDGET, MIN_CONNECT_BUDGET,
};
pub use deadline::{Deadline, Scoped};
pub use enforce::{Enforced, enforce, enforce_within};
pub use error::{ConnectTimeout, DeadlineExceeded, InvalidDeadlineHeader, Stage};
pub use headers::{ENVOY_EXPECTED_RQ_TIMEOUT_MS, GRPC_TIMEOUT, REQUEST_TIMEOUT_MS};
pub use metrics::DeadlineMetrics;
pub use propagate::{PropagateDeadline, PropagateDeadlineLayer};
pub use server::{DeadlineLayer, DeadlineService};

// The README's examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The boxed error type of the error-mode services, the same as `tower::BoxError`.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Encoding and decoding of the wire formats, for code that builds or reads headers itself.
pub mod wire {
    use std::time::Duration;

    use http::HeaderValue;

    /// Parses a `grpc-timeout` value; `None` if it is not 1 to 8 digits and one of `H M S m u n`.
    pub fn decode_grpc_timeout(value: &[u8]) -> Option<Duration> {
        crate::grpc_timeout::decode(value).ok()
    }

    /// Encodes a `grpc-timeout` value in the most precise unit that fits 8 digits, truncated.
    pub fn encode_grpc_timeout(timeout: Duration) -> HeaderValue {
        crate::grpc_timeout::encode(timeout)
    }

    /// Parses a millisecond header value; `None` unless it is 1 or more ASCII digits.
    pub fn decode_millis(value: &[u8]) -> Option<Duration> {
        crate::millis::decode(value)
    }

    /// Encodes whole milliseconds, truncated.
    pub fn encode_millis(timeout: Duration) -> HeaderValue {
        crate::millis::encode(timeout)
    }
}
