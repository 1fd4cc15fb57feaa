//! Admission control for tower services: a bounded wait queue in front of a concurrency limit
//! that **rejects instead of exhausting memory**.
//!
//! At most `concurrency` requests are inside the inner service at once and at most `capacity`
//! (default 1000) wait for a slot; anything beyond is answered at once with [`Overloaded`]
//! (503 in [HTTP mode](BoundedQueueLayer::http)) while the admitted work carries on. Decisions are
//! made in `call` on counts alone, so unlike `LoadShed` over `Buffer` nothing is shed because a
//! `poll_ready` happened to be pending (tokio's coop budget), and unlike `Buffer` nothing is
//! poisoned by a failed worker: there is no worker.
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_bounded_queue::{BoundedQueueBuilder, OverloadReason, Overloaded};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // One request at a time, nobody may wait.
//! let layer = BoundedQueueBuilder::new(1).capacity(0).build();
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|req: &'static str| async move { Ok::<_, Infallible>(req.len()) }));
//!
//! let first = svc.ready().await?.call("hello"); // admitted: holds the only slot
//! let second = svc.ready().await?.call("world"); // nowhere to wait: rejected at once
//! assert_eq!(handle.in_flight(), 1);
//!
//! let error = second.await.unwrap_err();
//! let overloaded = error.downcast_ref::<Overloaded>().expect("the queue's own error");
//! assert_eq!(overloaded.reason(), OverloadReason::Full);
//! assert_eq!(overloaded.capacity(), 0);
//!
//! assert_eq!(first.await?, 5);
//! assert_eq!(handle.in_flight(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! # What it offers
//!
//! - **Two limits**: `concurrency` inside, `capacity` waiting; when full, reject the newest
//!   (default) or drop the oldest waiter ([`Overflow::DropOldest`]).
//! - **Bounded waits**: [`max_wait`](BoundedQueueBuilder::max_wait) gives [`QueueTimeout`]; with the
//!   `deadline` feature a waiter whose `tower_deadline::Deadline` passes leaves with
//!   `DeadlineExceeded` (stage `queued`) and never reaches the inner service.
//! - **No leaks, no poisoning**: a dropped response future frees its place or slot at once (also
//!   while unwinding from a panic in the inner service); the queue keeps serving.
//! - **Graceful close**: [`QueueHandle::close`] stops admitting, [`QueueHandle::drain`] waits for
//!   in-flight and queued work.
//! - **Adaptive concurrency** ([`BoundedQueueBuilder::adaptive`], [`Adaptive`]): the limit moves
//!   between a floor and a ceiling by AIMD on the latency and failures of completed requests,
//!   and the queue still rejects at `capacity`. Read it with
//!   [`QueueHandle::concurrency_limit`].
//! - **Fair share** ([`BoundedQueueBuilder::fair_by`], [`fair`]): while requests wait, each key
//!   (a tenant, a flow) holds at most its share of the capacity and waiters are served across
//!   keys in turn, so one tenant flooding the queue cannot shut the others out. Refusals carry
//!   [`OverloadReason::FairShare`]; keys are bounded (64 by default, the rest share one).
//! - **Status**: [`QueueHandle::status`] is [`QueueStatus`] healthy / degraded / overloaded /
//!   critical (50% and 80% of capacity by default, critical when full).
//! - **HTTP mode**: [`BoundedQueueLayer::http`] answers 503 with `Retry-After` and
//!   `x-overloaded`, 504, or a gRPC status instead of erroring, so axum needs no
//!   `HandleErrorLayer`. The answers are the family's one protocol
//!   ([`tower_reliability_core::answer`]); a proxy answers the queue's errors from its client
//!   stack with `tower_reliability_core::error_response`.
//! - **One place for its state**: [`BoundedQueueBuilder::build`] creates the queue; the layer
//!   and its clones share it and have no setters.
//! - **Metrics** on the OpenTelemetry API (a [`Meter`](opentelemetry::metrics::Meter) you pass, or
//!   the global one): `tower.queue.depth`, `tower.queue.in_flight`, `tower.queue.rejections`
//!   (attribute `reason`: `full`, `dropped_oldest`, `queue_timeout`, `deadline`, `closed`, and
//!   with fair share `fair_share`),
//!   `tower.queue.wait` (seconds), `tower.queue.status` (0 to 3) and
//!   `tower.queue.concurrency_limit` (fixed or adaptive) and, for an adaptive limit,
//!   `tower.queue.concurrency_floor`, each with `tower.queue.name`. Each
//!   `reason` of `tower.queue.rejections` is a series at 0 from the first collection. Depth,
//!   in-flight, status and the limit are observed at collection time, so the success path records
//!   nothing; `tower.queue.wait` records the requests that had to wait.
//! - **Logs** (feature `tracing`, on by default): a `debug` event for each request admitted after
//!   a wait, each rejection and each change of an adaptive limit, and a `warn` summary of
//!   rejections at most every 10 s (target `tower_bounded_queue`); nothing for a request admitted
//!   at once.
//!
//! # Cost
//!
//! The success path (a free slot, nobody waiting) is one compare-and-swap on an atomic word, a
//! reference-count increment and a clone of the inner service; no lock, no allocation. Only
//! waiting requests take a mutex (never across an await) and allocate their queue entry. An
//! adaptive limit adds two clock reads and a few atomic loads per request, a compare-and-swap
//! for each of a window's first `limit` requests at full use and one per change of the limit;
//! the lock is taken only when a growing limit admits waiters.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adaptive;
mod admission;
mod config;
mod error;
pub mod fair;
mod future;
mod handle;
mod http;
mod layer;
mod metrics;
mod service;
mod slot;
mod status;
mod trace;
mod waiting;

pub use crate::adaptive::Adaptive;
pub use crate::error::{OverloadReason, Overloaded, QueueTimeout};
pub use crate::future::{QueueMode, ResponseFuture};
pub use crate::handle::QueueHandle;
pub use crate::http::X_OVERLOAD_STATUS;
pub use crate::layer::{BoundedQueueBuilder, BoundedQueueLayer, Overflow};
pub use crate::service::BoundedQueue;
pub use crate::status::QueueStatus;
pub use tower_reliability_core::X_OVERLOADED;

/// The boxed error of [`BoundedQueue`], the same type as `tower::BoxError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// Compiles the README's quick start as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The task-local deadline at `call` time, as an instant of tokio's clock.
fn current_deadline<Req>(_request: &Req) -> Option<tokio::time::Instant> {
    #[cfg(feature = "deadline")]
    {
        tower_deadline::Deadline::current().map(|d| d.instant())
    }
    #[cfg(not(feature = "deadline"))]
    {
        None
    }
}
