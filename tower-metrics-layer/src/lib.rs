//! OpenTelemetry request metrics for [tower] services, with bounded cardinality.
//!
//! [`MetricsLayer`] records the OpenTelemetry HTTP semantic-convention metrics
//! (`http.server.request.duration`, `http.server.active_requests`, body sizes, and
//! the `http.client.*` equivalents) on a [`Meter`](opentelemetry::metrics::Meter)
//! you pass in. It records through the OpenTelemetry API only, so it costs almost
//! nothing when no SDK is installed and works with any exporter (OTLP, Prometheus).
//!
//! ```
//! use http::{Request, Response};
//! use opentelemetry::metrics::MeterProvider as _;
//! use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_metrics_layer::{MetricsBuilder, MetricsLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = InMemoryMetricExporter::default();
//! let provider = SdkMeterProvider::builder()
//!     .with_reader(PeriodicReader::builder(exporter.clone()).build())
//!     .build();
//! let meter = provider.meter("my-app");
//!
//! let svc = ServiceBuilder::new()
//!     .layer(MetricsBuilder::http_server(&meter).route_fn(|req| match req.uri().path() {
//!         "/health" => Some("/health"),
//!         p if p.starts_with("/users/") => Some("/users/{id}"),
//!         _ => None, // unknown routes get no `http.route`, never the raw path
//!     }).build())
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hi")))
//!     }));
//!
//! let res = svc.oneshot(Request::get("/users/42").body(String::new())?).await?;
//! assert_eq!(res.status(), 200);
//!
//! provider.force_flush()?;
//! let metrics = exporter.get_finished_metrics()?;
//! let names: Vec<String> = metrics
//!     .iter()
//!     .flat_map(|rm| rm.scope_metrics())
//!     .flat_map(|sm| sm.metrics())
//!     .map(|m| m.name().to_owned())
//!     .collect();
//! assert!(names.iter().any(|n| n == "http.server.request.duration"));
//! # Ok(())
//! # }
//! ```
//!
//! Opt-in extras: [`MetricsBuilder::active_requests`] (released when the response
//! body ends or is dropped, or the request future is dropped), response body sizes
//! ([`MetricsBuilder::body_size`]) and request body sizes
//! ([`MetricsBuilder::request_body_size`]), both counted from the bytes streamed.
//! [`MetricsLayer::grpc_server`] and [`MetricsLayer::grpc_client`] record the RPC
//! conventions, [`GenericMetricsLayer`] any `Service<Req>`: a duration histogram with an
//! outcome you name and up to four guarded labels, for a worker's jobs or a queue consumer.
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_metrics_layer::{GenericMetricsBuilder, LabelGuard};
//!
//! struct Job { tenant: String }
//! let jobs = GenericMetricsBuilder::<Job, (), std::io::Error>::new(
//!         &opentelemetry::global::meter("worker"), "worker.job.duration")
//!     .label("tenant", |job: &Job| Some(job.tenant.as_str()), LabelGuard::allowlist(["acme"]))
//!     .outcome(|result| if result.is_ok() { "ok" } else { "failed" })
//!     .build();
//! let worker = ServiceBuilder::new()
//!     .layer(jobs)
//!     .service(tower::service_fn(|_: Job| async { Ok::<(), std::io::Error>(()) }));
//! # let _ = worker;
//! ```
//!
//! # Cardinality
//!
//! No raw path, id or free-form value becomes a label by default:
//!
//! - `http.route` comes from axum's `MatchedPath` (feature `axum`) or
//!   [`MetricsBuilder::route_fn`]; when unknown it is omitted. Distinct routes are
//!   capped ([`MetricsBuilder::max_targets`]).
//! - unknown methods become `_OTHER`.
//! - extra labels such as a tenant go through a [`LabelGuard`] (allowlist and/or
//!   first-N-seen cap, default 20); other values become `other`.
//! - values refused by a cap are counted in `tower.metrics.cardinality.overflow`.
//!
//! # Cost
//!
//! Per request, the layer reduces method, scheme, version, route and label to small
//! integers and looks up a cached series holding the prepared attribute list; no
//! `String` or `Vec` is built once a series has been seen. With the
//! `bound-instruments` feature, the cache holds OpenTelemetry bound instruments,
//! which skip the SDK's attribute lookup altogether.
//!
//! # Features
//!
//! - `axum`: read `http.route` from `axum::extract::MatchedPath`.
//! - `prometheus`: [`prometheus::PrometheusMetrics`] builds an SDK meter provider
//!   with the Prometheus exporter and serves `/metrics`.
//! - `deadline`: name `tower_deadline` errors in `error.type` (`timeout`, `connect_timeout`).
//! - `bound-instruments`: use OpenTelemetry's experimental bound instruments (enables
//!   the feature of the same name in both `opentelemetry` and `opentelemetry_sdk`).
//! - `tracing` (default): one `warn` event, with target `tower_metrics_layer`, when a
//!   [`LabelGuard`] first turns a value into `other` (once per guard, never per request).
//!
//! [tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]

// How a request flows, and how the files stand: each file imports only files declared above
// it (`cargo xtask ci` fails on an import circle), so the crate reads top to bottom. A blank
// line between declarations keeps rustfmt from sorting them out of that order.
//
// The ground floor: the values everything else speaks in.

// The insert-only concurrent hash table behind every cache (its doc comment has the figures).
mod table;

// Strings to small ids, on a table.
mod intern;

// `tracing` events (feature `tracing`): the label guard's one overflow warning.
mod trace;

// `LabelGuard`: a label whose values stay bounded, on an interner.
mod label_guard;

// `RequestHead`: the borrowed request parts user functions see.
mod head;

// Histogram boundaries, gRPC status codes, built-in error names.
mod buckets;

mod grpc;

mod error_type;

// What the builder was told: `Mode`, `Config`, label sources, known methods.
mod config;

// The request path, one step per file. Attribute names and the small-integer encodings of
// method, scheme and version:
mod attributes;

// Step 1: request head -> `RequestKey` (routes, addresses and labels interned, capped).
mod request_key;

// The OpenTelemetry instruments a `Config` asks for.
mod instruments;

// Step 2: `RequestKey` + status + outcome -> `SeriesKey` -> a cached, prepared `Series`.
mod series;

// Step 3: `Recorder` holds all of the above and records a finished request.
mod recorder;

// On top, the only files that know tower and http-body: what `MetricsLayer` wraps around a
// request, its response body and its response future, the service, and the layer itself.
pub mod request_body;

mod body;

mod future;

mod service;

mod layer;

// `GenericMetricsLayer`: steps 2 and 3 for any `Service<Req>`.
mod generic;

// The optional `/metrics` endpoint.
#[cfg(feature = "prometheus")]
pub mod prometheus;

// Compiles the README's quick start as a doctest.
#[cfg(all(doctest, feature = "axum", feature = "prometheus"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use body::MeteredBody;
pub use buckets::{DEFAULT_DURATION_BOUNDARIES, LONG_DURATION_BOUNDARIES};
pub use config::{DEFAULT_MAX_SERIES, DEFAULT_MAX_TARGETS};
pub use future::ResponseFuture;
pub use generic::{
    GenericMetricsBuilder, GenericMetricsLayer, GenericMetricsService, GenericResponseFuture,
    MAX_GENERIC_LABELS,
};
pub use head::RequestHead;
pub use label_guard::{DEFAULT_MAX_DISTINCT, LabelGuard, MAX_VALUE_LEN, OTHER};
pub use layer::{MetricsBuilder, MetricsLayer};
pub use service::MetricsService;
