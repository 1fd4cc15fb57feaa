//! Every retry is counted with the reason of the failure it retries, and the budget's balance is
//! a gauge, against a real upstream on 127.0.0.1.

mod common;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use tower::{Layer, ServiceExt};
use tower_retry_classified::{Backoff, Jitter, RetryBudget, RetryLayer};

use common::{TestMeter, Upstream, client, status};

#[tokio::test(start_paused = true)]
async fn retries_are_counted_by_reason_and_the_budget_balance_is_observed() {
    let metrics = TestMeter::new();
    // 503, then 429, then 200: two retries, for two reasons.
    let upstream = Upstream::start(vec![status(503), status(429), status(200)]).await;
    let budget = RetryBudget::new(std::time::Duration::from_secs(10), 1, 0.0);
    let layer = RetryLayer::for_http()
        .backoff(Backoff::default().jitter(Jitter::None))
        .budget(budget)
        .meter(&metrics.meter());
    let retrying = layer.layer(client::<Empty<Bytes>>());
    // Before any request: the floor alone, 1 retry a second over 10 s.
    assert_eq!(metrics.gauge("tower.retry.budget.balance"), 10);

    let request = Request::get(format!("http://{}/", upstream.addr))
        .body(Empty::new())
        .unwrap();
    let response = retrying.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);

    assert_eq!(
        metrics.sum("tower.retry.retries", &[("reason", "service_unavailable")]),
        1
    );
    assert_eq!(
        metrics.sum("tower.retry.retries", &[("reason", "too_many_requests")]),
        1
    );
    assert_eq!(metrics.sum("tower.retry.retries", &[]), 2);
    assert_eq!(metrics.histogram_count("tower.retry.backoff"), 2);
    // Two retries withdrawn from the floor.
    assert_eq!(metrics.gauge("tower.retry.budget.balance"), 8);
}
