//! The layer stacks, each layer present only when its feature flag is on.
//!
//! ```text
//! incoming: server span -> metrics -> router -> deadline -> bounded queue -> proxy (/v1/ only)
//! upstream: metrics (client) -> classified retry -> client span (per attempt) -> faults
//!           -> deadline propagation -> upstream client (per-thread HTTP/1.1 pool)
//! ```
//!
//! Off means the layer is absent, not configured to do nothing: optional HTTP layers go through
//! [`tower_reliability_core::optional`], and the router is wrapped only in the layers that are on.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::handler::Handler;
use axum::routing::get;
use bytes::Bytes;
use example_support::upstream_client::UpstreamClient;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::Either;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use tower::util::MapRequestLayer;
use tower::{BoxError, Service, ServiceBuilder};
use tower_bounded_queue::fair::ByHeader;
use tower_bounded_queue::{BoundedQueueBuilder, QueueHandle, QueueStatus, X_OVERLOAD_STATUS};
use tower_deadline::{ConnectDeadline, DeadlineLayer, PropagateDeadlineLayer};
use tower_metrics_layer::prometheus::PrometheusMetrics;
use tower_metrics_layer::{LabelGuard, MetricsBuilder, RequestHead};
use tower_reliability_core::optional;
use tower_retry_classified::{
    Backoff, CircuitBreakerBuilder, CircuitBreakerLayer, Classification, HttpClassifier, Reason,
    ReplayBody, RetryLayer,
};

use crate::balance::{self, BalanceLayer, Instances};
use crate::canary::{Mode, Side, TENANT};
use crate::config::{Settings, Upstream};
use crate::dispatch::{ProxyFirst, is_proxied};
use crate::fault::FaultLayer;
use crate::proxy::{self, Gateway, Provider};
use crate::routes::{HEALTHZ, KNOWN_ROUTES, METRICS, PROXY_ROUTE, READYZ};
use crate::routing;
use crate::traces::{ClientSpanLayer, ServerSpanLayer};

/// What the client sends: the retry layer's replayable body when retries are on, else the
/// caller's body as it came. Either way nothing is boxed again on its way out.
pub type UpstreamBody = Either<ReplayBody<Body>, Body>;

/// The upstream client (`example_support::upstream_client`, shared with the benchmark's bare
/// proxy): HTTP/1.1 keep-alive with one pool per worker thread, connects bounded by
/// min(connect timeout, request deadline).
///
/// Each worker (see [`crate::serve`]) runs its own runtime, and a pooled connection's task runs
/// on the runtime that opened it. Sharing one pool across workers would hand a request on one
/// thread a connection driven by the other, and each request would then wake a second thread.
/// So each thread keeps its own pool; the layers above clone only the client's `Arc`.
pub type HttpClient = UpstreamClient<ConnectDeadline<HttpConnector>, UpstreamBody>;

pub fn http_client(settings: &Settings) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    UpstreamClient::new(ConnectDeadline::new(http).budget(settings.connect_timeout))
}

/// The client stack for one provider. Every provider gets the same (unnamed) type, so the
/// proxy calls it directly: no boxed service to clone, no boxed future per call.
pub fn upstream_service(
    upstream: &Upstream,
    client: HttpClient,
    settings: &Settings,
    meter: Option<&Meter>,
    tracer: Option<&SdkTracer>,
    breaker: Option<CircuitBreakerLayer>,
) -> impl Service<
    Request<Body>,
    Response = Response<
        impl http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static + use<>,
    >,
    Error = BoxError,
    Future: Send + 'static,
