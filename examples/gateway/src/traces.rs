//! Traces: a server span per request and a client span per upstream attempt, W3C trace
//! context (`traceparent`, `tracestate`) read from callers and written to providers, exported
//! over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set. Unset, nothing is built and both layers pass requests straight through.
//!
//! The spans use OpenTelemetry's API directly rather than bridging `tracing` spans: the gateway
//! needs two spans per request and their attributes, not every `tracing` span as an OTel one.
//! Each request also runs inside a `tracing` span carrying its `trace_id`, so every log line
//! written while serving it (the gateway's and the layers' events) names the trace.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{Request, Response};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use tower::{Layer, Service};

pub use example_support::traces::{ClientSpanLayer, Traces};

use example_support::traces::{HeaderExtractor, SpanFuture, propagator};

/// Records the request's deadline on the server span, in the handler (the deadline layer sits
/// inside the server span's layer, so only code below it knows the budget).
pub fn note_deadline(extensions: &http::Extensions) {
    let cx = Context::current();
    if !cx.has_active_span() {
        return;
    }
    if let Some(deadline) = tower_deadline::Deadline::effective(extensions) {
        cx.span().set_attribute(KeyValue::new(
            "gateway.deadline.remaining_ms",
            deadline.remaining().as_millis() as i64,
        ));
    }
}

/// The route template of a path, as the metrics name it: low-cardinality span names.
fn route_of(path: &str) -> Option<&'static str> {
    if crate::dispatch::is_proxied(path) {
        return Some("/v1/{*path}");
    }
    crate::routes::KNOWN_ROUTES
        .iter()
        .copied()
        .find(|route| *route == path)
}

/// A server span around each request (outermost layer of a side's stack).
#[derive(Clone)]
pub struct ServerSpanLayer {
    tracer: Option<Arc<SdkTracer>>,
    mode: &'static str,
}

impl ServerSpanLayer {
    /// `tracer` `None`: requests pass through untouched. `mode` is the canary side's name.
    pub fn new(tracer: Option<SdkTracer>, mode: &'static str) -> Self {
        Self {
            tracer: tracer.map(Arc::new),
            mode,
        }
    }
}

impl<S> Layer<S> for ServerSpanLayer {
    type Service = ServerSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerSpan {
            inner,
            tracer: self.tracer.clone(),
            mode: self.mode,
        }
    }
}

#[derive(Clone)]
pub struct ServerSpan<S> {
    inner: S,
    tracer: Option<Arc<SdkTracer>>,
    mode: &'static str,
}

impl<S, B, ResB> Service<Request<B>> for ServerSpan<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = SpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(tracer) = &self.tracer else {
            return SpanFuture::plain(self.inner.call(request));
        };
        let parent = propagator().extract(&HeaderExtractor(request.headers()));
        let method = request.method().as_str().to_owned();
        let route = route_of(request.uri().path());
        let name = match route {
            Some(route) => format!("{method} {route}"),
            None => method.clone(),
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", request.uri().path().to_owned()),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("cp2.mode", self.mode),
        ];
        if let Some(route) = route {
            attributes.push(KeyValue::new("http.route", route));
        }
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&**tracer, &parent);
        let cx = parent.with_span(span);
        let trace_id = cx.span().span_context().trace_id().to_string();
        // At `error` level so that any filter that lets a line through keeps the span, and the
        // line its `trace_id`: a span below the filter's level would be dropped with its fields.
        let log_span = tracing::error_span!(target: "gateway", "request", trace_id);
        // Layers that decide in `call` (the deadline read, the queue's admission) log inside
        // the request's span too.
        let future = {
            let _otel = cx.clone().attach();
            let _log = log_span.enter();
            self.inner.call(request)
        };
        SpanFuture::traced(future, cx, log_span, true)
    }
}
