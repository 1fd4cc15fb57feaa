//! Attribute names and the low-cardinality encodings of request properties.
//!
//! Every request property that becomes an attribute is first reduced to a small
//! integer here, so a series can be found in the cache without building strings.

use http::{Method, Version};
use opentelemetry::{Key, StringValue, Value};

pub(crate) const HTTP_REQUEST_METHOD: Key = Key::from_static_str("http.request.method");
pub(crate) const URL_SCHEME: Key = Key::from_static_str("url.scheme");
pub(crate) const HTTP_RESPONSE_STATUS_CODE: Key = Key::from_static_str("http.response.status_code");
pub(crate) const HTTP_ROUTE: Key = Key::from_static_str("http.route");
pub(crate) const ERROR_TYPE: Key = Key::from_static_str("error.type");
pub(crate) const NETWORK_PROTOCOL_VERSION: Key = Key::from_static_str("network.protocol.version");
pub(crate) const SERVER_ADDRESS: Key = Key::from_static_str("server.address");
pub(crate) const SERVER_PORT: Key = Key::from_static_str("server.port");
pub(crate) const RPC_SYSTEM_NAME: Key = Key::from_static_str("rpc.system.name");
pub(crate) const RPC_METHOD: Key = Key::from_static_str("rpc.method");
pub(crate) const RPC_STATUS_CODE: Key = Key::from_static_str("rpc.status_code");

/// Marker for "no value" in the compact encodings below.
pub(crate) const NONE_U8: u8 = u8::MAX;
pub(crate) const NONE_U32: u32 = u32::MAX;

/// The methods OpenTelemetry's HTTP semantic conventions call "known" (RFC 9110 plus PATCH).
pub(crate) const DEFAULT_KNOWN_METHODS: [Method; 9] = [
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
            // Index NONE_U8 is reserved for `_OTHER`.
            if list.len() >= usize::from(NONE_U8) {
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

    /// Index of a method in the list, or `NONE_U8` for `_OTHER`.
    #[inline]
    pub(crate) fn index(&self, method: &Method) -> u8 {
        // Known methods are compared by their standard representation first: for the
        // default list this is a handful of integer comparisons.
        for (i, (known, _)) in self.methods.iter().enumerate() {
            if known == method {
                return i as u8;
            }
        }
        NONE_U8
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

/// `url.scheme` encoded as 0 = http, 1 = https.
#[inline]
pub(crate) fn scheme_index(scheme: Option<&str>, default: u8) -> u8 {
    match scheme {
        Some("https") => 1,
        Some("http") => 0,
        _ => default,
    }
}

pub(crate) fn scheme_value(index: u8) -> &'static str {
    if index == 1 { "https" } else { "http" }
}

/// `network.protocol.version` encoded as a small integer.
#[inline]
pub(crate) fn version_index(version: Version) -> u8 {
    match version {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_11 => 2,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => NONE_U8,
    }
}

pub(crate) fn version_value(index: u8) -> Option<&'static str> {
    match index {
        0 => Some("0.9"),
        1 => Some("1.0"),
        2 => Some("1.1"),
        3 => Some("2"),
        4 => Some("3"),
        _ => None,
    }
}

/// What went wrong, if anything, in a low-cardinality form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    /// A response whose status is not an error (`error.type` absent).
    Ok,
    /// An error status: HTTP 5xx (server) or 4xx/5xx (client), `error.type` is the
    /// code; gRPC error codes, `error.type` is the status name.
    Status,
    /// The inner service failed; the name came from the error classifier.
    Error(&'static str),
    /// The response future was dropped before it completed.
    Cancelled,
}

impl Outcome {
    pub(crate) fn error_type(self, mode: crate::layer::Mode, status: u16) -> Option<Value> {
        match self {
            Outcome::Ok => None,
            Outcome::Status if mode.is_grpc() => Some(Value::from(crate::grpc::name(status))),
            Outcome::Status => Some(Value::String(StringValue::from(status.to_string()))),
            Outcome::Error(name) => Some(Value::from(name)),
            Outcome::Cancelled => Some(Value::from("cancelled")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_are_other() {
        let known = KnownMethods::default();
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(known.index(&purge), NONE_U8);
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
