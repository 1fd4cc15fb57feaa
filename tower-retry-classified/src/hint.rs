//! Server hints on when to retry: `Retry-After` (RFC 9110 §10.2.3) and `grpc-retry-pushback-ms`
//! (gRPC A6).

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// Parses `Retry-After` as delta-seconds or an HTTP-date. Malformed values are ignored (the
/// backoff delay applies); a date in the past means "now".
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    parse_retry_after(value, SystemTime::now())
}

pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate; the service clamps the hint anyway.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const GRPC_RETRY_PUSHBACK: http::HeaderName =
    http::HeaderName::from_static("grpc-retry-pushback-ms");

/// What `grpc-retry-pushback-ms` says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// No header: use the backoff delay.
    None,
    /// Retry after this long.
    After(Duration),
    /// Negative or malformed: do not retry.
    Stop,
}

pub(crate) fn grpc_pushback(headers: &HeaderMap) -> Pushback {
    let Some(value) = headers.get(GRPC_RETRY_PUSHBACK) else {
        return Pushback::None;
    };
    match value.to_str().ok().map(str::trim) {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            Pushback::After(Duration::from_millis(v.parse::<u64>().unwrap_or(u64::MAX)))
        }
        _ => Pushback::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(120))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(120));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn pushback() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_pushback(&h), Pushback::None);
        h.insert("grpc-retry-pushback-ms", "1500".parse().unwrap());
        assert_eq!(
            grpc_pushback(&h),
            Pushback::After(Duration::from_millis(1500))
        );
        h.insert("grpc-retry-pushback-ms", "-5".parse().unwrap());
        assert_eq!(grpc_pushback(&h), Pushback::Stop);
        h.insert("grpc-retry-pushback-ms", "x".parse().unwrap());
        assert_eq!(grpc_pushback(&h), Pushback::Stop);
    }
}
