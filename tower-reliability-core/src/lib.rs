//! The answer protocol shared by the tower reliability crates (`tower-deadline`,
//! `tower-retry-classified`, `tower-bounded-queue`, `tower-metrics-layer`): what they agree on,
//! written once.
//!
//! - [`Rejection`]: why a layer turned a request away (HTTP status, gRPC code, message,
//!   `Retry-After`, the [`X_OVERLOADED`] marker). Every layer's error implements it.
//! - [`answer`]: a rejection as an HTTP answer, or as a gRPC trailers-only answer, chosen from
//!   the request's `content-type` ([`Protocol::of`]).
//! - [`error_response`]: for a proxy, the answer to an error that has any of our rejections
//!   anywhere in its `source()` chain, in one call.
//! - [`ErrorMode`] and [`HttpMode`]: every layer that can answer by itself is
//!   `FooLayer<M = ErrorMode>` and `.http()` turns it into `FooLayer<HttpMode>`, whose responses
//!   carry a [`ResponseBody`].
//! - [`optional`]: any HTTP layer switched on or off by configuration, with one service type
//!   and no boxing.
//! - [`Summary`]: the limiter behind the crates' rate-limited `warn` summaries.
//!
//! Most users never name this crate: the layers' `.http()` and their errors are enough. A proxy
//! answering the errors of a client stack uses [`error_response`]:
//!
//! ```
//! use std::time::Duration;
//! use tower_reliability_core::{Protocol, Rejection, error_response, register};
//!
//! #[derive(Debug)]
//! struct CircuitOpen;
//! impl std::fmt::Display for CircuitOpen {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("circuit open")
//!     }
//! }
//! impl std::error::Error for CircuitOpen {}
//! impl Rejection for CircuitOpen {
//!     fn http_status(&self) -> http::StatusCode { http::StatusCode::SERVICE_UNAVAILABLE }
//!     fn grpc_code(&self) -> u8 { 14 }
//!     fn retry_after(&self) -> Option<Duration> { Some(Duration::from_secs(5)) }
//!     fn overloaded(&self) -> bool { true }
//! }
//! register::<CircuitOpen>(); // our crates do this for their own errors
//!
//! let error: Box<dyn std::error::Error + Send + Sync> = Box::new(CircuitOpen);
//! let response = error_response::<String>(&*error, Protocol::Http).unwrap();
//! assert_eq!(response.status(), 503);
//! assert_eq!(response.headers()["retry-after"], "5");
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod mode;
mod optional;
mod rejection;
mod summary;

pub use body::ResponseBody;
pub use mode::{ErrorMode, HttpMode, Mode};
pub use optional::{Optional, OptionalFuture, OptionalService, optional};
pub use rejection::{
    GRPC_RETRY_PUSHBACK_MS, Protocol, Rejection, X_OVERLOADED, answer, error_response, find,
    grpc_code, is_grpc, register, retry_after_secs,
};
pub use summary::{SUMMARY_EVERY, Summary};

// The README's example compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
