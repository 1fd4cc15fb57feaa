//! The layer stacks, each layer present only when its feature flag is on.
//!
//! ```text
//! incoming: metrics -> deadline -> bounded queue -> router (proxy)
//! upstream: metrics (client) -> classified retry -> deadline propagation -> hyper-util client
//! ```
//!
//! Every optional layer goes through `ServiceBuilder::option_layer`: off means the layer is
//! absent, not configured to do nothing. The two branches of the resulting `Either` must have
//! the same response type, so each optional layer is followed by [`BodyLayer`], which turns its
//! response body back into `axum::body::Body`.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::{any, get};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::metrics::Meter;
use tower::layer::util::{Identity, Stack};
use tower::util::{BoxCloneSyncService, MapResponse};
use tower::{BoxError, Layer, Service, ServiceBuilder};
use tower_bounded_queue::{BoundedQueueLayer, QueueHandle, QueueStatus, X_OVERLOAD_STATUS};
use tower_deadline::{ConnectDeadline, DeadlineLayer, PropagateDeadlineLayer};
use tower_metrics_layer::prometheus::PrometheusMetrics;
use tower_metrics_layer::{LabelGuard, MetricsLayer};
use tower_retry_classified::{Backoff, ReplayBody, RetryLayer};

use crate::config::{Settings, Upstream};
use crate::proxy::{self, Gateway, Provider};
use crate::routing;

/// The client stack of one provider, type-erased so providers fit in one `Vec`.
pub type UpstreamService = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// The shared hyper-util client: connects bounded by min(connect timeout, request deadline).
pub type HttpClient = Client<ConnectDeadline<HttpConnector>, Body>;

/// Converts the response body of the wrapped service to `axum::body::Body`.
pub struct BodyLayer<B>(PhantomData<fn() -> B>);

impl<B> BodyLayer<B> {
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<B> Clone for BodyLayer<B> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<S, B, ResBody> Layer<S> for BodyLayer<B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Service = MapResponse<S, fn(Response<ResBody>) -> Response<Body>>;

    fn layer(&self, inner: S) -> Self::Service {
        MapResponse::new(inner, proxy::into_body::<ResBody>)
    }
}

/// `layer`, then its response body back to `Body`: one branch of an `option_layer`.
fn normalized<L>(layer: L) -> ServiceBuilder<Stack<L, Stack<BodyLayer<Body>, Identity>>> {
    ServiceBuilder::new().layer(BodyLayer::new()).layer(layer)
}

pub fn http_client(settings: &Settings) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let connector = ConnectDeadline::new(http).budget(settings.connect_timeout);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// The client stack for one provider.
pub fn upstream_service(
    upstream: &Upstream,
    client: HttpClient,
    settings: &Settings,
    meter: Option<&Meter>,
) -> UpstreamService {
    let flags = settings.flags;
    let metrics = meter
        .map(|meter| normalized(MetricsLayer::http_client(meter).provider(upstream.name.clone())));
    let retry = flags.retry.then(|| {
        let mut layer = RetryLayer::http()
            .max_retries(settings.retry_max)
            .backoff(Backoff::exponential(settings.retry_base));
        if let Some(meter) = meter {
            layer = layer.meter(meter);
        }
        // The retry layer hands its inner service `ReplayBody<Body>`; the client takes `Body`.
        ServiceBuilder::new()
            .layer(layer)
            .map_request(|request: Request<ReplayBody<Body>>| request.map(Body::new))
    });
    let propagate = flags.timeout.then(|| {
        let layer = PropagateDeadlineLayer::new();
        match meter {
            Some(meter) => layer.meter(meter),
            None => layer,
        }
    });
    let base = upstream.base.clone();
    let stack = ServiceBuilder::new()
        .option_layer(metrics)
        .map_request(move |request| to_upstream(request, &base))
        .option_layer(retry)
        .option_layer(propagate)
        .layer(BodyLayer::new())
        .map_err(Into::<BoxError>::into)
        .service(client);
    BoxCloneSyncService::new(stack)
}

