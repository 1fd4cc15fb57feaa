//! W3C trace context (`traceparent`, `tracestate`) in and out of HTTP headers: the
//! propagator, and opentelemetry-http's header adapters. Shared with `examples/worker`.

use opentelemetry_sdk::propagation::TraceContextPropagator;

pub use opentelemetry_http::{HeaderExtractor, HeaderInjector};

/// The W3C trace-context propagator, made once.
pub fn propagator() -> &'static TraceContextPropagator {
    static PROPAGATOR: std::sync::OnceLock<TraceContextPropagator> = std::sync::OnceLock::new();
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}
