//! [`Shared`]: instruments, caches and configuration behind one layer, and the
//! per-request reduction of a request to compact ids.

use std::any::Any;
use std::sync::Arc;

use opentelemetry::{KeyValue, Value};

use crate::attributes::{self as attr, NONE_U32};
use crate::head::RequestHead;
use crate::intern::Interner;
use crate::layer::{Config, LabelSource, Mode};
use crate::series::{ActiveGuard, ActiveSeries, Instruments, Series, SeriesCache, SeriesKey};
use crate::table::Table;

/// State shared by all services of one layer.
pub(crate) struct Shared {
    config: Config,
    pub(crate) instruments: Instruments,
    series: SeriesCache<SeriesKey>,
    /// `http.route` (HTTP server) or `rpc.method` (gRPC).
    targets: Interner,
    /// `server.address` (clients).
    hosts: Interner,
    /// Admitted `server.address` and `server.port` pairs (clients): the cap holds for the pair,
    /// so one address reached on many ports (dynamic ports, test servers) stays bounded too.
    endpoints: Table<(u32, u16), ()>,
    /// `active_requests` series by method, scheme and (clients) server address and port.
    active: Table<(u8, u8, u32, u16), Arc<ActiveSeries>>,
}

/// Request properties captured in `call`, before the response exists.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestKey {
    method: u8,
    scheme: u8,
    version: u8,
    port: u16,
    target: u32,
    host: u32,
    label: u32,
}

/// No `server.port` (no server address known, or not a client). Port 0 is never a destination.
const NO_PORT: u16 = 0;

