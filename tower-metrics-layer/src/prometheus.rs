//! Prometheus export (feature `prometheus`): an SDK meter provider wired to the
//! `opentelemetry-prometheus` exporter, and a `/metrics` endpoint.
//!
//! ```
//! use tower_metrics_layer::{MetricsLayer, prometheus::PrometheusMetrics};
//!
//! let metrics = PrometheusMetrics::builder().without_target_info().build()?;
//! let layer = MetricsLayer::http_server(&metrics.meter("my-app"));
//! // axum: Router::new().route("/metrics", axum::routing::get(metrics.handler())).layer(layer)
//! let text = metrics.render()?;
//! assert!(text.is_empty() || text.contains("# TYPE"));
//! # let _ = layer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, SdkMeterProvider, Stream,
};
use prometheus::{Registry, TextEncoder};
use tower_service::Service;

/// `Content-Type` of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Default SDK cardinality limit per instrument set by our views.
pub const DEFAULT_CARDINALITY_LIMIT: usize = 2000;

/// Why [`PrometheusBuilder::build`] failed.
#[derive(Debug)]
pub struct BuildError {
    message: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid Prometheus metrics configuration: {}",
            self.message
        )
    }
}

impl std::error::Error for BuildError {}

/// Why [`PrometheusMetrics::render`] failed.
#[derive(Debug)]
pub struct RenderError(prometheus::Error);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to encode metrics: {}", self.0)
    }
}

impl std::error::Error for RenderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Configures [`PrometheusMetrics`].
#[derive(Debug, Clone)]
pub struct PrometheusBuilder {
    target_info: bool,
    scope_labels: bool,
    cardinality_limit: usize,
    duration_boundaries: Option<Vec<f64>>,
    resource: Option<Resource>,
    namespace: Option<String>,
}

impl Default for PrometheusBuilder {
    fn default() -> Self {
        Self {
            target_info: true,
            scope_labels: true,
            cardinality_limit: DEFAULT_CARDINALITY_LIMIT,
            duration_boundaries: None,
            resource: None,
            namespace: None,
        }
    }
}

impl PrometheusBuilder {
    /// Do not export the `target_info` metric (resource attributes).
    pub fn without_target_info(mut self) -> Self {
        self.target_info = false;
        self
    }

    /// Do not add `otel_scope_*` labels to every series.
    pub fn without_scope_labels(mut self) -> Self {
        self.scope_labels = false;
        self
    }

    /// SDK cardinality limit for every instrument (default 2000). Series beyond it
    /// are folded by the SDK into one `otel_metric_overflow="true"` series. Clamped to at
    /// least 1.
    pub fn cardinality_limit(mut self, limit: usize) -> Self {
        self.cardinality_limit = limit.max(1);
        self
    }

    /// Override bucket boundaries (seconds) of every `*.duration` histogram, whatever
    /// the instrument advised. Clamped like
    /// [`MetricsBuilder::duration_boundaries`](crate::MetricsBuilder::duration_boundaries):
    /// non-finite and negative values are dropped, the rest sorted and deduplicated, and an
    /// empty list is the default.
    pub fn duration_boundaries(mut self, boundaries: impl Into<Vec<f64>>) -> Self {
        self.duration_boundaries = Some(crate::buckets::normalize_boundaries(boundaries.into()));
        self
    }

