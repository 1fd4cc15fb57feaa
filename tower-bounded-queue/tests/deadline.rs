//! With the `deadline` feature, a waiter whose deadline passes leaves the queue with
//! `DeadlineExceeded` (stage `queued`) and never reaches the inner service.
#![cfg(feature = "deadline")]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{Gate, TestMetrics, client, serve, wait_until};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use tower::{Service, ServiceExt, service_fn};
use tower_bounded_queue::{BoundedQueueBuilder, BoundedQueueLayer, QueueTimeout};
use tower_deadline::{Deadline, DeadlineExceeded, DeadlineLayer, Stage};
use tower_layer::Layer;

fn held(
    gate: &Gate,
) -> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone + use<> {
    let gate = gate.clone();
    service_fn(move |n: u32| {
        let gate = gate.clone();
        async move {
            gate.pass().await;
            Ok::<_, Infallible>(n)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_task_local_deadline_passing_in_the_queue_gives_deadline_exceeded() {
    let metrics = TestMetrics::new();
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1).meter(&metrics.meter()).build();
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));
    let running = tokio::spawn(svc.call(0));

    let deadline = Deadline::after(Duration::from_millis(300));
    let start = tokio::time::Instant::now();
    let error = deadline
        .scope(async { svc.call(1).await })
        .await
        .unwrap_err();
    let exceeded = error
        .downcast_ref::<DeadlineExceeded>()
        .expect("DeadlineExceeded");
    assert_eq!(exceeded.stage(), Stage::Queued);
    assert_eq!(exceeded.budget(), Duration::from_millis(300));
    assert_eq!(exceeded.elapsed(), Duration::from_millis(300));
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(handle.depth(), 0);
    assert_eq!(gate.entered(), 1, "never handed to the inner service");
    assert_eq!(
        metrics.value("tower.queue.rejections", &[("reason", "deadline")]),
        Some(1.0)
    );
    // Counted where every deadline layer counts its own too.
    assert_eq!(
        metrics.sum("tower.deadline.exceeded", &[("where", "queued")]),
        1
    );
    assert_eq!(metrics.sum("tower.deadline.exceeded", &[]), 1);
    gate.release(1);
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_earlier_of_deadline_and_max_wait_decides() {
    let gate = Gate::new();
    let layer = BoundedQueueBuilder::new(1)
        .max_wait(Duration::from_millis(100))
        .build();
    let mut svc = layer.layer(held(&gate));
    let _running = svc.call(0);

    let error = Deadline::after(Duration::from_secs(1))
        .scope(async { svc.call(1).await })
        .await
        .unwrap_err();
    assert!(error.is::<QueueTimeout>(), "max wait first: {error}");

    let error = Deadline::after(Duration::from_millis(50))
        .scope(async { svc.call(2).await })
        .await
        .unwrap_err();
    assert!(error.is::<DeadlineExceeded>(), "deadline first: {error}");
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_is_answered_at_once_instead_of_queued() {
    let gate = Gate::new();
    let layer = BoundedQueueLayer::new(1);
    let handle = layer.handle();
    let mut svc = layer.layer(held(&gate));
    let _running = svc.call(0);
    let deadline = Deadline::after(Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let error = deadline
        .scope(async { svc.call(1).await })
        .await
        .unwrap_err();
    let exceeded = error.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(exceeded.elapsed(), Duration::ZERO);
    assert_eq!(handle.depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn http_mode_reads_the_deadline_from_extensions_and_answers_504_or_grpc_4() {
    let gate = Gate::new();
    let layer = BoundedQueueLayer::new(1).http();
    let handle = layer.handle();
    let inner = {
        let gate = gate.clone();
        service_fn(move |_: Request<Empty<bytes::Bytes>>| {
            let gate = gate.clone();
            async move {
                gate.pass().await;
                Ok::<_, Infallible>(Response::new(Empty::<bytes::Bytes>::new()))
            }
        })
    };
    let mut svc = layer.layer(inner);
    let running = tokio::spawn(svc.call(Request::new(Empty::new())));

    let with_deadline = |grpc: bool| {
        let mut request = Request::new(Empty::new());
        request
            .extensions_mut()
            .insert(Deadline::after(Duration::from_millis(200)));
        if grpc {
            request.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
        }
        request
    };
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(with_deadline(false))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        !response.headers().contains_key("x-overloaded"),
        "a deadline is not load shed"
    );
    assert!(!response.headers().contains_key(http::header::RETRY_AFTER));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("while waiting in the queue"),
        "{body:?}"
    );

    let response = svc.call(with_deadline(true)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "4");
    assert_eq!(gate.entered(), 1);
    assert_eq!(handle.depth(), 0);
    gate.release(1);
    assert_eq!(running.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_deadline_layer_a_queued_request_times_out_with_504() {
    let gate = Gate::new();
    let queue = BoundedQueueBuilder::new(1).capacity(4).build().http();
    let handle = queue.handle();
    let app = {
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
    };
    let router = app.layer(queue).layer(DeadlineLayer::new().http());
    let addr = serve(router).await;
    let client = client();

    let running = {
        let client = client.clone();
        tokio::spawn(async move { common::get(&client, addr, "/").await })
    };
    wait_until("the first request runs", || gate.entered() == 1).await;
    let response = client
        .request(
            Request::get(format!("http://{addr}/"))
                .header("x-request-timeout-ms", "100")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        gate.entered(),
        1,
        "the expired request never reached the handler"
    );
    assert_eq!(handle.depth(), 0);
    gate.release(1);
    assert_eq!(running.await.unwrap().status, StatusCode::OK);
    assert_eq!(handle.in_flight(), 0);
}
