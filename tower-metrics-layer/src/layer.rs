//! [`MetricsBuilder`] (settings) and [`MetricsLayer`]: the builder turns its [`Config`] into
//! one [`Recorder`] shared by all the services its layer makes.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use http::{HeaderName, Method};
use opentelemetry::metrics::Meter;
use opentelemetry::{Key, Value};
use tower_layer::Layer;

use crate::buckets::{DEFAULT_DURATION_BOUNDARIES, LONG_DURATION_BOUNDARIES, normalize_boundaries};
use crate::config::{
    Config, DEFAULT_MAX_SERIES, DEFAULT_MAX_TARGETS, ExtraLabel, KnownMethods, LabelSource, Mode,
};
use crate::head::RequestHead;
use crate::label_guard::LabelGuard;
use crate::recorder::Recorder;
use crate::request_body::{Metered, Unchanged};
use crate::service::MetricsService;

/// Settings of a [`MetricsLayer`]; [`build`](Self::build) creates its recorder (instruments,
/// series cache, label caps), once.
///
/// Start from the same constructors as the layer's ([`http_server`](Self::http_server),
/// [`http_client`](Self::http_client), [`grpc_server`](Self::grpc_server),
/// [`grpc_client`](Self::grpc_client)). Every setter follows the family's one rule:
/// out-of-range values are clamped to the documented bounds, never rejected later, never
/// ignored.
///
/// Recorded (server mode), following the OpenTelemetry HTTP semantic conventions:
///
/// | instrument | kind | when |
/// |---|---|---|
/// | `http.server.request.duration` (s) | histogram | always; until the response head is ready |
/// | `http.server.active_requests` | up-down counter | [`active_requests(true)`](Self::active_requests) |
/// | `http.server.response.body.size` (By) | histogram | [`body_size(true)`](Self::body_size) |
/// | `http.server.request.body.size` (By) | histogram | [`request_body_size()`](Self::request_body_size) |
/// | `tower.metrics.cardinality.overflow` | counter | when a cap refused a value |
///
/// Client mode records `http.client.*` with `server.address` and `server.port`
/// instead of `http.route`: the host and port of the absolute request URI (userinfo is never
/// recorded) or, for an origin-form URI, of the `Host` header; the port defaults to 80 or 443
/// by scheme (see [`https`](Self::https) for origin-form requests). With no host known, neither
/// is recorded. With [`request_body_size`](Self::request_body_size),
/// `http.*.request.body.size` (By) is recorded too; the type parameter `W` says how
/// request bodies are wrapped (see [`request_body`](crate::request_body)).
pub struct MetricsBuilder<W = Unchanged> {
    config: Config,
    _wrap: PhantomData<fn() -> W>,
}

impl<W> Clone for MetricsBuilder<W> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            _wrap: PhantomData,
        }
    }
}

impl MetricsBuilder {
    /// Server metrics (`http.server.request.duration` and friends) recorded on `meter`.
    ///
    /// With the `axum` feature, `http.route` is read from axum's `MatchedPath`.
    pub fn http_server(meter: &Meter) -> Self {
        Self::new(Mode::Server, meter)
    }

    /// Client metrics (`http.client.request.duration` with `server.address` and `server.port`).
    pub fn http_client(meter: &Meter) -> Self {
        Self::new(Mode::Client, meter)
    }

    /// gRPC server metrics: `rpc.server.call.duration` with `rpc.system.name`,
    /// `rpc.method` (from the path, capped like routes; `_OTHER` beyond the cap) and
    /// `rpc.status_code` read from the response headers (trailers-only responses) or
    /// the trailers. The call is recorded when the status is known, i.e. usually
    /// at the end of the response body; a body dropped first records
    /// `error.type="cancelled"`. Active requests and body sizes are not recorded.
    pub fn grpc_server(meter: &Meter) -> Self {
        Self::new(Mode::GrpcServer, meter)
    }

    /// gRPC client metrics: `rpc.client.call.duration`, as [`grpc_server`](Self::grpc_server)
    /// plus `server.address` and `server.port`. Every non-OK status is an error.
    pub fn grpc_client(meter: &Meter) -> Self {
        Self::new(Mode::GrpcClient, meter)
    }

    /// Server metrics on the global meter named `tower-metrics-layer`.
    pub fn http_server_global() -> Self {
        Self::http_server(&opentelemetry::global::meter(env!("CARGO_PKG_NAME")))
    }

