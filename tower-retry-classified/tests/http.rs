//! Retries against a real hyper upstream on 127.0.0.1 that follows a script per request.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Chunked, TestMeter, Upstream, client, status};
use http::Request;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_retry_classified::{Attempts, Backoff, Jitter, RetryLayer};

fn no_jitter() -> Backoff {
    Backoff::default().jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn post_with_idempotency_key_is_retried_with_identical_body() {
    let upstream = Upstream::start(vec![status(503), status(503), status(503), status(200)]).await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http()
                .backoff(no_jitter())
                .meter(&meter.meter()),
        )
        .service(client::<Full<Bytes>>());
    let body = Bytes::from(vec![42u8; 2048]);
    let req = Request::post(upstream.uri("/orders"))
        .header("idempotency-key", "k-1")
        .body(Full::new(body.clone()))
        .unwrap();
    let start = Instant::now();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(Attempts::of(&resp), 4);
    // 100 + 200 + 400 ms of backoff, nothing more.
    assert_eq!(start.elapsed(), Duration::from_millis(700));
    let seen = upstream.seen();
    assert_eq!(seen.len(), 4);
    for s in &seen {
        assert_eq!(s.method, http::Method::POST);
        assert_eq!(s.body, body);
        assert_eq!(s.headers["idempotency-key"], "k-1");
    }
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "reply 3");
    assert_eq!(
        meter.sum(
            "tower.retry.attempts",
            &[("outcome", "failure"), ("reason", "service_unavailable")]
        ),
        3
    );
    assert_eq!(
        meter.sum("tower.retry.attempts", &[("outcome", "success")]),
        1
    );
    assert_eq!(meter.histogram_count("tower.retry.backoff"), 3);
}

