//! Traces: a consumer span per job, child of the `traceparent` in the job message's NATS headers,
//! and a client span per `http_call` attempt whose context goes to the provider, exported over
//! OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. So a job sent by a traced caller (or
//! through the gateway) is one trace across caller, worker and provider.
//!
//! The export, the HTTP header propagation, the client span and the span future are shared
//! with the gateway (`example_support::traces`).

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

pub use example_support::traces::{ClientSpanLayer, Traces};

/// A NATS message's headers, as the W3C propagator reads them.
struct NatsHeaders<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// The consumer span of one job received on `subject`: the caller's span (from the message's
/// `traceparent`) as its parent. The returned context is current while the job runs.
pub fn job_span(
    tracer: &SdkTracer,
    headers: Option<&async_nats::HeaderMap>,
    subject: &str,
    id: &str,
    pool: &str,
) -> Context {
    let parent = match headers {
        Some(headers) => example_support::traces::propagator().extract(&NatsHeaders(headers)),
        None => Context::new(),
    };
    let span = tracer
        .span_builder(format!("process {subject}"))
        .with_kind(SpanKind::Consumer)
        .with_attributes([
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", subject.to_owned()),
            KeyValue::new("messaging.message.id", id.to_owned()),
            KeyValue::new("worker.pool", pool.to_owned()),
        ])
        .start_with_context(tracer, &parent);
    parent.with_span(span)
}

/// Ends a job's span with its reply's status (`ok`, or what went wrong).
pub fn end_job(cx: &Context, status: &str) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("worker.job.status", status.to_owned()));
    if status != "ok" {
        span.set_status(Status::error(status.to_owned()));
    }
    span.end();
}
