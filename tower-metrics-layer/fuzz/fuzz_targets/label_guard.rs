//! A `LabelGuard` fed arbitrary label values: it must never panic, emit only allowlisted values,
//! the first few values seen (up to its cap) or `other`, and never hold more than its cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_metrics_layer::LabelGuard;

const CAP: usize = 4;

fuzz_target!(|data: &[u8]| {
    let guard = LabelGuard::allowlist_and_first_seen(["acme", "globex"], CAP);
    for raw in data.split(|b| *b == b',') {
        let raw = String::from_utf8_lossy(raw);
        let label = guard.label(&raw);
        assert!(label.as_str() == raw || label.as_str() == "other", "{raw:?} -> {label:?}");
        assert!(guard.distinct() <= 2 + CAP + 1);
    }
    let acme = guard.label("acme");
    assert_eq!(acme.as_str(), "acme");
});
