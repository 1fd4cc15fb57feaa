//! The stable twin of `fuzz/fuzz_targets/label_guard.rs`: label values from arbitrary input
//! are allowlisted, among the first few seen, or `other`, and the guard never grows past its
//! cap.

use proptest::prelude::*;
use tower_metrics_layer::LabelGuard;

const CAP: usize = 4;

proptest! {
    #[test]
    fn arbitrary_values_become_known_values_or_other(
        values in proptest::collection::vec(any::<String>(), 0..64),
    ) {
        let guard = LabelGuard::allowlist_and_first_seen(["acme", "globex"], CAP);
        let mut admitted = std::collections::BTreeSet::new();
        for raw in &values {
            let label = guard.label(raw);
            prop_assert!(label.as_str() == raw || label.as_str() == "other");
            if label.as_str() == raw && raw != "acme" && raw != "globex" {
                admitted.insert(raw.clone());
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
