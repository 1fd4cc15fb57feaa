//! Absurd configuration: zero and maximal caps, margins and connect budgets. Each is taken as
//! documented (a zero cap or connect budget keeps the default, huge ones saturate) and the
//! layers still answer; nothing panics or hangs.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, ServiceExt};
use tower_deadline::{
    ConnectDeadlineLayer, Deadline, DeadlineExceeded, DeadlineLayer, PropagateDeadlineLayer,
};

fn ok()
-> impl tower::Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send> + Clone
{
    tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

#[tokio::test(start_paused = true)]
async fn zero_and_maximal_caps_serve() {
    for cap in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
        let layer = DeadlineLayer::new().http().max(cap);
        let request = Request::get("/")
            .header("x-request-timeout-ms", "99999999999999999999")
            .body(())
            .unwrap();
        let response = layer.layer(ok()).oneshot(request).await.unwrap();
        // A zero cap keeps the default (30 s) and MAX saturates: served. 1 ns is a real cap;
        // an inner service that is ready at once still answers in time (no clock moved).
        assert_eq!(response.status(), 200, "cap {cap:?}");
    }
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

#[test]
fn zero_and_maximal_connect_budgets_are_accepted() {
    for budget in [Duration::ZERO, Duration::MAX] {
        let _layer = ConnectDeadlineLayer::new(budget);
    }
}
