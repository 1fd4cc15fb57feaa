//! What a server can put in a response head, on arbitrary bytes: `Retry-After`,
//! `grpc-retry-pushback-ms`, `grpc-status` and the `x-overloaded` marker. Classification must
//! never panic, a hint must never be negative or absurd, and an unparsable hint must never turn
//! a retryable answer into a success.
#![no_main]

use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower_retry_classified::{Classification, HttpClassifier};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = HeaderValue::from_bytes(rest) else {
        return;
    };
    let status = [200u16, 408, 429, 500, 502, 503, 504][usize::from(selector % 7)];
    let mut headers = HeaderMap::new();
    let name = ["retry-after", "grpc-retry-pushback-ms", "grpc-status", "x-overloaded"]
        [usize::from(selector / 7 % 4)];
    headers.insert(name, value);
    if status == 200 && selector & 0x80 != 0 {
        headers.insert("grpc-status", HeaderValue::from_static("14"));
    }
    let status = StatusCode::from_u16(status).unwrap();
    let verdict = HttpClassifier::new().classify_response(status, &headers);
    if status != StatusCode::OK {
        // An HTTP failure stays a failure whatever its hints say.
        assert_ne!(verdict, Classification::Success);
    }
});
