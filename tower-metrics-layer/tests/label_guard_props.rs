//! The stable twin of `fuzz/fuzz_targets/label_guard.rs`: label values from arbitrary input
//! are allowlisted, among the first few seen, or `other`; the guard never grows past its cap,
//! and labelling a value allocates at most one copy of it.

use proptest::prelude::*;
use tower_metrics_layer::LabelGuard;

#[global_allocator]
static METER: alloc_meter::Meter = alloc_meter::Meter;

const CAP: usize = 4;

proptest! {
    #[test]
    fn arbitrary_values_become_known_values_or_other(
        values in proptest::collection::vec(any::<String>(), 0..64),
    ) {
        let guard = LabelGuard::allowlist_and_first_seen(["acme", "globex"], CAP);
        let mut admitted = std::collections::BTreeSet::new();
        for raw in &values {
            let (label, used) = alloc_meter::measure(|| guard.label(raw));
            prop_assert!(label.as_str() == raw || label.as_str() == "other");
            let first_admission = label.as_str() == raw
                && raw != "acme"
                && raw != "globex"
                && admitted.insert(raw.clone());
            if first_admission {
                // The kept copy of the value and its slot: bounded by the value, not the input.
                prop_assert!(used.allocations <= 3, "{used:?}");
                prop_assert!(used.bytes <= 2 * raw.len() as u64 + 128, "{used:?}");
            } else {
                // Known and refused values, the bulk of traffic, allocate nothing.
                prop_assert_eq!(used.allocations, 0);
            }
            prop_assert!(guard.distinct() <= 2 + CAP + 1);
        }
        prop_assert!(admitted.len() <= CAP, "{admitted:?}");
        let acme = guard.label("acme");
        prop_assert_eq!(acme.as_str(), "acme");
    }

    #[test]
    fn an_allowlist_alone_admits_nothing_else(raw in any::<String>()) {
        let guard = LabelGuard::allowlist(["acme"]);
        let label = guard.label(&raw);
        let label = label.as_str();
        if raw == "acme" {
            prop_assert_eq!(label, "acme");
        } else {
            prop_assert_eq!(label, "other");
        }
    }
}