/// Turns an origin-form request (path and query, `Host` = provider name) into one for the
/// provider's real URL; the client sets `Host` from it.
fn to_upstream(mut request: Request<Body>, base: &str) -> Request<Body> {
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    // `base` was validated at startup and the path came from a parsed URI, so this parses.
    if let Ok(uri) = format!("{base}{path_and_query}").parse::<Uri>() {
        *request.uri_mut() = uri;
        request.headers_mut().remove(http::header::HOST);
    }
    request
}

/// `Host` naming a provider for the client metrics: `name:port` of its base URL.
fn provider_host(upstream: &Upstream) -> HeaderValue {
    let port = upstream
        .base
        .parse::<Uri>()
        .ok()
        .and_then(|uri| uri.port_u16())
        .unwrap_or(80);
    HeaderValue::from_str(&format!("{}:{port}", upstream.name))
        .unwrap_or_else(|_| HeaderValue::from_static("upstream"))
}

/// What `main` needs besides the router: the queue (for drain and readiness).
pub struct Built {
    pub app: Router,
    pub queue: Option<QueueHandle>,
}

/// Builds the whole server: routes, incoming stack, providers and their client stacks.
pub fn build(
    settings: &Settings,
    upstreams: &[Upstream],
    metrics: Option<&PrometheusMetrics>,
) -> Built {
    let meter = metrics.map(|m| m.meter("gateway"));
    let flags = settings.flags;

    let client = http_client(settings);
    let providers: Vec<Provider> = upstreams
        .iter()
        .map(|u| Provider {
            name: u.name.clone(),
            host: provider_host(u),
            service: upstream_service(u, client.clone(), settings, meter.as_ref()),
        })
        .collect();
    let names: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
    let routing_meter = meter
        .clone()
        .unwrap_or_else(|| opentelemetry::global::meter("gateway"));
    let gateway = Arc::new(Gateway {
        router: routing::Router::new(settings.routing, &names, &routing_meter),
        providers,
    });

    let deadline = flags.timeout.then(|| {
        let layer = DeadlineLayer::http().max(settings.timeout);
        normalized(match &meter {
            Some(meter) => layer.meter(meter),
            None => layer,
        })
    });
    let queue = flags.queue.then(|| {
        let mut layer = BoundedQueueLayer::new(settings.max_concurrency)
            .capacity(settings.queue_capacity)
            .name("gateway");
        if let Some(meter) = &meter {
            layer = layer.meter(meter);
        }
        layer.http().status_header(X_OVERLOAD_STATUS)
    });
    let queue_handle = queue.as_ref().map(|q| q.handle());
    let incoming = ServiceBuilder::new()
        .option_layer(deadline)
        .option_layer(queue.map(normalized));

    let mut app = Router::new()
        .route("/v1/{*path}", any(proxy::proxy))
        .route_layer(incoming)
        .with_state(gateway)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(queue_handle.clone()));
    if let Some(prometheus) = metrics {
        app = app.route("/metrics", get(prometheus.handler()));
    }
    let server_metrics = meter.as_ref().map(|meter| {
        normalized(
            MetricsLayer::http_server(meter)
                .active_requests(true)
                .label_from_header(
                    "tenant",
                    HeaderName::from_static("x-tenant-id"),
                    LabelGuard::allowlist(settings.tenant_allowlist.iter().cloned()),
                ),
        )
    });
    // `Router::layer` runs after routing, so `http.route` is the matched template
    // (`/v1/{*path}`); unknown paths have no route label, never the raw path.
    let app = app.layer(ServiceBuilder::new().option_layer(server_metrics));
    Built {
        app,
        queue: queue_handle,
    }
}

async fn readyz(State(queue): State<Option<QueueHandle>>) -> (StatusCode, &'static str) {
    match queue.map(|q| q.status()) {
        Some(QueueStatus::Critical) => (StatusCode::SERVICE_UNAVAILABLE, "critical\n"),
        Some(status) => (StatusCode::OK, status.as_str()),
        None => (StatusCode::OK, "ready"),
    }
}
