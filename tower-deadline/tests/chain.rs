//! A three-hop chain on loopback: client -> A -> B, each server behind `DeadlineLayer`, A calling
//! B through `PropagateDeadlineLayer`. The clock is paused, so every duration below is exact.
//! Connections are opened by a warm-up request first, so the timed part only reads and writes
//! established loopback sockets.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use http::{Request, StatusCode};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_deadline::{Deadline, DeadlineLayer, PropagateDeadlineLayer};
use tower_reliability_core::{Protocol, error_response};

#[derive(Clone, Default)]
struct Seen {
    budgets: Arc<Mutex<Vec<Duration>>>,
    finished: Arc<Mutex<u32>>,
}

impl Seen {
    fn budgets(&self) -> Vec<Duration> {
        self.budgets.lock().unwrap().clone()
    }
}

/// B: records the budget it was given, then works for `delay`.
async fn start_b(seen: Seen, delay: Duration) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/",
            get(
                move |State(seen): State<Seen>, request: Request<Body>| async move {
                    let deadline = Deadline::from_extensions(request.extensions()).unwrap();
                    seen.budgets.lock().unwrap().push(deadline.remaining());
                    tokio::time::sleep(delay).await;
                    *seen.finished.lock().unwrap() += 1;
                    "b done"
                },
            ),
        )
        .with_state(seen)
        .layer(DeadlineLayer::new().http());
    common::serve(app).await
}

/// A: records its budget, works 100 ms, then calls B with the remaining budget (10 ms margin).
async fn start_a(seen: Seen, b: std::net::SocketAddr) -> std::net::SocketAddr {
    let downstream = ServiceBuilder::new()
        .layer(PropagateDeadlineLayer::new().margin(Duration::from_millis(10)))
        .service(common::client());
    let app = Router::new()
        .route(
            "/",
            get(move |State(seen): State<Seen>| {
                let downstream = downstream.clone();
                async move {
                    // No request at hand here: the task-local scope carries the deadline.
                    let deadline = Deadline::current().unwrap();
                    seen.budgets.lock().unwrap().push(deadline.remaining());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let request = Request::get(format!("http://{b}/"))
                        .body(Body::empty())
                        .unwrap();
                    // As a proxy answers: our own rejections (a deadline cut short here) as
                    // their HTTP mode would, anything else 502.
                    match downstream.oneshot(request).await {
                        Ok(response) => response.status(),
                        Err(error) => error_response::<()>(&*error, Protocol::Http)
                            .map_or(StatusCode::BAD_GATEWAY, |answer| answer.status()),
                    }
                }
            }),
        )
        .with_state(seen)
        .layer(DeadlineLayer::new().http());
    common::serve(app).await
}

async fn get_with_timeout(
    client: &mut common::HttpClient,
    addr: std::net::SocketAddr,
    timeout_ms: Option<&str>,
) -> StatusCode {
    let mut request = Request::get(format!("http://{addr}/"));
    if let Some(ms) = timeout_ms {
        request = request.header("x-request-timeout-ms", ms);
    }
    let request = request.body(Body::empty()).unwrap();
    client.ready().await.unwrap();
    client.call(request).await.unwrap().status()
}

#[tokio::test(start_paused = true)]
async fn each_hop_sees_a_strictly_smaller_budget() {
    let (seen_a, seen_b) = (Seen::default(), Seen::default());
    let b = start_b(seen_b.clone(), Duration::from_millis(5)).await;
    let a = start_a(seen_a.clone(), b).await;
    let mut client = common::client();
    assert_eq!(get_with_timeout(&mut client, a, None).await, StatusCode::OK);

    assert_eq!(
        get_with_timeout(&mut client, a, Some("2000")).await,
        StatusCode::OK
    );

    // Warm-up under the 30 s cap, then the 2 s request.
    assert_eq!(
        seen_a.budgets(),
        [Duration::from_secs(30), Duration::from_secs(2)]
    );
    // B gets what A had left after 100 ms of work, minus the 10 ms margin, in whole ms.
    assert_eq!(
        seen_b.budgets(),
        [Duration::from_millis(29_890), Duration::from_millis(1_890)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_last_hop_fails_in_time_at_every_hop() {
    let (seen_a, seen_b) = (Seen::default(), Seen::default());
    let b = start_b(seen_b.clone(), Duration::from_millis(10)).await;
    let a = start_a(seen_a.clone(), b).await;
    let mut client = common::client();
    assert_eq!(get_with_timeout(&mut client, a, None).await, StatusCode::OK);
    assert_eq!(*seen_b.finished.lock().unwrap(), 1);

    // Now B's work (10 ms) does not fit in the 100 ms it will be given.
    let started = Instant::now();
    let status = get_with_timeout(&mut client, a, Some("115")).await;
    let took = started.elapsed();

    // A works 100 ms, B gets 115 - 100 - 10 = 5 ms and answers 504 when they are up; A cuts
    // its call at the same instant (its budget sent is what it waits for), so 504 either way.
    assert_eq!(seen_b.budgets()[1], Duration::from_millis(5));
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        took,
        Duration::from_millis(105),
        "B stopped at its own deadline"
    );
    assert_eq!(
        *seen_b.finished.lock().unwrap(),
        1,
        "B's handler was cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hop_with_no_time_left_sends_nothing() {
    let (seen_a, seen_b) = (Seen::default(), Seen::default());
    let b = start_b(seen_b.clone(), Duration::ZERO).await;
    let a = start_a(seen_a.clone(), b).await;
    let mut client = common::client();

    // A's 100 ms of work uses up its 105 ms minus the 10 ms margin: nothing is sent to B and A
    // answers with its own deadline.
    let started = Instant::now();
    let status = get_with_timeout(&mut client, a, Some("105")).await;
    assert_eq!(
        status,
        StatusCode::GATEWAY_TIMEOUT,
        "A's downstream call failed fast, answered as the deadline it is"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert!(seen_b.budgets().is_empty(), "B never saw the request");
}
