//! The client layer's wire output, and the helpers for code that has no request at hand.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http::{HeaderMap, Request};
use tower::{ServiceBuilder, ServiceExt};
use tower_deadline::{
    Deadline, DeadlineExceeded, PropagateDeadlineLayer, Stage, enforce, enforce_within,
};

/// A server that answers with the deadline headers it received.
async fn echo() -> std::net::SocketAddr {
    let app = Router::new().fallback(any(|headers: HeaderMap| async move {
        let get = |name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        format!(
            "grpc-timeout={} ms={}",
            get("grpc-timeout"),
            get("x-request-timeout-ms")
        )
    }));
    common::serve(app).await
}

async fn send(addr: std::net::SocketAddr, grpc: bool, deadline: Option<Deadline>) -> String {
    let client = ServiceBuilder::new()
        .layer(PropagateDeadlineLayer::new())
        .service(if grpc {
            common::h2_client()
        } else {
            common::client()
        });
    let mut request = Request::post(format!("http://{addr}/"));
    if grpc {
        request = request.header("content-type", "application/grpc");
    }
    let request = request.body(Body::empty()).unwrap();
    let call = client.oneshot(request);
    let response = match deadline {
        Some(deadline) => deadline.scope(call).await,
        None => call.await,
    }
    .unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    String::from_utf8(body.to_bytes().to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_remaining_budget_is_written_in_the_requests_own_format() {
    let addr = echo().await;
    let deadline = || Some(Deadline::after(Duration::from_millis(1500)));
    assert_eq!(
        send(addr, true, deadline()).await,
        "grpc-timeout=1500000u ms="
    );
    assert_eq!(send(addr, false, deadline()).await, "grpc-timeout= ms=1500");
    assert_eq!(
        send(addr, false, None).await,
        "grpc-timeout= ms=",
        "no deadline, no header"
    );
}

#[tokio::test(start_paused = true)]
async fn an_operation_gets_the_tighter_of_its_budget_and_the_request() {
    let request = Deadline::after(Duration::from_secs(2));
    let result = request
        .scope(enforce_within(
            Duration::from_secs(5),
            tokio::time::sleep(Duration::from_secs(3)),
        ))
        .await;
    let exceeded = result.unwrap_err();
    assert_eq!(exceeded.stage(), Stage::Operation);
    assert_eq!(
        exceeded.budget(),
        Duration::from_secs(2),
        "2 s left, not the 5 s budget"
    );

    let own = enforce_within(
        Duration::from_millis(300),
        tokio::time::sleep(Duration::from_secs(1)),
    );
    assert_eq!(own.await.unwrap_err().budget(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn enforce_without_a_deadline_runs_unbounded() {
    let started = tokio::time::Instant::now();
    enforce(tokio::time::sleep(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn a_finished_operation_is_not_affected_by_its_deadline() {
    let value = Deadline::after(Duration::from_millis(10))
        .scope(enforce(async { 7 }))
        .await
        .unwrap();
    assert_eq!(value, 7);
}

/// Real time here: tokio holds its paused clock still while a blocking file operation runs, and
/// this one blocks until we open the other end of the FIFO.
#[tokio::test]
async fn a_file_read_that_hangs_times_out_as_an_io_error() {
    let dir = std::env::temp_dir().join(format!("tower-deadline-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let made = std::process::Command::new("mkfifo")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(made.success());

    let result = Deadline::after(Duration::from_millis(50))
        .scope(tower_deadline::fs::read(&dir))
        .await;
    // Release the blocked reader first, so a failed assertion cannot leave the runtime waiting
    // on it at shutdown.
    release_reader(&dir);
    std::fs::remove_file(&dir).unwrap();

    let error = result.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    let exceeded = error
        .get_ref()
        .unwrap()
        .downcast_ref::<DeadlineExceeded>()
        .unwrap();
    assert!(exceeded.budget() <= Duration::from_millis(50));
    assert_eq!(exceeded.stage(), Stage::Operation);
}

/// Opens the FIFO's write end without blocking (O_NONBLOCK fails with ENXIO until the reader is
/// there), so the blocked reader sees end of file.
fn release_reader(fifo: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    for _ in 0..500 {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(fifo);
        if opened.is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the reader never opened the FIFO");
}

/// Nested under an enforcing future with the same deadline, an inner one leaves the timing to
/// it (one timer, the outer's stage) but still enforces when polled anywhere else.
#[tokio::test(start_paused = true)]
async fn a_nested_enforcer_defers_to_the_outer_one_but_not_when_spawned_away() {
    let deadline = Deadline::after(Duration::from_secs(1));
    let nested = deadline
        .scope(enforce(async {
            enforce(tokio::time::sleep(Duration::from_secs(5))).await
        }))
        .await;
    let outer = nested.expect_err("the outer enforcer fires at the deadline");
    assert_eq!(outer.budget(), Duration::from_secs(1));

    // Built inside the enforced scope, then polled on another task: it must arm its own timer.
    let started = tokio::time::Instant::now();
    let spawned = Deadline::after(Duration::from_secs(1))
        .scope(enforce(async {
            let inner = enforce_within(
                Duration::from_millis(300),
                tokio::time::sleep(Duration::from_secs(5)),
            );
            tokio::spawn(inner).await.unwrap()
        }))
        .await
        .expect("the outer future finished in time");
    assert_eq!(spawned.unwrap_err().stage(), Stage::Operation);
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

/// Nested under an enforcing future with a later deadline, an inner one with an earlier deadline
/// still ends at its own (the outer wakes the task for it), and afterwards the outer at its own.
#[tokio::test(start_paused = true)]
async fn a_tighter_nested_enforcer_ends_at_its_own_deadline_then_the_outer_at_its_own() {
    let started = tokio::time::Instant::now();
    let outcome = Deadline::after(Duration::from_secs(1))
        .scope(enforce(async {
            let nested = enforce_within(
                Duration::from_millis(300),
                tokio::time::sleep(Duration::from_secs(5)),
            )
            .await;
            let ended = started.elapsed();
            tokio::time::sleep(Duration::from_secs(5)).await;
            (nested, ended)
        }))
        .await;
    let outer = outcome.expect_err("the outer enforcer ends the second sleep");
    assert_eq!(outer.stage(), Stage::Operation);
    assert_eq!(outer.budget(), Duration::from_secs(1));
    assert_eq!(started.elapsed(), Duration::from_secs(1));

    // The same, with the nested result looked at before the outer deadline.
    let started = tokio::time::Instant::now();
    let (nested, ended) = Deadline::after(Duration::from_secs(1))
        .scope(enforce(async {
            let nested = enforce_within(
                Duration::from_millis(300),
                tokio::time::sleep(Duration::from_secs(5)),
            )
            .await;
            (nested, started.elapsed())
        }))
        .await
        .expect("the outer future finished in time");
    assert_eq!(ended, Duration::from_millis(300));
    assert_eq!(nested.unwrap_err().budget(), Duration::from_millis(300));
}

/// A combinator that polls each future with a waker of its own (`FuturesUnordered`) and polls
/// again only what was woken: a tighter nested enforcer inside it cannot count on the enclosing
/// one's wake-ups, and still ends at its own deadline.
#[tokio::test(start_paused = true)]
async fn a_tighter_nested_enforcer_behind_its_own_waker_ends_at_its_own_deadline() {
    use futures_util::StreamExt;
    use futures_util::stream::FuturesUnordered;

    let started = tokio::time::Instant::now();
    let (nested, ended) = Deadline::after(Duration::from_secs(1))
        .scope(enforce(async {
            let mut calls: FuturesUnordered<_> = [enforce_within(
                Duration::from_millis(300),
                tokio::time::sleep(Duration::from_secs(5)),
            )]
            .into_iter()
            .collect();
            let nested = calls.next().await.expect("one call");
            (nested, started.elapsed())
        }))
        .await
        .expect("the outer future finished in time");
    assert_eq!(ended, Duration::from_millis(300));
    assert_eq!(nested.unwrap_err().stage(), Stage::Operation);
}