/// No status known (cancelled, failed, or not yet received).
pub(crate) const STATUS_NONE: u16 = u16::MAX;

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
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
                .with_boundaries(crate::buckets::BODY_SIZE_BOUNDARIES.to_vec())
                .build()
        });
        let request_size = (http && config.request_body_size).then(|| {
            meter
                .u64_histogram(format!("{prefix}.request.body.size"))
                .with_unit("By")
                .with_description("Size of HTTP request bodies, as streamed.")
                .with_boundaries(crate::buckets::BODY_SIZE_BOUNDARIES.to_vec())
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
        let instruments = Instruments {
            duration,
            response_size,
            request_size,
            active,
            overflow,
        };
        // Series are bound lazily: binding every combination up front would export
        // a zero series for each.
        let active_series = Table::new(if instruments.active.is_some() {
            config.max_series
        } else {
            0
        });
        Self {
            series: SeriesCache::new(config.max_series),
            // Only allocate the tables this mode uses.
            targets: Interner::new(
                Vec::new(),
                if mode == Mode::Client {
                    0
                } else {
                    config.max_targets
                },
                512,
            ),
            hosts: Interner::new(
                Vec::new(),
                if mode.is_client() {
                    config.max_targets
                } else {
                    0
                },
                255,
            ),
            endpoints: Table::new(if mode.is_client() {
                config.max_targets
            } else {
                0
            }),
            active: active_series,
            instruments,
            config,
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        self.config.mode
    }

    pub(crate) fn body_size(&self) -> bool {
        self.instruments.response_size.is_some()
    }

    pub(crate) fn request_body_size(&self) -> bool {
        self.instruments.request_size.is_some()
    }

    /// Reduces the request to compact ids. No allocation once values have been seen.
    #[inline]
    pub(crate) fn request_key(&self, head: &RequestHead<'_>) -> RequestKey {
        let c = &self.config;
        let method = c.methods.index(head.method);
        let scheme = attr::scheme_index(head.uri.scheme_str(), c.default_scheme);
        let version = attr::version_index(head.version);
        let target = match c.mode {
            Mode::Server => self.route_id(head),
            Mode::Client => NONE_U32,
            Mode::GrpcServer | Mode::GrpcClient => {
                let path = head.uri.path().trim_start_matches('/');
                self.intern(&self.targets, path, "rpc.method")
            }
        };
        let (host, port) = if c.mode.is_client() {
            self.server_id(head, scheme)
        } else {
            (NONE_U32, NO_PORT)
        };
        let label = match &c.label {
            None => NONE_U32,
            Some(extra) => {
                let raw = match &extra.source {
                    LabelSource::Header(name) => head.headers.get(name).map(|v| v.to_str()),
                    LabelSource::Fn(f) => f(head).map(Ok),
                };
                match raw {
                    None => NONE_U32,
                    Some(Ok(v)) => extra.guard.id(v),
                    // Not visible ASCII: refuse the value rather than lossy-convert it.
                    Some(Err(_)) => extra.guard.id(""),
                }
            }
        };
        RequestKey {
            method,
            scheme,
            version,
            port,
            target,
            host,
            label,
        }
    }

    /// `server.address` and `server.port` of a client request, following the semantic
    /// conventions: the host and port of the absolute URI (userinfo never included) or, for an
    /// origin-form URI, of the `Host` header; the port defaults to 80 or 443 by scheme. Neither
    /// is recorded when no host is known (a port alone would be a guess) or when the pair is
    /// refused by the `max_targets` cap.
    #[inline]
    fn server_id(&self, head: &RequestHead<'_>, scheme: u8) -> (u32, u16) {
        let (host, port) = match head.uri.host() {
            Some(host) => (host, head.uri.port_u16()),
            // Origin-form URI: the authority is in the Host header.
            None => match head.headers.get(http::header::HOST).map(|h| h.to_str()) {
                Some(Ok(value)) => match split_host_port(value) {
                    (Some(host), port) => (host, port),
                    (None, _) => return (NONE_U32, NO_PORT),
                },
                _ => return (NONE_U32, NO_PORT),
            },
        };
        let port = port.unwrap_or(if scheme == 1 { 443 } else { 80 });
        let host = self.intern(&self.hosts, host, "server.address");
        if host == NONE_U32 {
            return (NONE_U32, NO_PORT);
        }
        match self
            .endpoints
            .get_or_insert(&(host, port), || ((host, port), ()))
        {
            Some(_) => (host, port),
            None => (self.overflowed("server.address"), NO_PORT),
        }
    }

    #[inline]
    fn route_id(&self, head: &RequestHead<'_>) -> u32 {
        if let Some(f) = &self.config.route_fn {
            return match f(head) {
                Some(route) => match self.targets.lookup_static(route) {
                    Some(id) => id,
                    None => self.overflowed("http.route"),
                },
                None => NONE_U32,
            };
        }
        #[cfg(feature = "axum")]
        if self.config.matched_path {
            if let Some(m) = head.extensions.get::<axum::extract::MatchedPath>() {
                return self.intern(&self.targets, m.as_str(), "http.route");
            }
        }
        NONE_U32
    }

    #[inline]
    fn intern(&self, table: &Interner, value: &str, dimension: &'static str) -> u32 {
        match table.lookup(value) {
            Some(id) => id,
            None => self.overflowed(dimension),
        }
    }

    /// Counts a value refused by a full table; the request records no such attribute.
    #[cold]
    fn overflowed(&self, dimension: &'static str) -> u32 {
        self.instruments
            .overflow
            .add(1, &[KeyValue::new("dimension", dimension)]);
        NONE_U32
    }

    /// Enters the request into `active_requests`, if recorded.
    #[inline]
    pub(crate) fn enter_active(&self, key: &RequestKey) -> Option<ActiveGuard> {
        let counter = self.instruments.active.as_ref()?;
        let akey = (key.method, key.scheme, key.host, key.port);
        let make = || {
            let mut attrs = vec![
                KeyValue::new(
                    attr::HTTP_REQUEST_METHOD,
                    self.config.methods.value(key.method),
                ),
                KeyValue::new(attr::URL_SCHEME, attr::scheme_value(key.scheme)),
            ];
            if self.config.mode.is_client() {
                self.push_server(&mut attrs, key.host, key.port);
            }
            Arc::new(ActiveSeries::new(counter.clone(), attrs))
        };
        if let Some((_, series)) = self.active.get(&akey) {
            return Some(ActiveGuard::enter(series));
        }
        let mut make = Some(make);
        let found = self.active.get_or_insert(&akey, || {
            (akey, make.take().map(|f| f()).expect("called once"))
        });
        Some(match found {
            Some((_, series)) => ActiveGuard::enter(series),
            // Table full: an uncached series is still correct.
            None => ActiveGuard::enter(&make.take().map(|f| f()).expect("not called")),
        })
    }

    pub(crate) fn classify_error(&self, err: &dyn Any) -> &'static str {
        self.config
            .error_type
            .as_ref()
            .and_then(|f| f(err))
            .or_else(|| crate::error_type::builtin(err))
            .unwrap_or("_OTHER")
    }

    #[inline]
    fn series_key(key: &RequestKey, status: u16, outcome: attr::Outcome) -> SeriesKey {
        SeriesKey {
            method: key.method,
            scheme: key.scheme,
            version: key.version,
            status,
            port: key.port,
            target: key.target,
            host: key.host,
            label: key.label,
            outcome,
        }
    }

    /// The series for a finished request, kept alive by the caller (body size).
    pub(crate) fn series(
        &self,
        key: &RequestKey,
        status: u16,
        outcome: attr::Outcome,
    ) -> Arc<Series> {
        let skey = Self::series_key(key, status, outcome);
        self.series
            .get(skey, &self.instruments, || self.attributes(&skey))
    }

    /// Records the duration of a finished request or call.
    #[inline]
    pub(crate) fn record(
        &self,
        key: &RequestKey,
        status: u16,
        outcome: attr::Outcome,
        seconds: f64,
    ) {
        let skey = Self::series_key(key, status, outcome);
        self.series.with(
            skey,
            &self.instruments,
            || self.attributes(&skey),
            |series| series.record_duration(&self.instruments, seconds),
        );
    }

    /// Builds the attribute list of a series (once per series).
    fn attributes(&self, k: &SeriesKey) -> Vec<KeyValue> {
        let c = &self.config;
        let mut attrs = Vec::with_capacity(9);
        let status = (k.status != STATUS_NONE).then_some(k.status);
        if c.mode.is_grpc() {
            attrs.push(KeyValue::new(attr::RPC_SYSTEM_NAME, "grpc"));
            let method = (k.target != NONE_U32)
                .then(|| self.targets.value(k.target))
                .flatten()
                .map(Value::String)
                .unwrap_or(Value::from("_OTHER"));
            attrs.push(KeyValue::new(attr::RPC_METHOD, method));
            if let Some(code) = status {
                attrs.push(KeyValue::new(
                    attr::RPC_STATUS_CODE,
                    crate::grpc::name(code),
                ));
            }
        } else {
            attrs.push(KeyValue::new(
                attr::HTTP_REQUEST_METHOD,
                c.methods.value(k.method),
            ));
            attrs.push(KeyValue::new(
                attr::URL_SCHEME,
                attr::scheme_value(k.scheme),
            ));
            if let Some(code) = status {
                attrs.push(KeyValue::new(
                    attr::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(code),
                ));
            }
            if let Some(v) = attr::version_value(k.version) {
                attrs.push(KeyValue::new(attr::NETWORK_PROTOCOL_VERSION, v));
            }
            if k.target != NONE_U32 {
                if let Some(v) = self.targets.value(k.target) {
                    attrs.push(KeyValue::new(attr::HTTP_ROUTE, v));
                }
            }
        }
        if let Some(v) = k.outcome.error_type(c.mode, k.status) {
            attrs.push(KeyValue::new(attr::ERROR_TYPE, v));
        }
        if c.mode.is_client() {
            self.push_server(&mut attrs, k.host, k.port);
        }
        if let (Some(extra), true) = (&c.label, k.label != NONE_U32) {
            attrs.push(KeyValue::new(extra.key.clone(), extra.guard.value(k.label)));
        }
        if let Some(p) = &c.provider {
            attrs.push(KeyValue::new("provider.name", p.clone()));
        }
        attrs
    }

    /// `server.address` and `server.port`, both or neither.
    fn push_server(&self, attrs: &mut Vec<KeyValue>, host: u32, port: u16) {
        let address = (host != NONE_U32).then(|| self.hosts.value(host)).flatten();
        if let (Some(address), true) = (address, port != NO_PORT) {
            attrs.push(KeyValue::new(attr::SERVER_ADDRESS, address));
            attrs.push(KeyValue::new(attr::SERVER_PORT, i64::from(port)));
        }
    }

    #[cfg(test)]
    pub(crate) fn cached_series(&self) -> usize {
        self.series.len()
    }
}

/// Splits a Host header value into host and port; IPv6 literals keep their
/// brackets, as `Uri::host` does (`[::1]:80` gives `[::1]` and 80).
fn split_host_port(value: &str) -> (Option<&str>, Option<u16>) {
    let (host, port) = match value.rfind(':') {
        Some(i) if !value[i..].contains(']') => (&value[..i], value[i + 1..].parse().ok()),
        _ => (value, None),
    };
    if host.is_empty() {
        (None, None)
    } else {
        (Some(host), port)
    }
}
