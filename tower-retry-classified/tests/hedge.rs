//! Hedging against a real hyper upstream whose answers are scripted with delays, under
//! `tokio::time::pause`: exact times, exact call counts.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestMeter, Upstream, client, status};
use http::Request;
use http_body_util::Full;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_retry_classified::{HedgeBuilder, RetryBudget};

const SLOW: Duration = Duration::from_secs(1);
const DELAY: Duration = Duration::from_millis(50);

fn get(upstream: &Upstream) -> Request<Full<Bytes>> {
    Request::get(upstream.uri("/"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_attempt_is_overtaken_by_the_hedge_after_the_delay() {
    let upstream = Upstream::start(vec![status(200).after(SLOW), status(200)]).await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(
            HedgeBuilder::for_http()
                .delay(DELAY)
                .meter(&meter.meter())
                .build(),
        )
        .service(client::<Full<Bytes>>());
    let started = Instant::now();
    let answer = svc
        .ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        started.elapsed(),
        DELAY,
        "the hedge answered at once after the delay"
    );
    assert_eq!(upstream.calls(), 2);
    assert_eq!(meter.sum("tower.hedge.sent", &[]), 1);
    assert_eq!(meter.sum("tower.hedge.won", &[]), 1);
}

#[tokio::test(start_paused = true)]
async fn an_answer_within_the_delay_sends_nothing_more() {
    let upstream = Upstream::start(vec![status(200).after(Duration::from_millis(49))]).await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(
            HedgeBuilder::for_http()
                .delay(DELAY)
                .meter(&meter.meter())
                .build(),
        )
        .service(client::<Full<Bytes>>());
    for _ in 0..10 {
        let answer = svc
            .ready()
            .await
            .unwrap()
            .call(get(&upstream))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(upstream.calls(), 10);
    assert_eq!(meter.sum("tower.hedge.sent", &[]), 0);
}

#[tokio::test(start_paused = true)]
async fn a_post_without_an_idempotency_key_is_never_sent_twice() {
    let upstream = Upstream::start(vec![status(200).after(SLOW)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(HedgeBuilder::for_http().delay(DELAY).build())
        .service(client::<Full<Bytes>>());
    let started = Instant::now();
    let request = Request::post(upstream.uri("/orders"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(started.elapsed(), SLOW);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn hedges_draw_from_the_retry_budget_and_stop_when_it_is_empty() {
    let upstream = Upstream::start(vec![status(200).after(SLOW)]).await;
    let meter = TestMeter::new();
    // No reserve, and nothing deposited: no hedge may go out.
    let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.2);
    let mut svc = ServiceBuilder::new()
        .layer(
            HedgeBuilder::for_http()
                .delay(DELAY)
                .budget(budget)
                .meter(&meter.meter())
                .build(),
        )
        .service(client::<Full<Bytes>>());
    let started = Instant::now();
    svc.ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), SLOW, "no hedge: the slow answer");
    assert_eq!(upstream.calls(), 1);
    assert_eq!(meter.sum("tower.hedge.refused", &[]), 1);
}

#[cfg(feature = "deadline")]
#[tokio::test(start_paused = true)]
async fn no_hedge_starts_past_the_deadline() {
    let upstream = Upstream::start(vec![status(200).after(SLOW)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(tower_deadline::DeadlineLayer::new().http())
        .layer(HedgeBuilder::for_http().delay(DELAY).build())
        .service(client::<Full<Bytes>>());
    let request = Request::get(upstream.uri("/"))
        .header("x-request-timeout-ms", "40")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(answer.status(), 504, "the deadline layer's answer");
    assert_eq!(
        upstream.calls(),
        1,
        "40 ms left: a hedge after 50 ms would be past it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_retryable_failure_waits_for_the_other_attempt() {
    // First attempt: slow 503. Hedge: fast 503 after the delay, then the first: both failed.
    let upstream = Upstream::start(vec![
        status(503).after(Duration::from_millis(80)),
        status(503),
    ])
    .await;
    let mut svc = ServiceBuilder::new()
        .layer(HedgeBuilder::for_http().delay(DELAY).build())
        .service(client::<Full<Bytes>>());
    let started = Instant::now();
    let answer = svc
        .ready()
        .await
        .unwrap()
        .call(get(&upstream))
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(80),
        "waited for the first"
    );
    assert_eq!(upstream.calls(), 2);
}
