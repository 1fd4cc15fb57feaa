//! The gateway at the edge: what it allows a client it does not control, and what it refuses.
//!
//! Each limit is a setting with a safe default ([`EdgeLimits`]; the README's settings table
//! lists them), modelled on Envoy's edge-proxy guide:
//!
//! - **connections** ([`crate::serve`]): at most `max_connections` open at once over all
//!   workers; a connection beyond it is closed as soon as it is accepted, so memory stays
//!   bounded whatever a client opens;
//! - **time** ([`connection`]): a request head must arrive within `header_read_timeout` of its
//!   first byte (slowloris), and a connection with nothing in flight and nothing read or written
//!   for `idle_timeout` is closed;
//! - **size**: request heads up to `max_header_bytes` (also the connection's read buffer) and
//!   `max_headers` fields, or 431 from hyper; bodies up to `max_body_bytes`, or 413
//!   ([`checks`]); HTTP/2 streams and windows per connection;
//! - **shape** ([`checks`]): 400 for `Content-Length` with `Transfer-Encoding` (found below hyper,
//!   by `framing`) and for header names with underscores; `X-Forwarded-For` set from the
//!   connection's peer, the client's own forwarding headers dropped unless trusted.
//!
//! Every refusal is counted on `/metrics` as `gateway_edge_refused_total{reason}` (all reasons
//! at 0 from start-up), and the open connections as `gateway_connections_open`.

pub mod checks;
pub mod connection;
pub(crate) mod framing;
pub(crate) mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter, ObservableGauge};

/// The edge's limits; [`Default`] is what the gateway starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Connections open at once, over all workers (`GATEWAY_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// From a request head's first byte to its last (`GATEWAY_HEADER_READ_TIMEOUT_MS`).
    pub header_read_timeout: Duration,
    /// Nothing in flight, nothing read or written (`GATEWAY_IDLE_TIMEOUT_MS`).
    pub idle_timeout: Duration,
    /// A request head's bytes, HTTP/1 start line included, or an HTTP/2 header list
    /// (`GATEWAY_MAX_HEADER_BYTES`); also each HTTP/1 connection's read buffer.
    pub max_header_bytes: usize,
    /// Header fields in an HTTP/1 request head (`GATEWAY_MAX_HEADERS`).
    pub max_headers: usize,
    /// A request body's bytes (`GATEWAY_MAX_BODY_BYTES`).
    pub max_body_bytes: u64,
    /// Streams open at once on one HTTP/2 connection (`GATEWAY_H2_MAX_STREAMS`).
    pub h2_max_streams: u32,
    /// Each HTTP/2 stream's receive window (`GATEWAY_H2_STREAM_WINDOW`).
    pub h2_stream_window: u32,
    /// Each HTTP/2 connection's receive window (`GATEWAY_H2_CONNECTION_WINDOW`).
    pub h2_connection_window: u32,
    /// 400 for header names with `_` (`GATEWAY_REJECT_UNDERSCORE_HEADERS`): some servers read
    /// `x_user` and `x-user` as one name, so a client could smuggle a header past a check.
    pub reject_underscore_headers: bool,
    /// Keep the client's `X-Forwarded-For` (appending the peer) and `Forwarded`
    /// (`GATEWAY_TRUST_FORWARDED`); only behind a proxy that sets them itself.
    pub trust_forwarded: bool,
}

/// hyper's own default, kept: a larger count moves every request's header array to the heap.
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// hyper refuses a smaller read buffer.
pub const MIN_HEADER_BYTES: usize = 8192;

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_bytes: 10 * 1024 * 1024,
            h2_max_streams: 100,
            h2_stream_window: 64 * 1024,
            h2_connection_window: 1024 * 1024,
            reject_underscore_headers: true,
            trust_forwarded: false,
        }
    }
}

impl EdgeLimits {
    /// The hyper connection builder these limits configure: HTTP/1 and HTTP/2 (prior
    /// knowledge) on one port, as `axum::serve` offers.
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let mut http1 = builder.http1();
        // The header-read timeout is the edge's own (`connection`): hyper's would also run
        // while a kept-alive connection waits for its next request, so idle and header time
        // could not be told apart.
        http1
            .header_read_timeout(None)
            .max_buf_size(self.max_header_bytes.max(MIN_HEADER_BYTES));
        if self.max_headers != DEFAULT_MAX_HEADERS {
            http1.max_headers(self.max_headers);
        }
        builder
            .http2()
            .max_concurrent_streams(self.h2_max_streams)
            .initial_stream_window_size(self.h2_stream_window)
            .initial_connection_window_size(self.h2_connection_window)
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX));
        builder
    }
}