    /// The resource (e.g. `service.name`) reported in `target_info`.
    pub fn resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Prefix every metric name with `namespace_`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Builds the registry, exporter and meter provider. Settings are clamped as they are
    /// set, so an error here comes from the exporter itself, never from a setting.
    pub fn build(self) -> Result<PrometheusMetrics, BuildError> {
        let limit = self.cardinality_limit;
        let boundaries = self.duration_boundaries;
        // The settings are clamped valid; building the stream once here still turns an SDK
        // that disagrees into an error now rather than a view that silently does not apply.
        let check = move |b: Option<Vec<f64>>| {
            let mut s = Stream::builder().with_cardinality_limit(limit);
            if let Some(b) = b {
                s = s.with_aggregation(Aggregation::ExplicitBucketHistogram {
                    boundaries: b,
                    record_min_max: true,
                });
            }
            s.build()
        };
        check(boundaries.clone()).map_err(|e| BuildError {
            message: e.to_string(),
        })?;

        let registry = Registry::new();
        let mut exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(self.scope_labels);
        if !self.target_info {
            exporter = exporter.without_target_info();
        }
        if let Some(ns) = self.namespace {
            exporter = exporter.with_namespace(ns);
        }
        let exporter = exporter.build().map_err(|e| BuildError {
            message: e.to_string(),
        })?;
        let mut provider =
            SdkMeterProvider::builder()
                .with_reader(exporter)
                .with_view(move |i: &Instrument| {
                    let duration_override = (i.kind() == InstrumentKind::Histogram
                        && i.name().ends_with(".duration"))
                    .then(|| boundaries.clone())
                    .flatten();
                    check(duration_override).ok()
                });
        if let Some(resource) = self.resource {
            provider = provider.with_resource(resource);
        }
        Ok(PrometheusMetrics {
            inner: Arc::new(Inner {
                registry,
                provider: provider.build(),
            }),
        })
    }
}

struct Inner {
    registry: Registry,
    provider: SdkMeterProvider,
}

/// An OpenTelemetry SDK meter provider exporting to a Prometheus registry.
///
/// Cheap to clone. Hand [`meter`](Self::meter) to
/// [`MetricsLayer`](crate::MetricsLayer) and serve [`service`](Self::service) or
/// [`handler`](Self::handler) at `/metrics`.
#[derive(Clone)]
pub struct PrometheusMetrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusMetrics").finish_non_exhaustive()
    }
}

impl PrometheusMetrics {
    /// Starts a configuration.
    pub fn builder() -> PrometheusBuilder {
        PrometheusBuilder::default()
    }

    /// The SDK meter provider (e.g. to install with `opentelemetry::global::set_meter_provider`).
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.inner.provider
    }

    /// A meter of this provider.
    pub fn meter(&self, name: &'static str) -> Meter {
        self.inner.provider.meter(name)
    }

    /// The Prometheus registry the exporter writes to.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The current metrics in text exposition format 0.0.4.
    pub fn render(&self) -> Result<String, RenderError> {
        TextEncoder::new()
            .encode_to_string(&self.inner.registry.gather())
            .map_err(RenderError)
    }

    /// A tower service answering every `GET`/`HEAD` with the metrics (405 otherwise).
    pub fn service(&self) -> MetricsEndpoint {
        MetricsEndpoint {
            metrics: self.clone(),
        }
    }

    /// A handler for `axum::routing::get(metrics.handler())`.
    pub fn handler(&self) -> impl Fn() -> Ready<Response<String>> + Clone + Send + Sync + 'static {
        let metrics = self.clone();
        move || ready(metrics.response())
    }

    fn response(&self) -> Response<String> {
        match self.render() {
            Ok(text) => {
                let mut res = Response::new(text);
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
                res
            }
            Err(e) => {
                let mut res = Response::new(e.to_string());
                *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                res
            }
        }
    }
}

/// Tower service serving the metrics; see [`PrometheusMetrics::service`].
#[derive(Clone, Debug)]
pub struct MetricsEndpoint {
    metrics: PrometheusMetrics,
}

impl<B> Service<Request<B>> for MetricsEndpoint {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let res = match *req.method() {
            Method::GET => self.metrics.response(),
            Method::HEAD => self.metrics.response().map(|_| String::new()),
            _ => {
                let mut res = Response::new(String::from("method not allowed\n"));
                *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                res.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                res
            }
        };
        ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_clamped_as_they_are_set() {
        let builder = PrometheusMetrics::builder()
            .cardinality_limit(0)
            .duration_boundaries(vec![1.0, 0.5, f64::NAN]);
        assert_eq!(builder.cardinality_limit, 1);
        assert_eq!(builder.duration_boundaries, Some(vec![0.5, 1.0]));
        assert!(builder.build().is_ok());
    }
}
