//! A client span per attempt sent upstream. Shared with `examples/worker`.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{Request, Response};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use tower::{Layer, Service};
use tower_retry_classified::Attempts;

use super::context::{HeaderInjector, propagator};
use super::future::SpanFuture;

/// A client span around each attempt sent to a provider (below the retry layer, so a retried
/// call is one span per attempt, with `http.request.resend_count`).
#[derive(Clone)]
pub struct ClientSpanLayer {
    tracer: Option<Arc<SdkTracer>>,
}

impl ClientSpanLayer {
    pub fn new(tracer: Option<SdkTracer>) -> Self {
        Self {
            tracer: tracer.map(Arc::new),
        }
    }
}

impl<S> Layer<S> for ClientSpanLayer {
    type Service = ClientSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientSpan {
            inner,
            tracer: self.tracer.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ClientSpan<S> {
    inner: S,
    tracer: Option<Arc<SdkTracer>>,
}

impl<S, B, ResB> Service<Request<B>> for ClientSpan<S>
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

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let Some(tracer) = &self.tracer else {
            return SpanFuture::plain(self.inner.call(request));
        };
        // The server span, current while the request's future is polled (`SpanFuture`).
        let parent = Context::current();
        let method = request.method().as_str().to_owned();
        let uri = request.uri();
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("url.full", uri.to_string()),
            KeyValue::new(
                "http.request.resend_count",
                i64::from(Attempts::of_request(&request) - 1),
            ),
        ];
        if let Some(host) = uri.host() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = uri.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if let Some(deadline) = tower_deadline::Deadline::effective(request.extensions()) {
            attributes.push(KeyValue::new(
                "gateway.deadline.remaining_ms",
                deadline.remaining().as_millis() as i64,
            ));
        }
        let span = tracer
            .span_builder(method)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&**tracer, &parent);
        let cx = parent.with_span(span);
        propagator().inject_context(&cx, &mut HeaderInjector(request.headers_mut()));
        let future = self.inner.call(request);
        SpanFuture::traced(future, cx, tracing::Span::none(), false)
    }
}
