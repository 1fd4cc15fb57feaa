//! gRPC status handling: parsing `grpc-status`, names, and which codes are errors.

use http::{HeaderMap, StatusCode};

/// `grpc-status` code for a missing or unparsable status (UNKNOWN).
pub(crate) const UNKNOWN: u16 = 2;

const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The status name (`rpc.status_code` value); codes outside the spec are UNKNOWN.
pub(crate) fn name(code: u16) -> &'static str {
    NAMES.get(usize::from(code)).copied().unwrap_or("UNKNOWN")
}

/// Reads `grpc-status` from headers or trailers. Unparsable values are UNKNOWN.
#[inline]
pub(crate) fn status(headers: &HeaderMap) -> Option<u16> {
    let raw = headers.get("grpc-status")?.as_bytes();
    let code = if raw.is_empty() || raw.len() > 2 || !raw.iter().all(u8::is_ascii_digit) {
        UNKNOWN
    } else {
        raw.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
    };
    Some(if usize::from(code) < NAMES.len() {
        code
    } else {
        UNKNOWN
    })
}

/// The gRPC code a client derives from a non-200 HTTP status without `grpc-status`
/// (gRPC's "HTTP to gRPC status code mapping").
pub(crate) fn from_http(status: StatusCode) -> u16 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => UNKNOWN,
    }
}

/// Whether `code` counts as an error (`error.type` set). Servers only count codes
/// that indicate a server-side problem (semantic conventions for gRPC); clients
/// count every non-OK code.
pub(crate) fn is_error(code: u16, client: bool) -> bool {
    if client {
        code != 0
    } else {
        matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let mut h = HeaderMap::new();
        assert_eq!(status(&h), None);
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(status(&h), Some(14));
        h.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(status(&h), Some(UNKNOWN));
        h.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(status(&h), Some(UNKNOWN));
        assert_eq!(name(14), "UNAVAILABLE");
        assert_eq!(name(40), "UNKNOWN");
        assert_eq!(from_http(StatusCode::SERVICE_UNAVAILABLE), 14);
        assert!(is_error(14, false) && !is_error(5, false) && is_error(5, true));
    }
}
