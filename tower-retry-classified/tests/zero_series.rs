//! Series whose labels are known up front exist from the first collection, at 0, so that a
//! rate over them reads 0 rather than nothing and alerts on them can fire and resolve.

use test_meter::TestMeter;
use tower_retry_classified::{CircuitBreakerBuilder, HedgeBuilder, RetryLayer, SkipReason};

#[test]
fn retry_breaker_and_hedge_series_exist_at_zero_before_any_request() {
    let metrics = TestMeter::new();
    let _retry = RetryLayer::for_http().meter(&metrics.meter());
    let breaker = CircuitBreakerBuilder::new()
        .name("provider-a")
        .meter(&metrics.meter())
        .build();
    let _ = breaker.handle(); // the layer's breaker, as a router reads it at start-up
    let _hedge = HedgeBuilder::for_http().meter(&metrics.meter()).build();

    for reason in SkipReason::ALL {
        let points = metrics.matching("tower.retry.skipped", &[("reason", reason.as_str())]);
        assert_eq!(points.len(), 1, "{reason:?}");
        assert_eq!(points[0].sum, 0.0, "{reason:?}");
    }
    // The built-in classifier's retried reasons, statuses and connection failures alike.
    for reason in [
        "service_unavailable",
        "too_many_requests",
        "connection_reset",
        "connect_error",
        "attempt_timeout",
    ] {
        let points = metrics.matching("tower.retry.retries", &[("reason", reason)]);
        assert_eq!(points.len(), 1, "{reason}");
        assert_eq!(points[0].sum, 0.0, "{reason}");
    }
    assert_eq!(metrics.points("tower.retry.retries").len(), 16);
    assert_eq!(
        metrics.matching(
            "tower.retry.attempts",
            &[("outcome", "success"), ("reason", "ok")]
        )[0]
        .sum,
        0.0
    );
    let transitions = metrics.matching(
        "tower.circuit.transitions",
        &[("tower.circuit.name", "provider-a")],
    );
    let mut pairs: Vec<String> = transitions
        .iter()
        .map(|p| format!("{}->{}", p.attr("from").unwrap(), p.attr("to").unwrap()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            "closed->open",
            "half_open->closed",
            "half_open->open",
            "open->half_open"
        ]
    );
    assert!(transitions.iter().all(|p| p.sum == 0.0));
    for name in [
        "tower.hedge.sent",
        "tower.hedge.won",
        "tower.hedge.lost",
        "tower.hedge.refused",
    ] {
        assert_eq!(metrics.sum(name, &[]), 0);
        assert_eq!(metrics.points(name).len(), 1, "{name}");
    }
}
