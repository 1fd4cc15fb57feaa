//! Absurd configuration: zero and maximal caps, margins and connect budgets. Each is clamped to
//! its documented bound (a zero cap or connect budget is 1 ms, huge ones saturate) and the layers
//! still answer; nothing panics or hangs.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, ServiceExt};
use tower_deadline::server::MIN_MAX;
use tower_deadline::{
    ConnectDeadlineLayer, ConnectTimeout, Deadline, DeadlineExceeded, DeadlineLayer,
    MIN_CONNECT_BUDGET, PropagateDeadlineLayer,
};

fn ok()
-> impl tower::Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send> + Clone
{
    tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

#[tokio::test(start_paused = true)]
async fn caps_are_clamped_to_at_least_one_millisecond_and_saturate_at_the_top() {
    let remaining = tower::service_fn(|request: Request<()>| async move {
        let deadline = Deadline::from_extensions(request.extensions()).unwrap();
        Ok::<_, Infallible>(Response::new(deadline.remaining()))
    });
    for (cap, granted) in [
        (Duration::ZERO, MIN_MAX),
        (Duration::from_nanos(1), MIN_MAX),
        (Duration::from_secs(7), Duration::from_secs(7)),
    ] {
        let layer = DeadlineLayer::new().max(cap);
        let response = layer
            .layer(remaining)
            .oneshot(Request::get("/").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(*response.body(), granted, "cap {cap:?}");
    }
    // MAX saturates: an absurd header and cap still serve.
    let request = Request::get("/")
        .header("x-request-timeout-ms", "99999999999999999999")
        .body(())
        .unwrap();
    let layer = DeadlineLayer::new().http().max(Duration::MAX);
    assert_eq!(
        layer.layer(ok()).oneshot(request).await.unwrap().status(),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn a_margin_larger_than_any_budget_fails_fast_instead_of_sending() {
    let layer = PropagateDeadlineLayer::new().margin(Duration::MAX);
    let mut request = Request::get("/").body(()).unwrap();
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_secs(5)));
    let error = layer.layer(ok()).oneshot(request).await.unwrap_err();
    assert!(error.is::<DeadlineExceeded>(), "{error}");
    // Without a deadline there is nothing to take a margin from: sent as is.
    let response = PropagateDeadlineLayer::new()
        .margin(Duration::MAX)
        .layer(ok())
        .oneshot(Request::get("/").body(()).unwrap())
        .await;
    assert!(response.is_ok());
}

#[tokio::test(start_paused = true)]
async fn connect_budgets_are_clamped_to_at_least_one_millisecond() {
    // A connector that never connects: the budget alone ends the connect.
    let never = tower::service_fn(|_: http::Uri| std::future::pending::<Result<(), Infallible>>());
    for (budget, cut_after) in [
        (Duration::ZERO, MIN_CONNECT_BUDGET),
        (Duration::from_millis(250), Duration::from_millis(250)),
    ] {
        let started = tokio::time::Instant::now();
        let error = ConnectDeadlineLayer::new(budget)
            .layer(never)
            .oneshot("http://127.0.0.1:1/".parse().unwrap())
            .await
            .unwrap_err();
        assert!(error.is::<ConnectTimeout>(), "{error}");
        assert_eq!(started.elapsed(), cut_after, "budget {budget:?}");
    }
    // Duration::MAX saturates instead of overflowing the clock.
    let _layer = ConnectDeadlineLayer::new(Duration::MAX);
}
