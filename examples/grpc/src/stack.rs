//! The layer stacks every hop uses, in the order a user would copy:
//!
//! ```text
//! server: metrics (grpc_server) -> deadline (read grpc-timeout, cap, enforce) -> bounded queue -> service
//! client: metrics (grpc_client) -> classified retry -> deadline propagation -> tonic Channel
//! ```

use std::time::Duration;

use opentelemetry::metrics::Meter;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::Channel;
use tower::layer::util::{Identity, Stack};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder};
use tower_bounded_queue::{BoundedQueueBuilder, BoundedQueueLayer};
use tower_deadline::{DeadlineLayer, PropagateDeadlineLayer};
use tower_metrics_layer::MetricsLayer;
use tower_reliability_core::HttpMode;
use tower_retry_classified::{Backoff, HttpClassifier, ReplayBody, RetryLayer};

/// How one hop is set up.
#[derive(Clone, Debug)]
pub struct HopSettings {
    /// The server's cap on every call's deadline.
    pub max_deadline: Duration,
    /// Calls handled at once.
    pub concurrency: usize,
    /// Calls that may wait for a slot; beyond it, UNAVAILABLE at once.
    pub queue_capacity: usize,
    /// Retries after the first attempt (client side).
    pub max_retries: u32,
    /// Base of the exponential backoff (client side).
    pub retry_base: Duration,
    /// Taken off the budget handed to the next hop, for the answer's way back. Callers that
    /// time their calls themselves (tonic's `Request::set_timeout` does, and reports its own
    /// expiry as CANCELLED) then get the next hop's DEADLINE_EXCEEDED before their own timer
    /// fires.
    pub propagate_margin: Duration,
}

impl Default for HopSettings {
    fn default() -> Self {
        Self {
            max_deadline: Duration::from_secs(30),
            concurrency: 64,
            queue_capacity: 1000,
            max_retries: 4,
            retry_base: Duration::from_millis(100),
            propagate_margin: Duration::from_millis(20),
        }
    }
}

/// The layers of [`server_layers`], named so tonic's `Server::layer` sees the services they make.
pub type ServerLayers = ServiceBuilder<
    Stack<
        BoundedQueueLayer<HttpMode>,
        Stack<DeadlineLayer<HttpMode>, Stack<MetricsLayer, Identity>>,
    >,
>;

/// The server side of a hop: metrics outermost (they see every outcome, rejections included),
/// then the deadline, then the queue. Each answers gRPC callers with gRPC statuses (the
/// deadline with 4 DEADLINE_EXCEEDED, the queue with 14 UNAVAILABLE), never an HTTP error.
pub fn server_layers(settings: &HopSettings, meter: &Meter) -> ServerLayers {
    ServiceBuilder::new()
        .layer(MetricsLayer::grpc_server(meter))
        .layer(
            DeadlineLayer::new()
                .http()
                .max(settings.max_deadline)
                .meter(meter),
        )
        .layer(
            BoundedQueueBuilder::new(settings.concurrency)
                .capacity(settings.queue_capacity)
                .meter(meter)
                .build()
                .http(),
        )
}

/// A client stack, boxed once so the edge names one type whether the layers are on or off.
///
/// Its error is a `tonic::Status`: tonic's generated client looks for one in an error's source
/// chain and hands it to the caller as it is (see [`status_of`]).
pub type Upstream = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Status>;

/// The status a failed call through the client stack ends with.
///
/// A deadline that ran out is DEADLINE_EXCEEDED, whichever timer saw it first: our layers'
/// (`tower_deadline::DeadlineExceeded`) or the tonic `Channel`'s own. The channel enforces the
/// `grpc-timeout` the propagation layer writes, at the same instant as the next hop does, and
/// on its own would report CANCELLED ("Timeout expired"), which gRPC reserves for callers that
/// gave up. Everything else gets tonic's own reading of the error.
pub fn status_of(error: BoxError) -> Status {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
    while let Some(e) = source {
        if e.is::<tower_deadline::DeadlineExceeded>() || e.is::<tonic::TimeoutExpired>() {
            return Status::deadline_exceeded(e.to_string());
        }
        source = e.source();
    }
    Status::from_error(error)
}

/// The client side of a hop, over a tonic `Channel`.
pub fn client_stack(channel: Channel, settings: &HopSettings, meter: &Meter) -> Upstream {
    let retry = RetryLayer::for_http()
        // The edge is the only hop that retries (the caller does not), so it may retry the
        // backend's own overload rejections, marked `x-overloaded`, after their pushback;
        // by default the retry layer leaves those alone, so that stacked retrying hops do not
        // multiply the load a queue shed.
        .classifier(HttpClassifier::new().retry_overloaded_peers(true))
        .max_retries(settings.max_retries)
        .backoff(Backoff::exponential(settings.retry_base))
        // Echo calls are idempotent: retry them although gRPC always POSTs.
        .retry_any_method(true)
        .meter(meter);
    let stack = ServiceBuilder::new()
        .map_err(status_of)
        .map_response(|response: http::Response<_>| response.map(Body::new))
        .layer(MetricsLayer::grpc_client(meter))
        .layer(retry)
        .map_request(|request: http::Request<ReplayBody<Body>>| request.map(Body::new))
        .layer(
            PropagateDeadlineLayer::new()
                .margin(settings.propagate_margin)
                .meter(meter),
        )
        .service(channel);
    BoxCloneSyncService::new(stack)
}

/// The same hop with no layers, for comparison.
pub fn bare_client(channel: Channel) -> Upstream {
    let stack = ServiceBuilder::new()
        .map_response(|response: http::Response<_>| response.map(Body::new))
        .map_err(|error| status_of(BoxError::from(error)))
        .service(channel);
    BoxCloneSyncService::new(stack)
}