>
+ Clone
+ Send
+ Sync
+ 'static
+ use<> {
    let flags = settings.flags;
    let metrics = meter.map(|meter| {
        MetricsBuilder::http_client(meter)
            .provider(upstream.name.clone())
            .build()
    });
    // The retry layer hands the client `Either::Left(ReplayBody<Body>)`; without it the body is
    // `Either::Right(Body)`.
    // A provider with several instances balances each attempt over them (`balance`); a retry
    // then goes to another instance, so the retry layer here owns retries of overloaded answers.
    let several = upstream.instances.len() > 1;
    let balance = several
        .then(|| BalanceLayer::new(Instances::new(&upstream.name, &upstream.instances, meter)));
    let retry = if flags.retry {
        let mut layer = RetryLayer::for_http()
            .classifier(
                HttpClassifier::new()
                    .retry_overloaded_peers(several)
                    .refine(connect_failures_not_sent),
            )
            .max_retries(settings.retry_max)
            .backoff(Backoff::exponential(settings.retry_base))
            .attempt_body::<UpstreamBody>();
        if let Some(meter) = meter {
            layer = layer.meter(meter);
        }
        tower::util::Either::Left(layer)
    } else {
        tower::util::Either::Right(MapRequestLayer::new(|request: Request<Body>| {
            request.map(Either::Right)
        }))
    };
    let propagate = flags.timeout.then(|| {
        // Cut a provider call 5 ms before the request's deadline: the gateway then answers its
        // 504 in time and counts the call as cut short (`where="outgoing"`).
        let layer = PropagateDeadlineLayer::new().margin(PROPAGATE_MARGIN);
        match meter {
            Some(meter) => layer.meter(meter),
            None => layer,
        }
    });
    // Injected faults (off unless configured) act below the retry layer, as a provider's own
    // failures would (`fault`).
    let faults = settings
        .faults
        .any()
        .then(|| FaultLayer::new(settings.faults.clone()));
    let target = UpstreamTarget::new(&upstream.base);
    // The client metrics see the provider's real URL (`server.address` / `server.port` as the
    // semantic conventions mean them; the provider's name is `provider.name`), once per call
    // whatever the retries.
    ServiceBuilder::new()
        .map_request(move |request| {
            let request = target.apply(request);
            if several {
                balance::mark(request)
            } else {
                request
            }
        })
        .layer(optional(metrics))
        .layer(retry)
        // Below the retry layer, so each attempt counts; a refusal is not retried.
        .option_layer(breaker)
        // Below the breaker: one breaker per provider, each attempt to an instance.
        .option_layer(balance)
        .layer(ClientSpanLayer::new(tracer.cloned()))
        .layer(optional(faults))
        .option_layer(propagate)
        .map_err(Into::<BoxError>::into)
        .service(client)
}

/// The upstream client's connect failures (DNS, unreachable host, ...) never sent the request:
/// retryable for any method, as the classifier already knows refused connections and connect
/// timeouts to be. Its own error type is the gateway's, so the classifier is told here.
fn connect_failures_not_sent<R>(
    outcome: Result<&R, &BoxError>,
    verdict: Classification,
) -> Classification {
    let Err(error) = outcome else {
        return verdict;
    };
    let connect = crate::error_chain::find::<example_support::upstream_client::Error>(&**error)
        .is_some_and(example_support::upstream_client::Error::is_connect);
    if connect && !verdict.is_retryable() {
        return Classification::retryable(Reason::CONNECT_ERROR);
    }
    verdict
}

/// What the gateway keeps back from each provider call's budget: the time to answer its caller
/// when the call is cut short.
const PROPAGATE_MARGIN: std::time::Duration = std::time::Duration::from_millis(5);

/// Where a provider's requests go: its base URL, split once at startup.
#[derive(Clone)]
struct UpstreamTarget {
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without trailing slash; usually empty.
    prefix: String,
    /// `Host` for the provider's real URL, made once: hyper-util's client would otherwise build
    /// it from the URI for every request.
    host: HeaderValue,
}

impl UpstreamTarget {
    fn new(base: &str) -> Self {
        // `base` was validated at startup (`http://host:port` plus an optional path).
        let uri: Uri = base.parse().unwrap_or_default();
        let authority = uri
            .authority()
            .cloned()
            .unwrap_or_else(|| Authority::from_static("localhost"));
        Self {
            scheme: uri.scheme().cloned().unwrap_or(Scheme::HTTP),
            host: HeaderValue::from_str(authority.as_str())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            authority,
            prefix: uri.path().trim_end_matches('/').to_string(),
        }
    }

