//! Properties over arbitrary input: malformed headers never panic and never allocate, backoff
//! stays in bounds.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;
use tower_retry_classified::{Backoff, Classification, HttpClassifier, Jitter};

#[global_allocator]
static METER: alloc_meter::Meter = alloc_meter::Meter;

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        "[ -~]{0,40}".prop_map(|s| HeaderValue::from_str(&s).unwrap()),
        any::<i64>().prop_map(|n| HeaderValue::from_str(&n.to_string()).unwrap()),
        any::<u64>().prop_map(|n| HeaderValue::from_str(&n.to_string()).unwrap()),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_filter_map("header bytes", |b| HeaderValue::from_bytes(&b).ok()),
    ]
}

proptest! {
    #[test]
    fn any_response_head_classifies_without_panic(
        status in 100u16..1000,
        retry_after in proptest::option::of(header_value()),
        grpc_status in proptest::option::of(header_value()),
        pushback in proptest::option::of(header_value()),
    ) {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after { headers.insert("retry-after", v); }
        if let Some(v) = grpc_status { headers.insert("grpc-status", v); }
        if let Some(v) = pushback { headers.insert("grpc-retry-pushback-ms", v); }
        let status = StatusCode::from_u16(status).unwrap();
        let classifier = HttpClassifier::new();
        let (c, used) = alloc_meter::measure(|| classifier.classify_response(status, &headers));
        prop_assert_eq!(used.allocations, 0);
        if !headers.contains_key("grpc-status") || status != StatusCode::OK {
            // Without gRPC, the HTTP table decides.
            prop_assert_eq!(c.is_retryable(), Classification::of_status(status).is_retryable());
        }
    }

    #[test]
    fn backoff_delays_stay_within_their_caps(
        base_ms in 0u64..100_000,
        factor in 0u32..10,
        max_ms in 0u64..1_000_000,
        n in 0u32..200,
        previous_ms in 0u64..1_000_000,
        jitter in prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::Decorrelated)],
        seed in any::<u64>(),
    ) {
        let max = Duration::from_millis(max_ms);
        let base = Duration::from_millis(base_ms);
        let backoff = Backoff::exponential(base).factor(factor).max_delay(max).jitter(jitter).seed(seed);
        let cap = backoff.base_delay(n);
        prop_assert!(cap <= max);
        let d = backoff.delay(n, Duration::from_millis(previous_ms));
        match jitter {
            Jitter::None => prop_assert_eq!(d, cap),
            Jitter::Full => prop_assert!(d <= cap),
            Jitter::Equal => prop_assert!(d >= cap / 2 && d <= cap),
            Jitter::Decorrelated => prop_assert!(d >= base.min(max) && d <= max.max(base.min(max))),
        }
    }
}

proptest! {
    /// The stable twin of `fuzz/fuzz_targets/server_hints.rs`: any bytes in any hint header,
    /// the overload marker included, never turn an HTTP failure into a success.
    #[test]
    fn hint_bytes_never_turn_a_failure_into_a_success(
        status in prop::sample::select(vec![408u16, 429, 500, 502, 503, 504]),
        name in prop::sample::select(vec![
            "retry-after", "grpc-retry-pushback-ms", "grpc-status", "x-overloaded",
        ]),
        value in header_value(),
    ) {
        let mut headers = HeaderMap::new();
        headers.insert(name, value);
        let status = StatusCode::from_u16(status).unwrap();
        let classifier = HttpClassifier::new();
        let (verdict, used) = alloc_meter::measure(|| classifier.classify_response(status, &headers));
        prop_assert_ne!(verdict, Classification::Success);
        prop_assert_eq!(used.allocations, 0);
    }
}