    fn new(mode: Mode, meter: &Meter) -> Self {
        Self {
            config: Config {
                mode,
                meter: meter.clone(),
                boundaries: DEFAULT_DURATION_BOUNDARIES.to_vec(),
                methods: KnownMethods::default(),
                default_scheme: 0,
                route_fn: None,
                matched_path: cfg!(feature = "axum"),
                label: None,
                provider: None,
                error_type: None,
                active_requests: false,
                body_size: false,
                max_targets: DEFAULT_MAX_TARGETS,
                max_series: DEFAULT_MAX_SERIES,
                request_body_size: false,
            },
            _wrap: PhantomData,
        }
    }
}

impl<W> MetricsBuilder<W> {
    fn with(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Histogram bucket boundaries in seconds (default: the 14 recommended by
    /// OpenTelemetry, 0.005 to 10 s). Non-finite and negative values are dropped and
    /// the rest sorted and deduplicated; an empty list falls back to the default.
    pub fn duration_boundaries(self, boundaries: impl Into<Vec<f64>>) -> Self {
        let b = normalize_boundaries(boundaries.into());
        self.with(|c| c.boundaries = b)
    }

    /// Use [`LONG_DURATION_BOUNDARIES`](crate::LONG_DURATION_BOUNDARIES) (up to 300 s),
    /// for streaming or long-polling endpoints.
    pub fn long_requests(self) -> Self {
        self.duration_boundaries(LONG_DURATION_BOUNDARIES.to_vec())
    }

    /// Methods recorded by name; every other method becomes `_OTHER` (default: the nine
    /// RFC 9110 + PATCH methods). At most 254 are kept.
    pub fn known_methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let m = KnownMethods::new(methods);
        self.with(|c| c.methods = m)
    }

    /// `url.scheme` to record when the request URI has none (servers usually see
    /// only a path): `true` for `https`, `false` (default) for `http`.
    pub fn https(self, https: bool) -> Self {
        self.with(|c| c.default_scheme = u8::from(https))
    }

    /// Name the route of a request (server mode). Return a low-cardinality template
    /// such as `"/users/{id}"`, never the raw path; `None` omits `http.route`.
    /// Takes precedence over axum's `MatchedPath`.
    pub fn route_fn<F>(self, f: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Option<&'static str> + Send + Sync + 'static,
    {
        self.with(|c| c.route_fn = Some(Arc::new(f)))
    }

    /// Cap on distinct `http.route` / `rpc.method` values, and separately on
    /// `server.address` values and on `server.address` + `server.port` pairs (default 1000
    /// each; at most 65,536). Further routes are omitted, further gRPC methods become
    /// `_OTHER`, and a request to a further address or pair records neither `server.address`
    /// nor `server.port` (one address on ever new ports would otherwise still grow); all are
    /// counted in `tower.metrics.cardinality.overflow`. `0` records no routes at all.
    pub fn max_targets(self, max: usize) -> Self {
        self.with(|c| c.max_targets = max)
    }

    /// Cap on cached series (default 2000, the SDK's default cardinality limit; at
    /// most 65,536). Beyond it, requests are still recorded, only without the cache,
    /// and each such record is counted in `tower.metrics.cardinality.overflow`
    /// (`dimension="series"`). Keep it at or below the SDK cardinality limit of the
    /// instrument: then every series the SDK would fold into its
    /// `otel.metric.overflow` bucket has been counted first. `0` disables the cache.
    pub fn max_series(self, max: usize) -> Self {
        self.with(|c| c.max_series = max)
    }

    /// Add one extra attribute `key` whose value comes from request header `header`,
    /// passed through `guard` (see [`LabelGuard`]). Absent or non-UTF-8 header values
    /// omit or `other` the attribute respectively.
    ///
    /// Only one extra label is supported per layer; a later call replaces it.
    pub fn label_from_header(
        self,
        key: &'static str,
        header: HeaderName,
        guard: LabelGuard,
    ) -> Self {
        guard.name(key);
        self.with(|c| {
            c.label = Some(ExtraLabel {
                key: Key::from_static_str(key),
                source: LabelSource::Header(header),
                guard,
            })
        })
    }

    /// Like [`label_from_header`](Self::label_from_header) with a function reading the value.
    pub fn label_fn<F>(self, key: &'static str, f: F, guard: LabelGuard) -> Self
    where
        F: for<'a> Fn(&RequestHead<'a>) -> Option<&'a str> + Send + Sync + 'static,
    {
        guard.name(key);
        self.with(|c| {
            c.label = Some(ExtraLabel {
                key: Key::from_static_str(key),
                source: LabelSource::Fn(Arc::new(f)),
                guard,
            })
        })
    }

    /// Record a `provider.name` attribute with this fixed value on every request
    /// (client mode: names the upstream, e.g. `"openai"`).
    pub fn provider(self, name: impl Into<String>) -> Self {
        let v = Value::from(name.into());
        self.with(|c| c.provider = Some(v))
    }

    /// Name errors of the inner service for `error.type`.
    ///
    /// The function receives the error as `&dyn Any`; downcast it to the service's
    /// error type (for a boxed error, `tower::BoxError`). Return a low-cardinality
    /// name such as `"timeout"` or `"overloaded"`. When it returns `None` (or is not
    /// set), built-in names apply: `timeout` for an `std::io::Error` of kind
    /// `TimedOut` and, with the `deadline` feature, for `tower_deadline::DeadlineExceeded`,
    /// `connect_timeout` for `tower_deadline::ConnectTimeout` (also found inside a
    /// `BoxError` or its `source()` chain); anything else is `_OTHER`.
    pub fn error_type_fn<F>(self, f: F) -> Self
    where
        F: Fn(&dyn Any) -> Option<&'static str> + Send + Sync + 'static,
    {
        self.with(|c| c.error_type = Some(Arc::new(f)))
    }

    /// Record `http.{server,client}.active_requests` (off by default). The count is
    /// decremented when the response body ends or is dropped, or when the response
    /// future is dropped.
    pub fn active_requests(self, on: bool) -> Self {
        self.with(|c| c.active_requests = on)
    }

    /// Record `http.{server,client}.response.body.size` from the bytes actually
    /// streamed (off by default).
    pub fn body_size(self, on: bool) -> Self {
        self.with(|c| c.body_size = on)
    }

    /// Also record `http.{server,client}.request.body.size` from the bytes actually
    /// read from each request body, by wrapping it in
    /// [`MeteredRequestBody`](crate::request_body::MeteredRequestBody): the inner
    /// service then receives `Request<MeteredRequestBody<B>>`. Inside axum's
    /// `Router::layer`, use [`request_body_size_axum`](Self::request_body_size_axum).
    ///
    /// The size is recorded once both the body has ended (or been dropped) and the
    /// response is known, with the response's attributes. Costs one allocation per
    /// request. Not recorded in gRPC modes.
    pub fn request_body_size(self) -> MetricsBuilder<Metered> {
        self.rewrap()
    }

    /// Like [`request_body_size`](Self::request_body_size), keeping the request body an
    /// `axum::body::Body` so the layer fits `Router::layer` (two allocations per request).
    #[cfg(feature = "axum")]
    pub fn request_body_size_axum(self) -> MetricsBuilder<crate::request_body::AxumMetered> {
        self.rewrap()
    }

    fn rewrap<W2>(self) -> MetricsBuilder<W2> {
        let mut config = self.config;
        config.request_body_size = true;
        MetricsBuilder {
            config,
            _wrap: PhantomData,
        }
    }

    /// Read `http.route` from axum's `MatchedPath` (default on with the `axum` feature).
    ///
    /// `MatchedPath` is set by the router, so this only sees it when the layer is
    /// applied with `Router::layer` / `Router::route_layer`, not around the router.
    #[cfg(feature = "axum")]
    pub fn matched_path(self, on: bool) -> Self {
        self.with(|c| c.matched_path = on)
    }

    /// Creates the recorder: the one place the layer's instruments, series cache and label
    /// caps are made. Every service the layer builds, and every clone of the layer, shares it.
    pub fn build(self) -> MetricsLayer<W> {
        MetricsLayer {
            recorder: Arc::new(Recorder::new(self.config)),
            _wrap: PhantomData,
        }
    }
}

impl<W> fmt::Debug for MetricsBuilder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsBuilder")
            .field("mode", &self.config.mode)
            .field("boundaries", &self.config.boundaries)
            .field("active_requests", &self.config.active_requests)
            .field("body_size", &self.config.body_size)
            .finish_non_exhaustive()
    }
}

