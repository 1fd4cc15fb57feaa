//! OTLP/HTTP export of spans: the tracer provider, built only when an endpoint is configured,
//! and the HTTP client the exporter sends through.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// The tracer provider, present when an OTLP endpoint is configured.
pub struct Traces {
    provider: SdkTracerProvider,
    service: &'static str,
}

impl Traces {
    /// `service` names the program (`service.name`). Built when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
    /// (the exporter reads them, and `OTEL_BSP_*` for batching). Exports run on `runtime`:
    /// the SDK's batch thread hands each request to it and waits for the answer.
    pub fn from_env(
        runtime: tokio::runtime::Handle,
        service: &'static str,
    ) -> Result<Option<Self>, String> {
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
            .with_resource(Resource::builder().with_service_name(service).build())
            .build();
        Ok(Some(Self { provider, service }))
    }

    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer(self.service)
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
