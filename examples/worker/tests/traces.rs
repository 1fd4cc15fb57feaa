//! Traces across a caller, the worker and a provider: a job whose NATS message carries a
//! `traceparent` runs in a consumer span under the caller's span, its `http_call` in a client
//! span under that, and the provider receives the trace. Spans are decoded by the OTLP/HTTP
//! receiver of `test-support/otlp-receiver`.

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;

use otlp_receiver::{Receiver, attributes, hex};
use worker_harness::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_job_is_one_trace_across_caller_worker_and_provider() {
    let receiver = Receiver::start().await;
    let endpoint = receiver.endpoint();
    let nats = NatsServer::start();
    let env: Vec<(&str, &str)> = ALL_ON
        .into_iter()
        .chain([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ])
        .collect();
    let _worker = Worker::start(&nats, &env);
    let provider = Provider::start(200).await;
    let client = connect(&nats).await;
    let job = json!({
        "id": "traced-1",
        "pool": "io",
        "steps": [{"type": "http_call", "url": format!("{}/v1/work", provider.url), "method": "GET"}]
    });
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let reply = request(
        &client,
        &job,
        &[("traceparent", traceparent.as_str())],
        Duration::from_secs(20),
    )
    .await
    .expect("the job is answered");
    assert_eq!(status(&reply), "ok", "{reply}");

    let started = std::time::Instant::now();
    while receiver.spans().len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spans = receiver.spans();
    assert_eq!(spans.len(), 2, "a job span and an attempt span: {spans:#?}");
    let find = |kind: SpanKind| -> &Span {
        spans
            .iter()
            .find(|s| s.kind == kind as i32)
            .unwrap_or_else(|| panic!("a {kind:?} span in {spans:#?}"))
    };
    let job_span = find(SpanKind::Consumer);
    let attempt = find(SpanKind::Client);
    assert_eq!(hex(&job_span.trace_id), TRACE_ID);
    assert_eq!(hex(&attempt.trace_id), TRACE_ID);
    assert_eq!(
        hex(&job_span.parent_span_id),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(
        attempt.parent_span_id, job_span.span_id,
        "the attempt is the job's child"
    );
    assert_eq!(job_span.name, "process jobs");
    let attrs = attributes(job_span);
    assert_eq!(attrs["messaging.system"], "nats");
    assert_eq!(attrs["messaging.message.id"], "traced-1");
    assert_eq!(attrs["worker.job.status"], "ok");
    let attrs = attributes(attempt);
    assert_eq!(attrs["http.request.resend_count"], "0");
    assert_eq!(attrs["http.response.status_code"], "200");

    let heads = provider.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    let expected = format!("traceparent: 00-{TRACE_ID}-{}-01", hex(&attempt.span_id));
    assert!(
        heads[0].to_ascii_lowercase().contains(&expected),
        "the provider got the attempt's context: {}",
        heads[0]
    );
}