/// A [`Layer`] recording OpenTelemetry HTTP metrics for each request.
///
/// [`MetricsLayer::http_server`] and its siblings give a layer with every default;
/// [`MetricsBuilder`] (same constructors) adjusts it, and its `build` creates the recorder. The
/// layer has no setters: it and its clones share one recorder, so a clone can never become a
/// second set of caches by accident.
///
/// Recorded (server mode), following the OpenTelemetry HTTP semantic conventions:
///
/// | instrument | kind | when |
/// |---|---|---|
/// | `http.server.request.duration` (s) | histogram | always; until the response head is ready |
/// | `http.server.active_requests` | up-down counter | [`active_requests(true)`](MetricsBuilder::active_requests) |
/// | `http.server.response.body.size` (By) | histogram | [`body_size(true)`](MetricsBuilder::body_size) |
/// | `http.server.request.body.size` (By) | histogram | [`request_body_size()`](MetricsBuilder::request_body_size) |
/// | `tower.metrics.cardinality.overflow` | counter | when a cap refused a value |
///
/// Client mode records `http.client.*` with `server.address` and `server.port`
/// instead of `http.route`: the host and port of the absolute request URI (userinfo is never
/// recorded) or, for an origin-form URI, of the `Host` header; the port defaults to 80 or 443
/// by scheme (see [`https`](MetricsBuilder::https) for origin-form requests). With no host
/// known, neither is recorded. The type parameter `W` says how request bodies are wrapped (see
/// [`request_body`](crate::request_body)).
pub struct MetricsLayer<W = Unchanged> {
    recorder: Arc<Recorder>,
    _wrap: PhantomData<fn() -> W>,
}

