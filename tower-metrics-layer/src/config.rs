//! What a [`MetricsLayer`](crate::MetricsLayer) was told: its mode and settings, as plain data.
//!
//! The ground floor of the request path: every step above reads this, and it reads nothing of
//! the crate but the two values a user hands to the builder ([`RequestHead`], the argument of
//! user functions, and [`LabelGuard`]).

use std::any::Any;
use std::sync::Arc;

use http::{HeaderName, Method};
use opentelemetry::metrics::Meter;
use opentelemetry::{Key, StringValue, Value};

use crate::head::RequestHead;
use crate::label_guard::LabelGuard;

/// Default cap on distinct `http.route` values (server) or `server.address` values (client).
pub const DEFAULT_MAX_TARGETS: usize = 1000;

/// Default cap on cached series per layer; beyond it series are recorded uncached.
pub const DEFAULT_MAX_SERIES: usize = 2000;

pub(crate) type RouteFn = Arc<dyn Fn(&RequestHead<'_>) -> Option<&'static str> + Send + Sync>;
pub(crate) type LabelFn = Arc<dyn for<'a> Fn(&RequestHead<'a>) -> Option<&'a str> + Send + Sync>;
pub(crate) type ErrorTypeFn = Arc<dyn Fn(&dyn Any) -> Option<&'static str> + Send + Sync>;

/// Which conventions a layer records: HTTP or gRPC, server or client side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Server,
    Client,
    GrpcServer,
    GrpcClient,
}

impl Mode {
    pub(crate) fn is_client(self) -> bool {
        matches!(self, Mode::Client | Mode::GrpcClient)
    }

    pub(crate) fn is_grpc(self) -> bool {
        matches!(self, Mode::GrpcServer | Mode::GrpcClient)
    }
}

/// Where the one extra label's raw value comes from.
#[derive(Clone)]
pub(crate) enum LabelSource {
    Header(HeaderName),
    Fn(LabelFn),
}

/// The extra label (a tenant, say): its key, its source and the guard bounding its values.
#[derive(Clone)]
pub(crate) struct ExtraLabel {
    pub(crate) key: Key,
    pub(crate) source: LabelSource,
    pub(crate) guard: LabelGuard,
}

/// Marker for "not a known method" in [`KnownMethods::index`].
pub(crate) const OTHER_METHOD: u8 = u8::MAX;

/// The methods OpenTelemetry's HTTP semantic conventions call "known" (RFC 9110 plus PATCH).
const DEFAULT_KNOWN_METHODS: [Method; 9] = [
    Method::CONNECT,
    Method::DELETE,
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::PATCH,
    Method::POST,
    Method::PUT,
    Method::TRACE,
];

/// Methods that may appear as a label value; everything else becomes `_OTHER`.
#[derive(Debug, Clone)]
pub(crate) struct KnownMethods {
    methods: Vec<(Method, Value)>,
}

impl KnownMethods {
    pub(crate) fn new(methods: impl IntoIterator<Item = Method>) -> Self {
        let mut list: Vec<(Method, Value)> = Vec::new();
        for m in methods {
            // Index OTHER_METHOD is reserved for `_OTHER`.
            if list.len() >= usize::from(OTHER_METHOD) {
                break;
            }
            if list.iter().any(|(known, _)| *known == m) {
                continue;
            }
            let value = Value::String(StringValue::from(m.as_str().to_owned()));
            list.push((m, value));
        }
        Self { methods: list }
    }

    /// Index of a method in the list, or [`OTHER_METHOD`] for `_OTHER`.
    #[inline]
    pub(crate) fn index(&self, method: &Method) -> u8 {
        // Known methods are compared by their standard representation first: for the
        // default list this is a handful of integer comparisons.
        for (i, (known, _)) in self.methods.iter().enumerate() {
            if known == method {
                return i as u8;
            }
        }
        OTHER_METHOD
    }

    pub(crate) fn value(&self, index: u8) -> Value {
        match self.methods.get(usize::from(index)) {
            Some((_, v)) => v.clone(),
            None => Value::from("_OTHER"),
        }
    }
}

impl Default for KnownMethods {
    fn default() -> Self {
        Self::new(DEFAULT_KNOWN_METHODS)
    }
}

/// Everything the builder methods of [`MetricsLayer`](crate::MetricsLayer) set.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) mode: Mode,
    pub(crate) meter: Meter,
    pub(crate) boundaries: Vec<f64>,
    pub(crate) methods: KnownMethods,
    pub(crate) default_scheme: u8,
    pub(crate) route_fn: Option<RouteFn>,
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) matched_path: bool,
    pub(crate) label: Option<ExtraLabel>,
    pub(crate) provider: Option<Value>,
    pub(crate) error_type: Option<ErrorTypeFn>,
    pub(crate) active_requests: bool,
    pub(crate) body_size: bool,
    pub(crate) max_targets: usize,
    pub(crate) max_series: usize,
    pub(crate) request_body_size: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_are_other() {
        let known = KnownMethods::default();
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(known.index(&purge), OTHER_METHOD);
        assert_eq!(known.value(known.index(&purge)).as_str(), "_OTHER");
        assert_eq!(known.value(known.index(&Method::GET)).as_str(), "GET");
    }

    #[test]
    fn method_list_is_overridable() {
        let purge = Method::from_bytes(b"PURGE").unwrap();
        let known = KnownMethods::new([Method::GET, purge.clone(), Method::GET]);
        assert_eq!(known.value(known.index(&purge)).as_str(), "PURGE");
        assert_eq!(known.value(known.index(&Method::POST)).as_str(), "_OTHER");
    }
}
