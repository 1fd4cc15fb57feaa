//! The future of both span layers: the inner future with its span current while polled, the
//! span ended with the outcome. Shared with `examples/worker`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http::Response;
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use pin_project_lite::pin_project;
use tracing::Instrument as _;
use tracing::instrument::Instrumented;

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
    pub fn plain(inner: F) -> Self {
        SpanFuture::Plain { inner }
    }

    /// `log_failure`: a 5xx answer is logged at `warn` inside `log_span` (server spans).
    pub fn traced(inner: F, cx: Context, log_span: tracing::Span, log_failure: bool) -> Self {
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
