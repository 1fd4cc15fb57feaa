//! The queue in front of a real axum server on 127.0.0.1, driven by a hyper client.

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{Gate, TestMetrics, client, serve, wait_until};
use http::StatusCode;
use tower_bounded_queue::{
    BoundedQueueBuilder, OverloadReason, QueueStatus, X_OVERLOAD_STATUS, X_OVERLOADED,
};

fn app(gate: &Gate) -> Router {
    let gate = gate.clone();
    Router::new().route(
        "/",
        get(move || {
            let gate = gate.clone();
            async move {
                gate.pass().await;
                "done"
            }
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_requests_give_six_admitted_and_fourteen_rejected_at_once() {
    let metrics = TestMetrics::new();
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(2)
        .capacity(4)
        .name("web")
        .meter(&metrics.meter())
        .build()
        .http();
    let handle = layer.handle();
    let addr = serve(app(&gate).layer(layer)).await;
    let client = client();

    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { common::get(&client, addr, "/").await })
        })
        .collect();

    // Everything beyond 2 running + 4 waiting is answered while the inner service still holds
    // the admitted ones: the rejections cannot have waited for a slot.
    wait_until("2 in flight and 4 waiting", || {
        handle.in_flight() == 2 && handle.depth() == 4
    })
    .await;
    // The rejections may still be in transit: collect them without releasing anything.
    let mut rejected = Vec::new();
    let mut still = calls;
    for _ in 0..1000 {
        let mut next = Vec::new();
        for call in still {
            if call.is_finished() {
                rejected.push(call.await.unwrap());
            } else {
                next.push(call);
            }
        }
        still = next;
        if rejected.len() >= 14 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rejected.len(), 14, "14 answered before any release");
    assert_eq!(still.len(), 6);
    assert_eq!(gate.entered(), 2, "only the concurrency limit got in");
    for answer in &rejected {
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers[http::header::RETRY_AFTER], "1");
        assert_eq!(answer.headers[&X_OVERLOADED], "true");
        assert_eq!(answer.body, "overloaded: queue full (4 of 4 waiting)\n");
    }
    assert_eq!(handle.status(), QueueStatus::Critical);
    assert_eq!(
        metrics.value(
            "tower.queue.rejections",
            &[("reason", "full"), ("tower.queue.name", "web")]
        ),
        Some(14.0)
    );
    assert_eq!(
        metrics.value("tower.queue.depth", &[("tower.queue.name", "web")]),
        Some(4.0)
    );
    assert_eq!(
        metrics.value("tower.queue.in_flight", &[("tower.queue.name", "web")]),
        Some(2.0)
    );
    assert_eq!(
        metrics.value("tower.queue.status", &[("tower.queue.name", "web")]),
        Some(3.0)
    );

    gate.release(6);
    let mut served = 0;
    for call in still {
        let answer = call.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "done");
        served += 1;
    }
    assert_eq!(served, 6);
    assert_eq!(served + rejected.len(), 20, "nothing lost");
    assert_eq!(gate.entered(), 6);
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
    assert_eq!(handle.status(), QueueStatus::Healthy);
    assert_eq!(metrics.value("tower.queue.depth", &[]), Some(0.0));
    assert_eq!(metrics.value("tower.queue.in_flight", &[]), Some(0.0));
    // The 4 that waited were recorded in the wait histogram.
    assert_eq!(
        metrics.value("tower.queue.wait", &[("tower.queue.name", "web")]),
        Some(4.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_get_unavailable_and_the_status_header_steers() {
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1)
        .capacity(2)
        .build()
        .http()
        .status_header(X_OVERLOAD_STATUS);
    let handle = layer.handle();
    let addr = serve(app(&gate).layer(layer)).await;
    let client = client();

    let first = {
        let client = client.clone();
        tokio::spawn(async move { common::get(&client, addr, "/").await })
    };
    let second = {
        let client = client.clone();
        tokio::spawn(async move { common::get(&client, addr, "/").await })
    };
    let third = {
        let client = client.clone();
        tokio::spawn(async move { common::get(&client, addr, "/").await })
    };
    wait_until("the queue is full", || handle.depth() == 2).await;

    let grpc = common::request(&client, addr, "/", Some("application/grpc+proto")).await;
    assert_eq!(grpc.status, StatusCode::OK);
    assert_eq!(grpc.headers["grpc-status"], "14");
    assert_eq!(
        grpc.headers["grpc-retry-pushback-ms"], "1000",
        "Retry-After's gRPC twin"
    );
    assert_eq!(grpc.headers["content-type"], "application/grpc");
    assert_eq!(
        grpc.headers[&X_OVERLOADED], "true",
        "gRPC rejections are marked as ours too"
    );
    assert!(
        grpc.headers["grpc-message"]
            .to_str()
            .unwrap()
            .contains("queue full")
    );
    assert_eq!(grpc.headers[&X_OVERLOAD_STATUS], "critical");
    assert!(grpc.body.is_empty());

    let plain = common::get(&client, addr, "/").await;
    assert_eq!(plain.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(plain.headers[&X_OVERLOAD_STATUS], "critical");

    gate.release(3);
    for call in [first, second, third] {
        let answer = call.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.headers.contains_key(&X_OVERLOAD_STATUS));
    }
    gate.release(1);
    let calm = common::get(&client, addr, "/").await;
    assert_eq!(calm.status, StatusCode::OK);
    assert_eq!(calm.headers[&X_OVERLOAD_STATUS], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_frees_its_slot_and_the_queue_keeps_serving() {
    let metrics = TestMetrics::new();
    let layer = BoundedQueueBuilder::new(1)
        .capacity(1)
        .meter(&metrics.meter())
        .build()
        .http();
    let handle = layer.handle();
    let router = Router::new()
        .route(
            "/panic",
            get(|| async {
                tokio::task::yield_now().await;
                panic!("handler bug");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route("/ok", get(|| async { "ok" }))
        .layer(layer);
    let addr = serve(router).await;
    let client = client();

    for _ in 0..3 {
        // The connection task dies with the panic; the client sees the connection closed.
        let response = client
            .request(
                http::Request::get(format!("http://{addr}/panic"))
                    .body(http_body_util::Empty::new())
                    .unwrap(),
            )
            .await;
        assert!(response.is_err(), "the panicking request gets no answer");
        wait_until("the slot is freed", || handle.in_flight() == 0).await;
    }
    // With concurrency 1 and capacity 1, a leaked slot would make these queue or be rejected.
    for _ in 0..5 {
        let answer = common::get(&client, addr, "/ok").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "ok");
    }
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
    // Every reason's series exists from the start, and none counted a rejection.
    let rejections = metrics.matching("tower.queue.rejections", &[]);
    assert_eq!(rejections.len(), 5, "{rejections:?}");
    assert_eq!(metrics.sum("tower.queue.rejections", &[]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_serves_queued_work_and_rejects_new_work() {
    let metrics = TestMetrics::new();
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(2)
        .capacity(4)
        .meter(&metrics.meter())
        .build()
        .http();
    let handle = layer.handle();
    let addr = serve(app(&gate).layer(layer)).await;
    let client = client();

    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { common::get(&client, addr, "/").await })
        })
        .collect();
    wait_until("2 running and 3 waiting", || {
        handle.in_flight() == 2 && handle.depth() == 3
    })
    .await;

    let drained = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.drain().await })
    };
    wait_until("the queue is closed", || handle.is_closed()).await;
    let late = common::get(&client, addr, "/").await;
    assert_eq!(late.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(late.body.contains("queue closed"), "{}", late.body);
    assert!(!drained.is_finished(), "drain waits for the work");

    gate.release(5);
    drained.await.unwrap();
    for call in calls {
        assert_eq!(
            call.await.unwrap().status,
            StatusCode::OK,
            "queued work is served"
        );
    }
    assert_eq!(gate.entered(), 5);
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
    assert_eq!(
        metrics.value("tower.queue.rejections", &[("reason", "closed")]),
        Some(1.0)
    );
    assert!(!handle.close(), "already closed");
    let _ = OverloadReason::Closed;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_disconnect_while_waiting_or_running_free_their_places() {
    use tokio::io::AsyncWriteExt;

    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1).capacity(2).build().http();
    let handle = layer.handle();
    let addr = serve(app(&gate).layer(layer)).await;

    let mut running = tokio::net::TcpStream::connect(addr).await.unwrap();
    running
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    wait_until("the first request runs", || handle.in_flight() == 1).await;
    let mut waiting = tokio::net::TcpStream::connect(addr).await.unwrap();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    wait_until("the second request waits", || handle.depth() == 1).await;

    drop(waiting);
    wait_until("the waiting place is freed", || handle.depth() == 0).await;
    drop(running);
    wait_until("the running slot is freed", || handle.in_flight() == 0).await;
    assert_eq!(gate.entered(), 1, "the disconnected waiter never ran");

    // The queue is whole again: a full round of work gets through.
    gate.release(3);
    let client = client();
    for _ in 0..3 {
        assert_eq!(common::get(&client, addr, "/").await.status, StatusCode::OK);
    }
    assert_eq!((handle.in_flight(), handle.depth()), (0, 0));
}

#[test]
fn error_response_answers_the_queues_errors_found_in_a_chain_and_nothing_else() {
    use tower_reliability_core::{Protocol, error_response};

    // A client-side queue in error mode, wrapped by the caller's own error type.
    #[derive(Debug)]
    struct CallFailed(tower::BoxError);
    impl std::fmt::Display for CallFailed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("call failed")
        }
    }
    impl std::error::Error for CallFailed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let overloaded: tower::BoxError = rt.block_on(async {
        use tower::{Layer, Service, ServiceExt};
        let inner = tower::service_fn(|_: ()| {
            std::future::pending::<Result<(), std::convert::Infallible>>()
        });
        let mut svc = BoundedQueueBuilder::new(1).capacity(0).build().layer(inner);
        let _busy = svc.ready().await.unwrap().call(());
        svc.ready().await.unwrap().call(()).await.unwrap_err()
    });
    let error = CallFailed(overloaded);

    let plain = error_response::<()>(&error, Protocol::Http).expect("found through the chain");
    assert_eq!(plain.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(plain.headers()[http::header::RETRY_AFTER], "1");
    assert_eq!(plain.headers()[&X_OVERLOADED], "true");
    let grpc = error_response::<()>(&error, Protocol::Grpc).unwrap();
    assert_eq!(grpc.status(), StatusCode::OK);
    assert_eq!(grpc.headers()["grpc-status"], "14");
    assert_eq!(grpc.headers()["grpc-retry-pushback-ms"], "1000");

    let other = std::io::Error::other("connection refused");
    assert!(error_response::<()>(&other, Protocol::Http).is_none());
}
