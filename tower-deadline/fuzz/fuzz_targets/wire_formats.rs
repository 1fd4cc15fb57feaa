//! Both deadline header parsers on arbitrary bytes: they must never panic, must accept exactly
//! their grammar, and whatever they accept must survive re-encoding without getting longer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_deadline::wire::{decode_grpc_timeout, decode_millis, encode_grpc_timeout, encode_millis};

fuzz_target!(|data: &[u8]| {
    let grpc_grammar = (2..=9).contains(&data.len())
        && data[..data.len() - 1].iter().all(u8::is_ascii_digit)
        && b"HMSmun".contains(&data[data.len() - 1]);
    match decode_grpc_timeout(data) {
        Some(timeout) => {
            assert!(grpc_grammar, "accepted {data:?}");
            let again = decode_grpc_timeout(encode_grpc_timeout(timeout).as_bytes()).unwrap();
            assert!(again <= timeout);
        }
        None => assert!(!grpc_grammar, "rejected {data:?}"),
    }

    let millis_grammar = !data.is_empty() && data.iter().all(u8::is_ascii_digit);
    match decode_millis(data) {
        Some(timeout) => {
            assert!(millis_grammar, "accepted {data:?}");
            let again = decode_millis(encode_millis(timeout).as_bytes()).unwrap();
            assert!(again <= timeout);
        }
        None => assert!(!millis_grammar, "rejected {data:?}"),
    }
});
