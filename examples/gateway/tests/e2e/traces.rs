//! Traces: the real gateway exports over OTLP/HTTP to a receiver written here (protobuf decoded
//! with `opentelemetry-proto`); W3C trace context in from the caller and out to the provider;
//! JSON log lines that carry the trace id.

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::common::*;
use crate::otlp::{Receiver, attributes, hex};

/// The caller's trace: its id and the id of its span, the gateway's server span's parent.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
}

/// Settings that export quickly: the batch goes out 50 ms after a span ends.
fn traced<'a>(receiver: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut settings = env(
        ALL_ON,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("GATEWAY_RETRY_BASE_MS", "10"),
        ],
    );
    settings.extend_from_slice(extra);
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_retried_twice_is_one_trace_under_the_callers_span_with_three_attempts() {
    let receiver = Receiver::start().await;
    let upstream = Upstream::start(vec![status(503), status(502)], status(200)).await;
    let list = upstreams(&[("a", &upstream)]);
    let endpoint = receiver.endpoint();
    let gateway = Gateway::start(&traced(&endpoint, &[("GATEWAY_UPSTREAMS", &list)]));
    let request = Request::get(gateway.url("/v1/chat"))
        .header("traceparent", traceparent())
        .header("x-request-timeout-ms", "5000")
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(upstream.calls(), 3);

    let arrived = eventually(Duration::from_secs(10), || receiver.spans().len() >= 4).await;
    let spans = receiver.spans();
    assert!(arrived, "4 spans exported; got {spans:#?}");
    assert_eq!(spans.len(), 4, "{spans:#?}");
    for span in &spans {
        assert_eq!(hex(&span.trace_id), TRACE_ID, "one trace: {}", span.name);
    }

    let servers: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 1, "{spans:#?}");
    let server = servers[0];
    assert_eq!(server.name, "GET /v1/{*path}");
    assert_eq!(
        hex(&server.parent_span_id),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    let attrs = attributes(server);
    assert_eq!(attrs["http.request.method"], "GET");
    assert_eq!(attrs["http.route"], "/v1/{*path}");
    assert_eq!(attrs["http.response.status_code"], "200");
    let budget: u64 = attrs["gateway.deadline.remaining_ms"].parse().unwrap();
    assert!(
        (4000..=5000).contains(&budget),
        "deadline attribute {budget}"
    );

    let mut clients: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    clients.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(clients.len(), 3, "{spans:#?}");
    let seen = upstream.seen();
    for (i, (client_span, expected_status)) in clients.iter().zip(["503", "502", "200"]).enumerate()
    {
        assert_eq!(
            client_span.parent_span_id, server.span_id,
            "attempt {i} under the server"
        );
        let attrs = attributes(client_span);
        assert_eq!(attrs["http.request.resend_count"], i.to_string());
        assert_eq!(attrs["http.response.status_code"], expected_status);
        assert_eq!(attrs["server.address"], "127.0.0.1");
        assert_eq!(attrs["server.port"], upstream.addr.port().to_string());
        assert!(
            attrs.contains_key("gateway.deadline.remaining_ms"),
            "{attrs:?}"
        );
        // What the provider got: the trace, with this attempt's span as the parent.
        let sent = seen[i].headers["traceparent"].to_str().unwrap();
        assert_eq!(
            sent,
            format!("00-{TRACE_ID}-{}-01", hex(&client_span.span_id)),
            "attempt {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_504_in_the_json_logs_names_the_trace_to_look_it_up_by() {
    let receiver = Receiver::start().await;
    let upstream = Upstream::fixed(200, Duration::from_secs(2)).await;
    let list = upstreams(&[("a", &upstream)]);
    let endpoint = receiver.endpoint();
    let gateway = Gateway::start(&traced(
        &endpoint,
        &[("GATEWAY_UPSTREAMS", &list), ("GATEWAY_LOG_FORMAT", "json")],
    ));
    let request = Request::get(gateway.url("/v1/slow"))
        .header("traceparent", traceparent())
        .header("x-request-timeout-ms", "100")
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.body
    );

    let wanted = format!("\"trace_id\":\"{TRACE_ID}\"");
    let logged = eventually(Duration::from_secs(5), || {
        gateway.stderr().lines().any(|line| line.contains(&wanted))
    })
    .await;
    let stderr = gateway.stderr();
    assert!(logged, "a log line with the trace id; stderr:\n{stderr}");
    let line = stderr.lines().find(|line| line.contains(&wanted)).unwrap();
    assert!(
        line.starts_with('{') && line.ends_with('}'),
        "one JSON object: {line}"
    );
    assert!(line.contains("\"level\":\"WARN\""), "{line}");
    assert!(
        line.contains("\"message\":\"request answered with a server error\""),
        "{line}"
    );
    assert!(line.contains("\"status\":504"), "{line}");

    // And the trace it names has the 504 on its server span.
    let exported = eventually(Duration::from_secs(10), || {
        receiver
            .spans()
            .iter()
            .any(|s| s.kind == SpanKind::Server as i32)
    })
    .await;
    assert!(exported, "the server span was exported");
    let spans = receiver.spans();
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(hex(&server.trace_id), TRACE_ID);
    assert_eq!(attributes(server)["http.response.status_code"], "504");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_traced_and_the_callers_context_passes_through() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(ALL_ON, &[("GATEWAY_UPSTREAMS", &list)]));
    let request = Request::get(gateway.url("/v1/chat"))
        .header("traceparent", traceparent())
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, StatusCode::OK);
    // No span of ours in between: the provider sees the caller's own header, unchanged.
    assert_eq!(
        upstream.seen()[0].headers["traceparent"],
        traceparent().as_str()
    );
}
