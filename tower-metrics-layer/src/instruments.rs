//! The OpenTelemetry instruments one layer records into, created from its configuration.

use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};

use crate::buckets::BODY_SIZE_BOUNDARIES;
use crate::config::{Config, Mode};

/// The instruments one layer records into; those its configuration leaves off are `None`.
#[derive(Clone)]
pub(crate) struct Instruments {
    pub(crate) duration: Histogram<f64>,
    pub(crate) response_size: Option<Histogram<u64>>,
    pub(crate) request_size: Option<Histogram<u64>>,
    pub(crate) active: Option<UpDownCounter<i64>>,
    pub(crate) overflow: Counter<u64>,
}

impl Instruments {
    /// The semantic-convention instruments of `config.mode`. Body sizes and active requests
    /// exist for HTTP only.
    pub(crate) fn new(config: &Config) -> Self {
        let mode = config.mode;
        let meter = &config.meter;
        let (duration_name, description) = match mode {
            Mode::Server => (
                "http.server.request.duration",
                "Duration of HTTP server requests.",
            ),
            Mode::Client => (
                "http.client.request.duration",
                "Duration of HTTP client requests.",
            ),
            Mode::GrpcServer => (
                "rpc.server.call.duration",
                "Duration of incoming gRPC calls.",
            ),
            Mode::GrpcClient => (
                "rpc.client.call.duration",
                "Duration of outgoing gRPC calls.",
            ),
        };
        let prefix = if mode.is_client() {
            "http.client"
        } else {
            "http.server"
        };
        let duration = meter
            .f64_histogram(duration_name)
            .with_unit("s")
            .with_description(description)
            .with_boundaries(config.boundaries.clone())
            .build();
        let http = !mode.is_grpc();
        let response_size = (http && config.body_size).then(|| {
            meter
                .u64_histogram(format!("{prefix}.response.body.size"))
                .with_unit("By")
                .with_description("Size of HTTP response bodies, as streamed.")
                .with_boundaries(BODY_SIZE_BOUNDARIES.to_vec())
                .build()
        });
        let request_size = (http && config.request_body_size).then(|| {
            meter
                .u64_histogram(format!("{prefix}.request.body.size"))
                .with_unit("By")
                .with_description("Size of HTTP request bodies, as streamed.")
                .with_boundaries(BODY_SIZE_BOUNDARIES.to_vec())
                .build()
        });
        let active = (http && config.active_requests).then(|| {
            meter
                .i64_up_down_counter(format!("{prefix}.active_requests"))
                .with_unit("{request}")
                .with_description("Number of active HTTP requests.")
                .build()
        });
        let overflow = meter
            .u64_counter("tower.metrics.cardinality.overflow")
            .with_description("Label values or series refused by a cardinality cap.")
            .build();
        Self {
            duration,
            response_size,
            request_size,
            active,
            overflow,
        }
    }
}
