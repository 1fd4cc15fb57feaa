use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use opentelemetry::metrics::Meter;
use tower_layer::Layer;

use super::service::{PropagateDeadline, Shared};
use crate::headers::REQUEST_TIMEOUT_MS;
use crate::metrics::Metrics;

/// Client-side deadline layer for outgoing HTTP and gRPC requests.
///
/// For each request it takes the deadline from the request's extensions or the task-local scope
/// (the earliest of the two), subtracts a safety [`margin`](Self::margin) for the time the answer
/// takes to travel back, and
/// - fails at once with [`DeadlineExceeded`](crate::DeadlineExceeded), sending nothing, when less
///   than a millisecond is left;
/// - otherwise writes the budget as `grpc-timeout` (gRPC requests) or as the millisecond header
///   (default `x-request-timeout-ms`), replacing any value already there, and fails with
///   `DeadlineExceeded` (stage `outgoing`) if the answer has not come when that budget runs out,
///   that is `margin` before the deadline, which leaves the margin to answer the caller.
///
/// Requests with no deadline pass through untouched, with no timer.
#[derive(Clone, Debug)]
pub struct PropagateDeadlineLayer {
    margin: Duration,
    header: HeaderName,
    meter: Option<Meter>,
}

impl Default for PropagateDeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PropagateDeadlineLayer {
    /// A layer with no margin, writing `x-request-timeout-ms` on plain HTTP requests.
    pub fn new() -> Self {
        Self {
            margin: Duration::ZERO,
            header: REQUEST_TIMEOUT_MS,
            meter: None,
        }
    }

    /// Time kept back from the budget written downstream and from the local cut (default 0), so
    /// the downstream's answer, or ours when the call is cut, has time to come back before our
    /// own deadline. With a server [`DeadlineLayer`](crate::DeadlineLayer) above on the same
    /// deadline, any margin makes a call cut short count as `outgoing`, not `handling`.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The millisecond header written on plain HTTP requests (default `x-request-timeout-ms`).
    pub fn header_name(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// Record metrics on this meter instead of the global one named `tower-deadline`.
    pub fn meter(mut self, meter: &Meter) -> Self {
        self.meter = Some(meter.clone());
        self
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline::new(
            inner,
            Arc::new(Shared {
                margin: self.margin,
                header: self.header.clone(),
                metrics: Metrics::new(self.meter.as_ref()),
            }),
        )
    }
}