    /// Turns an origin-form request (path and query, `Host` = provider name) into one for the
    /// provider's real URL and `Host`. Without a prefix this reuses the request's path: no
    /// string is built or parsed.
    fn apply(&self, mut request: Request<Body>) -> Request<Body> {
        let path_and_query = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let path_and_query = if self.prefix.is_empty() {
            Some(path_and_query)
        } else {
            format!("{}{path_and_query}", self.prefix).parse().ok()
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = path_and_query;
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
            // Replaces the provider name in one hashed lookup; the client keeps a `Host` it finds.
            request
                .headers_mut()
                .insert(http::header::HOST, self.host.clone());
        }
        request
    }
}

/// `http.route` of the server metrics. They wrap the whole router (counting 404s too), where
/// axum's `MatchedPath` is not yet set, so the templates are named here; unknown paths get
/// none, never the raw path, so they add no series.
fn route_template(head: &RequestHead<'_>) -> Option<&'static str> {
    let path = head.uri().path();
    if is_proxied(path) {
        return Some(PROXY_ROUTE);
    }
    KNOWN_ROUTES.into_iter().find(|route| *route == path)
}

/// What `main` needs: the service to serve and the queue (for drain and readiness).
pub struct Built<S> {
    pub app: S,
    pub queue: Option<QueueHandle>,
}

/// Builds the whole server for one side of the rollout (`canary`): routes, incoming stack,
/// providers and their client stacks, with that side's flags, its share of the queue, and its
/// metrics tagged with its `cp2.mode`.
pub fn build(
    settings: &Settings,
    upstreams: &[Upstream],
    metrics: Option<&PrometheusMetrics>,
    side: &Side,
    tracer: Option<&SdkTracer>,
) -> Built<
    impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static,
> {
    let settings = &Settings {
        flags: side.flags,
        max_concurrency: share_of(settings.max_concurrency, side.percent()),
        queue_capacity: share_of(settings.queue_capacity, side.percent()),
        ..settings.clone()
    };
    let meter = side
        .flags
        .metrics
        .then_some(metrics)
        .flatten()
        .map(|m| side_meter(m, side.mode));
    let flags = settings.flags;

    let client = http_client(settings);
    let breakers: Vec<Option<CircuitBreakerLayer>> = upstreams
        .iter()
        .map(|u| {
            settings.circuit_breaker.then(|| {
                let builder = CircuitBreakerBuilder::new().name(u.name.clone());
                match &meter {
                    Some(meter) => builder.meter(meter),
                    None => builder,
                }
                .build()
            })
        })
        .collect();
    let circuits = breakers
        .iter()
        .map(|b| b.as_ref().map(|layer| layer.handle()))
        .collect();
    let providers: Vec<_> = upstreams
        .iter()
        .zip(breakers)
        .map(|(u, breaker)| Provider {
            name: u.name.clone(),
            service: upstream_service(u, client.clone(), settings, meter.as_ref(), tracer, breaker),
        })
        .collect();
    let names: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
    let routing_meter = meter
        .clone()
        .unwrap_or_else(|| opentelemetry::global::meter("gateway"));
    let gateway = Arc::new(Gateway {
        router: routing::Router::new(settings.routing, &names, circuits, &routing_meter),
        providers,
    });

    let deadline = flags.timeout.then(|| {
        let layer = DeadlineLayer::new().http().max(settings.timeout);
        match &meter {
            Some(meter) => layer.meter(meter),
            None => layer,
        }
    });
    let queue = flags.queue.then(|| {
        let mut builder = BoundedQueueBuilder::new(settings.max_concurrency)
            .capacity(settings.queue_capacity)
            .name("gateway")
            .fair_share(settings.fair_share_by_tenant.then(|| ByHeader::new(TENANT)));
        if let Some(meter) = &meter {
            builder = builder.meter(meter);
        }
        builder.build().http().status_header(X_OVERLOAD_STATUS)
    });
    let queue_handle = queue.as_ref().map(|q| q.handle());

    // The proxy route is one concrete stack (deadline, queue, handler) that proxied paths reach
    // without going through axum's router (`dispatch`); `route_layer` would also box the route
    // again per layer and clone each box on every request.
    let proxy = proxy::proxy.with_state(gateway);
    let proxy = ServiceBuilder::new()
        .layer(optional(deadline))
        .layer(optional(queue))
        .service(proxy);
    let mut router = Router::new()
        .route(HEALTHZ, get(|| async { "ok" }))
        .route(READYZ, get(readyz).with_state(queue_handle.clone()));
    if let Some(prometheus) = metrics {
        router = router.route(METRICS, get(prometheus.handler()));
    }
    let app = ProxyFirst::new(proxy, router);
    let server_metrics = meter.as_ref().map(|meter| {
        MetricsBuilder::http_server(meter)
            .active_requests(true)
            .route_fn(route_template)
            .label_from_header(
                "tenant",
                TENANT,
                LabelGuard::allowlist(settings.tenant_allowlist.iter().cloned()),
            )
            .build()
    });
    let app = ServiceBuilder::new()
        .layer(ServerSpanLayer::new(tracer.cloned(), side.mode.as_str()))
        .map_response(|response: Response<Either<_, Body>>| {
            response.map(|body| match body {
                Either::Left(metered) => Body::new(metered),
                // Already the router's `Body`: boxing it again would cost an allocation.
                Either::Right(body) => body,
            })
        })
        .layer(optional(server_metrics))
        .service(app);
    Built {
        app,
        queue: queue_handle,
    }
}

/// The meter of one side: its attribute `cp2.mode` lands on every series recorded through it
/// (in Prometheus, label `otel_scope_cp2_mode`).
fn side_meter(metrics: &PrometheusMetrics, mode: Mode) -> Meter {
    let scope = InstrumentationScope::builder("gateway")
        .with_attributes([KeyValue::new("cp2.mode", mode.as_str())])
        .build();
    metrics.meter_provider().meter_with_scope(scope)
}

/// `limit` scaled to a side's share of requests, rounded up so a side never gets 0.
fn share_of(limit: usize, percent: u8) -> usize {
    if percent >= 100 {
        return limit;
    }
    limit
        .saturating_mul(usize::from(percent))
        .div_ceil(100)
        .max(1)
}

async fn readyz(State(queue): State<Option<QueueHandle>>) -> (StatusCode, &'static str) {
    match queue.map(|q| q.status()) {
        Some(QueueStatus::Critical) => (StatusCode::SERVICE_UNAVAILABLE, "critical\n"),
        Some(status) => (StatusCode::OK, status.as_str()),
        None => (StatusCode::OK, "ready"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(base: &str, uri: &str) -> (String, String) {
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = uri.parse().unwrap();
        request
            .headers_mut()
            .insert(http::header::HOST, HeaderValue::from_static("provider:80"));
        let request = UpstreamTarget::new(base).apply(request);
        let host = request.headers()[http::header::HOST].to_str().unwrap();
        (request.uri().to_string(), host.to_string())
    }

    #[test]
    fn requests_go_to_the_provider_url_with_path_and_query() {
        assert_eq!(
            forwarded("http://127.0.0.1:9000", "/v1/chat?stream=1"),
            (
                "http://127.0.0.1:9000/v1/chat?stream=1".to_string(),
                "127.0.0.1:9000".to_string()
            )
        );
        assert_eq!(
            forwarded("http://10.0.0.1/api", "/v1/chat?stream=1"),
            (
                "http://10.0.0.1/api/v1/chat?stream=1".to_string(),
                "10.0.0.1".to_string()
            )
        );
        assert_eq!(
            forwarded("https://example.test:8443/api/", "/v1/x"),
            (
                "https://example.test:8443/api/v1/x".to_string(),
                "example.test:8443".to_string()
            )
        );
    }

    #[test]
    fn route_templates_name_known_routes_and_nothing_else() {
        let route = |path: &str| {
            let request = Request::get(path).body(()).unwrap();
            route_template(&RequestHead::of(&request))
        };
        assert_eq!(route("/v1/chat/completions"), Some(PROXY_ROUTE));
        assert_eq!(route("/v1/"), None, "axum's wildcard needs a segment");
        assert_eq!(route("/v1"), None);
        assert_eq!(route("/healthz"), Some("/healthz"));
        assert_eq!(route("/readyz"), Some("/readyz"));
        assert_eq!(route("/metrics"), Some("/metrics"));
        assert_eq!(route("/admin/secret-123"), None);
    }
}