/// Why the edge refused a connection or a request: the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A connection beyond `max_connections`, closed on accept.
    ConnectionLimit,
    /// A request head not complete within the header-read timeout; the connection is closed.
    HeaderTimeout,
    /// A connection idle for the idle timeout, closed.
    IdleTimeout,
    /// A head over `max_header_bytes` or `max_headers` (hyper answers 431).
    HeadersTooLarge,
    /// A request hyper could not parse (hyper answers 400).
    Malformed,
    /// `Content-Length` and `Transfer-Encoding` in one request: 400.
    ContentLengthWithTransferEncoding,
    /// A header name with `_`: 400.
    UnderscoreHeader,
    /// A body over `max_body_bytes`: 413.
    BodyTooLarge,
    /// An HTTP/2 client resetting streams faster than they are served (rapid reset,
    /// CVE-2023-44487): the connection is closed with `ENHANCE_YOUR_CALM`.
    H2RapidReset,
    /// Any other HTTP/2 protocol error that closed the connection.
    H2Protocol,
}

impl Refusal {
    /// Every reason, in the order the metric's series are created.
    pub const ALL: [Refusal; 10] = [
        Refusal::ConnectionLimit,
        Refusal::HeaderTimeout,
        Refusal::IdleTimeout,
        Refusal::HeadersTooLarge,
        Refusal::Malformed,
        Refusal::ContentLengthWithTransferEncoding,
        Refusal::UnderscoreHeader,
        Refusal::BodyTooLarge,
        Refusal::H2RapidReset,
        Refusal::H2Protocol,
    ];

    /// The `reason` label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::IdleTimeout => "idle_timeout",
            Refusal::HeadersTooLarge => "headers_too_large",
            Refusal::Malformed => "malformed",
            Refusal::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Refusal::UnderscoreHeader => "underscore_header",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::H2RapidReset => "h2_rapid_reset",
            Refusal::H2Protocol => "h2_protocol",
        }
    }
}

/// What every worker's connections share: the limits, the open-connection count, the metrics.
#[derive(Debug)]
pub struct Edge {
    pub(crate) limits: EdgeLimits,
    /// The connection builder the limits configure, made once for every connection.
    pub(crate) builder: auto::Builder<TokioExecutor>,
    open: Arc<AtomicUsize>,
    metrics: Option<EdgeMetrics>,
}

#[derive(Debug)]
struct EdgeMetrics {
    refused: Counter<u64>,
    /// One attribute set per reason, built once.
    reasons: Vec<[KeyValue; 1]>,
    _open: ObservableGauge<u64>,
}

impl Edge {
    /// The edge for `limits`, its series on `meter` (none without metrics).
    pub fn new(limits: EdgeLimits, meter: Option<&Meter>) -> Arc<Edge> {
        let open = Arc::new(AtomicUsize::new(0));
        let metrics = meter.map(|meter| {
            let refused = meter
                .u64_counter("gateway.edge.refused")
                .with_description("Connections and requests the edge refused or closed, by reason.")
                .with_unit("{refusal}")
                .build();
            let reasons: Vec<[KeyValue; 1]> = Refusal::ALL
                .iter()
                .map(|r| [KeyValue::new("reason", r.as_str())])
                .collect();
            // Every reason from the first scrape: an alert on a rate needs a series at 0.
            for attributes in &reasons {
                refused.add(0, attributes);
            }
            let gauge_open = Arc::clone(&open);
            let gauge = meter
                .u64_observable_gauge("gateway.connections.open")
                .with_description("Client connections open, over all workers.")
                .with_unit("{connection}")
                .with_callback(move |observer| {
                    observer.observe(gauge_open.load(Ordering::Relaxed) as u64, &[]);
                })
                .build();
            EdgeMetrics {
                refused,
                reasons,
                _open: gauge,
            }
        });
        Arc::new(Edge {
            builder: limits.builder(),
            limits,
            open,
            metrics,
        })
    }

    /// Counts one refusal.
    pub(crate) fn refused(&self, refusal: Refusal) {
        tracing::debug!(reason = refusal.as_str(), "edge refusal");
        if let Some(metrics) = &self.metrics {
            let index = Refusal::ALL.iter().position(|r| *r == refusal).unwrap_or(0);
            metrics.refused.add(1, &metrics.reasons[index]);
        }
    }

    /// A slot for one more connection, or `None` at the limit.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ConnectionSlot(Arc::clone(&self.open)))
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One open connection's place under the limit, given back on drop.
#[derive(Debug)]
pub(crate) struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