impl MetricsLayer {
    /// Server metrics with every default; see [`MetricsBuilder::http_server`].
    pub fn http_server(meter: &Meter) -> Self {
        MetricsBuilder::http_server(meter).build()
    }

    /// Client metrics with every default; see [`MetricsBuilder::http_client`].
    pub fn http_client(meter: &Meter) -> Self {
        MetricsBuilder::http_client(meter).build()
    }

    /// gRPC server metrics with every default; see [`MetricsBuilder::grpc_server`].
    pub fn grpc_server(meter: &Meter) -> Self {
        MetricsBuilder::grpc_server(meter).build()
    }

    /// gRPC client metrics with every default; see [`MetricsBuilder::grpc_client`].
    pub fn grpc_client(meter: &Meter) -> Self {
        MetricsBuilder::grpc_client(meter).build()
    }

    /// Server metrics on the global meter named `tower-metrics-layer`.
    pub fn http_server_global() -> Self {
        MetricsBuilder::http_server_global().build()
    }
}

impl Default for MetricsLayer {
    /// [`MetricsLayer::http_server_global`]: server metrics on the global meter.
    fn default() -> Self {
        Self::http_server_global()
    }
}

impl<W> MetricsLayer<W> {
    pub(crate) fn recorder(&self) -> Arc<Recorder> {
        Arc::clone(&self.recorder)
    }
}

impl<W> Clone for MetricsLayer<W> {
    fn clone(&self) -> Self {
        Self {
            recorder: Arc::clone(&self.recorder),
            _wrap: PhantomData,
        }
    }
}

impl<W> fmt::Debug for MetricsLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsLayer").finish_non_exhaustive()
    }
}

impl<S, W> Layer<S> for MetricsLayer<W> {
    type Service = MetricsService<S, W>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService::new(inner, self.recorder())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use tower::{ServiceExt, service_fn};

    #[tokio::test]
    async fn series_cache_is_bounded() {
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
        let layer = MetricsBuilder::http_server(&provider.meter("t"))
            .max_series(2)
            .build();
        let recorder = layer.recorder();
        for status in [200u16, 201, 202, 203, 204] {
            let svc = layer.layer(service_fn(move |_req: http::Request<String>| async move {
                let mut res = http::Response::new(String::new());
                *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
                Ok::<_, std::convert::Infallible>(res)
            }));
            let res = svc
                .oneshot(http::Request::new(String::new()))
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), status);
        }
        assert_eq!(recorder.cached_series(), 2);
    }

    #[test]
    fn clones_share_one_recorder_and_each_build_makes_one() {
        let meter = opentelemetry::global::meter("t");
        let builder = MetricsBuilder::http_server(&meter).active_requests(true);
        let a = builder.clone().build();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.recorder(), &b.recorder()));
        assert!(!Arc::ptr_eq(&a.recorder(), &builder.build().recorder()));
    }
}
