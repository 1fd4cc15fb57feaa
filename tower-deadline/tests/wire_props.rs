//! Properties of the wire formats: encoding then decoding never lengthens a deadline and loses
//! at most one unit of precision; the parsers accept exactly the spec's grammar, never panic
//! and never allocate.

use std::time::Duration;

use proptest::prelude::*;
use tower_deadline::wire::{
    decode_grpc_timeout, decode_millis, encode_grpc_timeout, encode_millis,
};

#[global_allocator]
static METER: alloc_meter::Meter = alloc_meter::Meter;

const MAX_GRPC: Duration = Duration::from_secs(99_999_999 * 3600);

fn unit_of(encoded: &[u8]) -> Duration {
    match encoded.last() {
        Some(b'n') => Duration::from_nanos(1),
        Some(b'u') => Duration::from_micros(1),
        Some(b'm') => Duration::from_millis(1),
        Some(b'S') => Duration::from_secs(1),
        Some(b'M') => Duration::from_secs(60),
        Some(b'H') => Duration::from_secs(3600),
        other => panic!("unexpected unit {other:?}"),
    }
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..1_000_000_000_000).prop_map(Duration::from_nanos),
        (0u64..u64::MAX, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..400_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

proptest! {
    #[test]
    fn grpc_timeout_round_trip_never_lengthens(timeout in any_duration()) {
        let encoded = encode_grpc_timeout(timeout);
        let bytes = encoded.as_bytes();
        prop_assert!(bytes.len() >= 2 && bytes.len() <= 9, "{encoded:?}");
        let decoded = decode_grpc_timeout(bytes).expect("our own encoding parses");
        prop_assert!(decoded <= timeout);
        if timeout <= MAX_GRPC {
            prop_assert!(timeout - decoded < unit_of(bytes), "{timeout:?} -> {encoded:?}");
        } else {
            prop_assert_eq!(decoded, MAX_GRPC);
        }
    }

    #[test]
    fn millis_round_trip_never_lengthens(timeout in any_duration()) {
        let decoded = decode_millis(encode_millis(timeout).as_bytes()).expect("parses");
        prop_assert!(decoded <= timeout);
        prop_assert!(timeout - decoded < Duration::from_millis(1) || timeout.as_millis() > u128::from(u64::MAX));
    }

    #[test]
    fn grpc_timeout_accepts_exactly_the_grammar(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
        let grammar = bytes.len() >= 2
            && bytes.len() <= 9
            && bytes[..bytes.len() - 1].iter().all(u8::is_ascii_digit)
            && b"HMSmun".contains(bytes.last().unwrap());
        let (decoded, used) = alloc_meter::measure(|| decode_grpc_timeout(&bytes));
        prop_assert_eq!(decoded.is_some(), grammar);
        prop_assert_eq!(used.allocations, 0);
    }

    #[test]
    fn grpc_timeout_accepts_every_valid_value(digits in "[0-9]{1,8}", unit in "[HMSmun]") {
        let value = format!("{digits}{unit}");
        let n: u64 = digits.parse().unwrap();
        let expected = match unit.as_str() {
            "H" => Duration::from_secs(n * 3600),
            "M" => Duration::from_secs(n * 60),
            "S" => Duration::from_secs(n),
            "m" => Duration::from_millis(n),
            "u" => Duration::from_micros(n),
            _ => Duration::from_nanos(n),
        };
        prop_assert_eq!(decode_grpc_timeout(value.as_bytes()), Some(expected));
    }

    #[test]
    fn millis_accepts_exactly_digits(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        let grammar = !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit);
        let (decoded, used) = alloc_meter::measure(|| decode_millis(&bytes));
        prop_assert_eq!(decoded.is_some(), grammar);
        prop_assert_eq!(used.allocations, 0);
    }
}
