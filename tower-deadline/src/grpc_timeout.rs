//! The `grpc-timeout` header, exactly as the gRPC over HTTP/2 protocol spec defines it:
//! `TimeoutValue TimeoutUnit`, where the value is 1 to 8 ASCII digits and the unit one of
//! `H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds), `n` (nanoseconds).

use std::time::Duration;

use http::HeaderValue;

/// The largest value the spec allows: 8 digits.
const MAX_VALUE: u64 = 99_999_999;

/// Why a `grpc-timeout` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// No digits, more than 8 digits, or a non-digit among them.
    Value,
    /// The last byte is not one of `H M S m u n`.
    Unit,
}

/// Parses a `grpc-timeout` value. Never panics or overflows: 8 digits of hours fit a `Duration`.
pub(crate) fn decode(value: &[u8]) -> Result<Duration, Malformed> {
    let (unit, digits) = value.split_last().ok_or(Malformed::Value)?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Malformed::Value);
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(Malformed::Unit),
    })
}

/// Encodes `timeout` in the most precise unit whose value fits 8 digits, truncating (so the
/// encoded timeout is never longer than the real one, and at most one unit shorter). Timeouts past
/// `99999999H` clamp to it. This is the choice tonic makes, so tonic peers read the same value.
pub(crate) fn encode(timeout: Duration) -> HeaderValue {
    let nanos = timeout.as_nanos();
    let (value, unit) = [
        (1u128, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ]
    .into_iter()
    .map(|(nanos_per_unit, unit)| (nanos / nanos_per_unit, unit))
    .find(|(value, _)| *value <= u128::from(MAX_VALUE))
    .unwrap_or((u128::from(MAX_VALUE), b'H'));

    // At most 8 digits and the unit, on the stack, copied once into the value.
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value as u64).as_bytes();
    let mut buf = [0u8; 9];
    buf[..digits.len()].copy_from_slice(digits);
    buf[digits.len()] = unit;
    HeaderValue::from_bytes(&buf[..=digits.len()])
        .expect("digits and a unit letter are valid header bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_unit() {
        assert_eq!(decode(b"2H"), Ok(Duration::from_secs(7200)));
        assert_eq!(decode(b"3M"), Ok(Duration::from_secs(180)));
        assert_eq!(decode(b"4S"), Ok(Duration::from_secs(4)));
        assert_eq!(decode(b"5m"), Ok(Duration::from_millis(5)));
        assert_eq!(decode(b"6u"), Ok(Duration::from_micros(6)));
        assert_eq!(decode(b"7n"), Ok(Duration::from_nanos(7)));
        assert_eq!(decode(b"0m"), Ok(Duration::ZERO));
        assert_eq!(decode(b"00000001S"), Ok(Duration::from_secs(1)));
        assert_eq!(
            decode(b"99999999H"),
            Ok(Duration::from_secs(99_999_999 * 3600))
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            &b""[..],
            b"S",
            b"1",
            b"10",
            b"123456789S",
            b"1s",
            b"1h",
            b"1x",
            b"-1S",
            b"+1S",
            b"1.5S",
            b" 1S",
            b"1S ",
            b"1 S",
            b"0x1S",
            b"\xff1S",
            b"1\xffS",
            b"1SS",
        ] {
            assert!(decode(bad).is_err(), "{:?} must be rejected", bad);
        }
        assert_eq!(decode(b"12"), Err(Malformed::Unit));
        assert_eq!(decode(b"123456789m"), Err(Malformed::Value));
    }

    #[test]
    fn encodes_with_the_most_precise_unit_that_fits() {
        let cases = [
            (Duration::ZERO, "0n"),
            (Duration::from_nanos(99_999_999), "99999999n"),
            (Duration::from_nanos(100_000_000), "100000u"),
            (Duration::from_millis(1500), "1500000u"),
            (Duration::from_secs(30), "30000000u"),
            (Duration::from_secs(99_999), "99999000m"),
            (Duration::from_secs(100_000), "100000S"),
            (Duration::from_secs(99_999_999), "99999999S"),
            (Duration::from_secs(100_000_000), "1666666M"),
            (Duration::from_secs(99_999_999 * 60), "99999999M"),
            (Duration::from_secs(99_999_999 * 60 + 60), "1666666H"),
            (Duration::from_secs(99_999_999 * 3600), "99999999H"),
            (Duration::MAX, "99999999H"),
        ];
        for (timeout, expected) in cases {
            assert_eq!(encode(timeout), expected, "{timeout:?}");
        }
    }

    #[test]
    fn encoding_truncates_never_rounds_up() {
        // 100.0000009 ms does not fit in nanoseconds; microseconds drop the last 0.9 us.
        assert_eq!(encode(Duration::from_nanos(100_000_900)), "100000u");
    }
}
