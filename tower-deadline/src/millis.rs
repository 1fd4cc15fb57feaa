//! Millisecond deadline headers: `x-request-timeout-ms` (ours) and Envoy's
//! `x-envoy-expected-rq-timeout-ms`. The value is a non-negative integer count of milliseconds.

use std::time::Duration;

use http::HeaderValue;

/// Parses a millisecond count: 1 or more ASCII digits, nothing else. Values too large for `u64`
/// saturate (they are capped by the server's maximum anyway) instead of being rejected, since
/// "a very long time" is what the sender meant.
pub(crate) fn decode(value: &[u8]) -> Option<Duration> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let millis = value.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some(Duration::from_millis(millis))
}

/// Whole milliseconds, truncated, so the receiver never gets more time than the sender had.
///
/// Digits written on the stack and copied once: `HeaderValue::from(u64)` allocates twice (a
/// growing buffer, then the shared handle it is frozen into), which cost every propagated call
/// about 200 instructions more (callgrind, `xtask-bench instructions`, deadline only).
pub(crate) fn encode(timeout: Duration) -> HeaderValue {
    let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let mut digits = itoa::Buffer::new();
    HeaderValue::from_str(digits.format(millis)).expect("decimal digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_integers_only() {
        assert_eq!(decode(b"0"), Some(Duration::ZERO));
        assert_eq!(decode(b"1500"), Some(Duration::from_millis(1500)));
        assert_eq!(decode(b"007"), Some(Duration::from_millis(7)));
        assert_eq!(
            decode(b"99999999999999999999999999"),
            Some(Duration::from_millis(u64::MAX))
        );
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1.5",
            b"1e3",
            b" 1",
            b"1 ",
            b"1ms",
            b"abc",
            b"\xff",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encodes_truncated_millis() {
        assert_eq!(encode(Duration::from_micros(1999)), "1");
        assert_eq!(encode(Duration::from_secs(30)), "30000");
        assert_eq!(encode(Duration::MAX), u64::MAX.to_string().as_str());
    }
}
