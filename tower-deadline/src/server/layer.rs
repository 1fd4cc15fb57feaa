use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use opentelemetry::metrics::Meter;
use tower_layer::Layer;

use super::service::{DeadlineService, Shared};
use crate::headers::MillisHeaders;
use crate::metrics::Metrics;
use tower_reliability_core::{ErrorMode, HttpMode};

/// The default cap on any request's deadline: long enough for any interactive request, short
/// enough that a forgotten client cannot hold a slot for minutes.
pub const DEFAULT_MAX: Duration = Duration::from_secs(30);

/// The smallest cap [`DeadlineLayer::max`] takes; smaller values (zero included) are raised to
/// it, since a zero cap would answer every request as expired.
pub const MIN_MAX: Duration = Duration::from_millis(1);

/// Server-side deadline layer: effective deadline = min(incoming header, server cap).
///
/// For each request it
/// 1. reads `grpc-timeout` and the millisecond headers (`x-request-timeout-ms`, and Envoy's
///    `x-envoy-expected-rq-timeout-ms`), taking the tightest;
/// 2. caps that with [`max`](Self::max) (default 30 s), or uses the cap alone when no header came;
/// 3. answers at once, without calling the inner service, when no time is left;
/// 4. otherwise puts the [`Deadline`](crate::Deadline) into the request's extensions and into the
///    task-local scope of the inner service's `call` and future, and stops (drops) the inner future
///    if the deadline passes first.
///
/// A malformed header is ignored (the cap applies) and counted in `tower.deadline.invalid`;
/// with [`strict`](Self::strict) it is answered with 400 (gRPC: `grpc-status: 3`) instead.
///
/// [`DeadlineLayer::new`] reports misses as errors ([`ErrorMode`]); [`.http()`](Self::http)
/// turns it into a layer that answers them ([`HttpMode`]) with 504 (gRPC: HTTP 200 with
/// `grpc-status: 4` DEADLINE_EXCEEDED), never 408 or CANCELLED.
///
/// Settings follow the family's one rule: out-of-range values are clamped to the documented
/// bounds, never rejected later, never ignored. The layer shares no state between the services
/// it makes, so configuring a clone changes only that clone.
#[derive(Debug)]
pub struct DeadlineLayer<M = ErrorMode> {
    max: Duration,
    headers: MillisHeaders,
    strict: bool,
    meter: Option<Meter>,
    _mode: PhantomData<fn() -> M>,
}

impl<M> Clone for DeadlineLayer<M> {
    fn clone(&self) -> Self {
        Self {
            max: self.max,
            headers: self.headers.clone(),
            strict: self.strict,
            meter: self.meter.clone(),
            _mode: PhantomData,
        }
    }
}

impl Default for DeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl DeadlineLayer {
    /// A layer whose service fails with [`DeadlineExceeded`](crate::DeadlineExceeded) (boxed).
    pub fn new() -> Self {
        Self {
            max: DEFAULT_MAX,
            headers: MillisHeaders::default(),
            strict: false,
            meter: None,
            _mode: PhantomData,
        }
    }

    /// Answers missed deadlines with responses instead of errors: 504 with a short body, or for
    /// gRPC requests HTTP 200 with `grpc-status: 4` (see [`tower_reliability_core::answer`]).
    /// Inner errors pass through unchanged; response bodies become
    /// [`ResponseBody`](tower_reliability_core::ResponseBody).
    pub fn http(self) -> DeadlineLayer<HttpMode> {
        DeadlineLayer {
            max: self.max,
            headers: self.headers,
            strict: self.strict,
            meter: self.meter,
            _mode: PhantomData,
        }
    }
}

impl<M> DeadlineLayer<M> {
    /// The server's own cap on every request's deadline (default [`DEFAULT_MAX`], 30 s),
    /// clamped to at least [`MIN_MAX`] (1 ms); very large caps saturate at decades.
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max.max(MIN_MAX);
        self
    }

    /// The millisecond header to read (default `x-request-timeout-ms`). Envoy's
    /// `x-envoy-expected-rq-timeout-ms` and `grpc-timeout` are still read.
    pub fn header_name(mut self, name: HeaderName) -> Self {
        self.headers.set_primary(name);
        self
    }

    /// One more millisecond header to read.
    pub fn also_read(mut self, name: HeaderName) -> Self {
        self.headers.also_read(name);
        self
    }

    /// Answer malformed deadline headers with 400 / `grpc-status: 3` (or an
    /// [`InvalidDeadlineHeader`](crate::InvalidDeadlineHeader) error) instead of ignoring them.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Record metrics on this meter instead of the global one named `tower-deadline`.
    pub fn meter(mut self, meter: &Meter) -> Self {
        self.meter = Some(meter.clone());
        self
    }
}

impl<S, M> Layer<S> for DeadlineLayer<M> {
    type Service = DeadlineService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService::new(
            inner,
            Arc::new(Shared {
                max: self.max,
                headers: self.headers.clone(),
                strict: self.strict,
                metrics: Metrics::new(self.meter.as_ref()),
            }),
        )
    }
}
