//! Traces: a server span per request and a client span per upstream attempt, W3C trace
//! context (`traceparent`, `tracestate`) read from callers and written to providers, exported
//! over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set. Unset, nothing is built and both layers pass requests straight through.
//!
//! The spans use OpenTelemetry's API directly rather than bridging `tracing` spans: the gateway
//! needs two spans per request and their attributes, not every `tracing` span as an OTel one.
//! Each request also runs inside a `tracing` span carrying its `trace_id`, so every log line
//! written while serving it (the gateway's and the layers' events) names the trace.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_retry_classified::Attempts;
use tracing::Instrument as _;
use tracing::instrument::Instrumented;

/// The tracer provider, present when an OTLP endpoint is configured.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Built when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
    /// (the exporter reads them, and `OTEL_BSP_*` for batching). Exports run on `runtime`:
    /// the SDK's batch thread hands each request to it and waits for the answer.
    pub fn from_env(runtime: tokio::runtime::Handle) -> Result<Option<Self>, String> {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
        if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(RuntimeClient::new(runtime))
            .build()
            .map_err(|e| format!("OTLP trace exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("gateway").build())
            .build();
        Ok(Some(Self { provider }))
    }

    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("gateway")
    }

    /// Sends the spans still buffered; called on the way out.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "traces not all exported at shutdown");
        }
    }
}

/// The OTLP exporter's HTTP client: the gateway's own hyper client, driven on a runtime of its
/// choosing. The SDK exports from a plain thread (`futures` executor), where hyper cannot run;
/// the request is spawned on the runtime and its answer awaited through the join handle.
#[derive(Clone, Debug)]
struct RuntimeClient {
    runtime: tokio::runtime::Handle,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl RuntimeClient {
    fn new(runtime: tokio::runtime::Handle) -> Self {
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Self { runtime, client }
    }
}

/// Answers to exports are small status messages; anything longer is not read.
const MAX_EXPORT_ANSWER: usize = 64 * 1024;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeClient {
    async fn send_bytes(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let call = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_EXPORT_ANSWER)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(Response::from_parts(parts, body))
        };
        self.runtime.spawn(call).await?
    }
}

fn propagator() -> &'static TraceContextPropagator {
    static PROPAGATOR: std::sync::OnceLock<TraceContextPropagator> = std::sync::OnceLock::new();
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

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
    crate::stack::KNOWN_ROUTES
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

pin_project! {
    /// The inner future, with its span current while it is polled; ends the span with the
    /// outcome.
    #[project = SpanFutureProj]
    pub enum SpanFuture<F> {
        Plain { #[pin] inner: F },
        Traced {
            #[pin] inner: Instrumented<WithContext<F>>,
            cx: Context,
            // Server spans: a 5xx answer is logged, naming the trace.
            log_failure: bool,
        },
    }
}

impl<F> SpanFuture<F> {
    fn plain(inner: F) -> Self {
        SpanFuture::Plain { inner }
    }

    fn traced(inner: F, cx: Context, log_span: tracing::Span, log_failure: bool) -> Self {
        SpanFuture::Traced {
            inner: inner.with_context(cx.clone()).instrument(log_span),
            cx,
            log_failure,
        }
    }
}

impl<F, B, E> Future for SpanFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: std::fmt::Display,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project() {
            SpanFutureProj::Plain { inner } => inner.poll(task),
            SpanFutureProj::Traced {
                mut inner,
                cx,
                log_failure,
            } => {
                let output = std::task::ready!(inner.as_mut().poll(task));
                let span = cx.span();
                match &output {
                    Ok(response) => {
                        let status = response.status();
                        span.set_attribute(KeyValue::new(
                            "http.response.status_code",
                            i64::from(status.as_u16()),
                        ));
                        if status.is_server_error() {
                            span.set_attribute(KeyValue::new(
                                "error.type",
                                status.as_u16().to_string(),
                            ));
                            span.set_status(Status::error(""));
                            if *log_failure {
                                // Inside the request's span: the line names its trace.
                                let _in_request = inner.span().enter();
                                tracing::warn!(
                                    target: "gateway",
                                    status = status.as_u16(),
                                    "request answered with a server error"
                                );
                            }
                        }
                    }
                    Err(error) => {
                        span.set_attribute(KeyValue::new("error.type", "error"));
                        span.set_status(Status::error(error.to_string()));
                    }
                }
                span.end();
                Poll::Ready(output)
            }
        }
    }
}