#[tokio::test(start_paused = true)]
async fn streamed_10k_body_is_replayed_byte_for_byte() {
    let upstream = Upstream::start(vec![status(503), status(502), status(200)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http())
        .service(client::<Chunked>());
    let (body, expected) = Chunked::new(10 * 1024, 1000);
    let req = Request::put(upstream.uri("/blob")).body(body).unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(Attempts::of(&resp), 3);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    for s in seen {
        assert_eq!(s.body.len(), 10 * 1024);
        assert_eq!(s.body, expected);
    }
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_called_exactly_once() {
    for code in [404, 400] {
        let upstream = Upstream::start(vec![status(code), status(200)]).await;
        let meter = TestMeter::new();
        let mut svc = ServiceBuilder::new()
            .layer(RetryLayer::for_http().meter(&meter.meter()))
            .service(client::<Full<Bytes>>());
        let req = Request::get(upstream.uri("/missing"))
            .body(Full::default())
            .unwrap();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(resp.status(), code);
        assert_eq!(Attempts::of(&resp), 1);
        assert_eq!(upstream.calls(), 1);
        assert_eq!(
            meter.sum("tower.retry.skipped", &[("reason", "permanent")]),
            1
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_429_waits_exactly_the_hint() {
    let upstream = Upstream::start(vec![status(429).header("retry-after", "1"), status(200)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http())
        .service(client::<Full<Bytes>>());
    let req = Request::get(upstream.uri("/"))
        .body(Full::default())
        .unwrap();
    let start = Instant::now();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let seen = upstream.seen();
    assert_eq!(seen[1].at - seen[0].at, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn retry_after_past_the_total_cap_is_not_waited_for() {
    let upstream =
        Upstream::start(vec![status(503).header("retry-after", "60"), status(200)]).await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().meter(&meter.meter()))
        .service(client::<Full<Bytes>>());
    let req = Request::get(upstream.uri("/"))
        .body(Full::default())
        .unwrap();
    let start = Instant::now();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    // The caller gets the upstream's real 503 at once.
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "60");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(upstream.calls(), 1);
    assert_eq!(
        meter.sum("tower.retry.skipped", &[("reason", "total_cap")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn connection_refused_then_listening_is_retried_for_post_without_key() {
    // Reserve a port, then close it so connecting is refused.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http()
                .backoff(no_jitter())
                .meter(&meter.meter()),
        )
        .service(client::<Full<Bytes>>());
    // The upstream starts listening 150 ms later (between the 2nd and 3rd attempt).
    let upstream = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Upstream::serve(listener, vec![status(201)])
    });
    let req = Request::post(format!("http://{addr}/jobs"))
        .body(Full::new(Bytes::from_static(b"job")))
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(Attempts::of(&resp), 3);
    let upstream = upstream.await.unwrap();
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, "job");
    assert_eq!(
        meter.sum(
            "tower.retry.attempts",
            &[("outcome", "failure"), ("reason", "connection_refused")]
        ),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn post_without_key_is_not_retried_on_503() {
    let upstream = Upstream::start(vec![status(503), status(200)]).await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().meter(&meter.meter()))
        .service(client::<Full<Bytes>>());
    let req = Request::post(upstream.uri("/pay"))
        .body(Full::new(Bytes::from_static(b"once")))
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(upstream.calls(), 1);
    assert_eq!(
        meter.sum("tower.retry.skipped", &[("reason", "non_idempotent")]),
        1
    );

    // Opting in retries any method.
    let upstream = Upstream::start(vec![status(503), status(200)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().retry_any_method(true))
        .service(client::<Full<Bytes>>());
    let req = Request::post(upstream.uri("/pay"))
        .body(Full::new(Bytes::from_static(b"once")))
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn streamed_80k_body_is_sent_once_and_counted() {
    let upstream = Upstream::start(vec![status(503), status(200)]).await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().meter(&meter.meter()))
        .service(client::<Chunked>());
    let (body, expected) = Chunked::new(80 * 1024, 4096);
    let req = Request::put(upstream.uri("/big")).body(body).unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, expected);
    assert_eq!(
        meter.sum("tower.retry.skipped", &[("reason", "body_too_large")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn body_over_cap_by_size_hint_is_sent_once() {
    let upstream = Upstream::start(vec![status(503), status(200)]).await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::for_http()
                .max_replay_body(1024)
                .meter(&meter.meter()),
        )
        .service(client::<Full<Bytes>>());
    let req = Request::put(upstream.uri("/big"))
        .body(Full::new(Bytes::from(vec![1u8; 4096])))
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(upstream.calls(), 1);
    assert_eq!(upstream.seen()[0].body.len(), 4096);
    assert_eq!(
        meter.sum("tower.retry.skipped", &[("reason", "body_too_large")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_trailers_only_unavailable_is_retried() {
    let upstream = Upstream::start(vec![
        status(200).header("grpc-status", "14"),
        status(200)
            .header("grpc-status", "14")
            .header("grpc-retry-pushback-ms", "250"),
        status(200).header("grpc-status", "0"),
    ])
    .await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().backoff(no_jitter()))
        .service(client::<Full<Bytes>>());
    let req = Request::post(upstream.uri("/pkg.Svc/Method"))
        .header("content-type", "application/grpc")
        .header("idempotency-key", "x")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let start = Instant::now();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.headers()["grpc-status"], "0");
    assert_eq!(Attempts::of(&resp), 3);
    // 100 ms backoff, then the server's 250 ms pushback.
    assert_eq!(start.elapsed(), Duration::from_millis(350));

    // Any other code is permanent; a negative pushback stops retrying.
    for reply in [
        status(200).header("grpc-status", "3"),
        status(200)
            .header("grpc-status", "14")
            .header("grpc-retry-pushback-ms", "-1"),
    ] {
        let upstream = Upstream::start(vec![reply, status(200).header("grpc-status", "0")]).await;
        let req = Request::get(upstream.uri("/pkg.Svc/Method"))
            .body(Full::default())
            .unwrap();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_ne!(resp.headers()["grpc-status"], "0");
        assert_eq!(upstream.calls(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_return_the_last_real_response() {
    let upstream = Upstream::start(vec![status(500)]).await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().max_retries(2).meter(&meter.meter()))
        .service(client::<Full<Bytes>>());
    let req = Request::get(upstream.uri("/"))
        .body(Full::default())
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(Attempts::of(&resp), 3);
    assert_eq!(upstream.calls(), 3);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "reply 2");
    assert_eq!(
        meter.sum("tower.retry.skipped", &[("reason", "max_retries")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn refused_forever_returns_the_real_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().max_retries(1))
        .service(client::<Full<Bytes>>());
    let req = Request::get(format!("http://{addr}/"))
        .body(Full::default())
        .unwrap();
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    let err = err
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .expect("the client's own error type");
    assert!(err.is_connect());
}

#[tokio::test(start_paused = true)]
async fn axum_router_as_inner_service() {
    use axum::Router;
    use axum::routing::get;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    let hits = Arc::new(AtomicU32::new(0));
    let app = Router::new().route(
        "/",
        get({
            let hits = hits.clone();
            move || async move {
                if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                    http::StatusCode::BAD_GATEWAY
                } else {
                    http::StatusCode::OK
                }
            }
        }),
    );
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http())
        .map_request(
            |req: Request<tower_retry_classified::ReplayBody<axum::body::Body>>| {
                req.map(axum::body::Body::new)
            },
        )
        .service(app);
    let req = Request::get("/").body(axum::body::Body::empty()).unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn long_retry_after_is_clamped_to_the_configured_maximum() {
    let upstream =
        Upstream::start(vec![status(503).header("retry-after", "10"), status(200)]).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().max_retry_after(Duration::from_secs(2)))
        .service(client::<Full<Bytes>>());
    let req = Request::get(upstream.uri("/"))
        .body(Full::default())
        .unwrap();
    let start = Instant::now();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_http_date_is_honoured() {
    // HTTP-dates have one-second resolution and are read against the wall clock: ask for a
    // date 3 s ahead and accept the truncation.
    let at = std::time::SystemTime::now() + Duration::from_secs(3);
    let upstream = Upstream::start(vec![
        status(503).header("retry-after", &httpdate::fmt_http_date(at)),
        status(200),
    ])
    .await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http())
        .service(client::<Full<Bytes>>());
    let req = Request::get(upstream.uri("/"))
        .body(Full::default())
        .unwrap();
    let start = Instant::now();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited <= Duration::from_secs(3),
        "{waited:?}"
    );
}

/// An upstream that drops the first connection after reading the request head, then answers.
async fn drops_first_connection() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicU32::new(0));
    let seen = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                if n > 0 {
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
                // n == 0: close without a response.
            });
        }
    });
    (addr, conns)
}

#[tokio::test(start_paused = true)]
async fn connection_closed_before_response_is_retried_only_when_idempotent() {
    use std::sync::atomic::Ordering;

    let (addr, conns) = drops_first_connection().await;
    let meter = TestMeter::new();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().meter(&meter.meter()))
        .service(client::<Full<Bytes>>());
    let req = Request::get(format!("http://{addr}/"))
        .body(Full::default())
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(Attempts::of(&resp), 2);
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    assert_eq!(
        meter.sum(
            "tower.retry.attempts",
            &[("outcome", "failure"), ("reason", "incomplete_message")]
        ),
        1
    );

    // The request may have been processed: a POST without a key gets the real error.
    let (addr, conns) = drops_first_connection().await;
    let req = Request::post(format!("http://{addr}/"))
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert!(
        err.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some()
    );
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn each_resend_carries_its_attempt_number_for_the_layers_below() {
    let upstream = Upstream::start(vec![status(503), status(502), status(200)]).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::for_http().backoff(no_jitter()))
        .map_request(move |request: Request<_>| {
            record.lock().unwrap().push(Attempts::of_request(&request));
            request
        })
        .service(client::<Full<Bytes>>());
    let req = Request::get(upstream.uri("/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(Attempts::of(&resp), 3);
    // The first attempt carries nothing (read as 1); each resend its number.
    assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
}
