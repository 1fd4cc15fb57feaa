//! Attribute names and the low-cardinality encodings of request properties.
//!
//! Every request property that becomes an attribute is first reduced to a small
//! integer here, so a series can be found in the cache without building strings.

use http::Version;
use opentelemetry::{Key, StringValue, Value};

use crate::config::Mode;
use crate::grpc;

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

/// No status known (cancelled, failed, or not yet received).
pub(crate) const STATUS_NONE: u16 = u16::MAX;

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
    pub(crate) fn error_type(self, mode: Mode, status: u16) -> Option<Value> {
        match self {
            Outcome::Ok => None,
            Outcome::Status if mode.is_grpc() => Some(Value::from(grpc::name(status))),
            Outcome::Status => Some(Value::String(StringValue::from(status.to_string()))),
            Outcome::Error(name) => Some(Value::from(name)),
            Outcome::Cancelled => Some(Value::from("cancelled")),
        }
    }
}
