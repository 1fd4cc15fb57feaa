//! Proxying: what reaches the provider, streaming both ways, routing, HTTP/2 and gRPC callers.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_preserves_method_query_headers_and_body_and_drops_hop_by_hop() {
    let upstream = Upstream::fixed(201, Duration::ZERO).await;
    let list = upstreams(&[("echo", &upstream)]);
    for flags in [ALL_ON, ALL_OFF] {
        let gateway = Gateway::start(&env(flags, &[("GATEWAY_UPSTREAMS", &list)]));
        let body = vec![7u8; 200_000]; // larger than the retry replay buffer: sent once
        let request = Request::post(gateway.url("/v1/a/b?q=1&r=two"))
            .header("x-custom", "kept")
            .header("connection", "x-private")
            .header("x-private", "dropped")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let answer = send(&client(), request).await;
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(answer.headers["x-upstream-path"], "/v1/a/b");
        assert!(
            !answer.headers.contains_key("keep-alive"),
            "hop-by-hop dropped"
        );
        let seen = upstream.seen().pop().unwrap();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.uri, "/v1/a/b?q=1&r=two");
        assert_eq!(seen.headers["x-custom"], "kept");
        assert!(!seen.headers.contains_key("x-private"));
        assert_eq!(seen.headers["host"], upstream.addr.to_string().as_str());
        assert_eq!(seen.body.len(), body.len());
        assert_eq!(&seen.body[..], &body[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_alternates_and_failover_skips_a_failing_provider() {
    let a = Upstream::fixed(200, Duration::ZERO).await;
    let b = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("a", &a), ("b", &b)]);
    let gateway = Gateway::start(&env(ALL_OFF, &[("GATEWAY_UPSTREAMS", &list)]));
    let client = client();
    for _ in 0..6 {
        assert_eq!(
            get(&client, &gateway.url("/v1/x")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!((a.calls(), b.calls()), (3, 3));
    drop(gateway);

    let down = Upstream::fixed(503, Duration::ZERO).await;
    let up = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("primary", &down), ("backup", &up)]);
    let mut flags = ALL_ON.to_vec();
    flags[0] = ("CP2_ADVANCED_RETRY_ENABLED", "false");
    let gateway = Gateway::start(&env(
        &flags,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_ROUTING", "failover"),
        ],
    ));
    let statuses: Vec<u16> = {
        let mut s = Vec::new();
        for _ in 0..6 {
            s.push(get(&client, &gateway.url("/v1/x")).await.status.as_u16());
        }
        s
    };
    assert_eq!(statuses, vec![503, 503, 503, 200, 200, 200]);
    assert_eq!((down.calls(), up.calls()), (3, 3));
    let metrics = get(&client, &gateway.url("/metrics")).await.body;
    let failovers = sample_sum(
        &metrics,
        "gateway_routing_decisions_total",
        &["provider=\"backup\"", "reason=\"failover\""],
    );
    assert_eq!(failovers, 3.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_callers_are_proxied_to_http1_providers() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("a", &upstream)]);
    let gateway = Gateway::start(&env(ALL_ON, &[("GATEWAY_UPSTREAMS", &list)]));
    let h2: TestClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let request = Request::post(gateway.url("/v1/chat"))
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let answer = send(&h2, request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(&upstream.seen()[0].body[..], b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_callers_get_grpc_statuses_for_gateway_errors() {
    let closed = closed_port().await;
    let slow = Upstream::fixed(200, Duration::from_secs(2)).await;
    let list = format!("down=http://{closed},slow={}", slow.url());
    let mut flags = ALL_ON.to_vec();
    flags[0] = ("CP2_ADVANCED_RETRY_ENABLED", "false");
    let gateway = Gateway::start(&env(&flags, &[("GATEWAY_UPSTREAMS", &list)]));
    let client = client();
    let grpc = |timeout: &str| {
        Request::post(gateway.url("/v1/pkg.Service/Method"))
            .header("content-type", "application/grpc")
            .header("grpc-timeout", timeout)
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap()
    };
    // Round robin: first `down` (unavailable), then `slow` (deadline exceeded).
    let unavailable = send(&client, grpc("5S")).await;
    assert_eq!(unavailable.status, StatusCode::OK);
    assert_eq!(unavailable.headers["grpc-status"], "14");
    let exceeded = send(&client, grpc("200m")).await;
    assert_eq!(exceeded.status, StatusCode::OK);
    assert_eq!(exceeded.headers["grpc-status"], "4");
    assert!(exceeded.took < Duration::from_secs(1));
}

/// An upstream that reads the first request frame, reports it, and answers with a body whose
/// second frame waits for the test's go-ahead.
async fn streaming_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<Bytes>,
    tokio::sync::mpsc::Sender<()>,
) {
    use http_body_util::BodyExt;
    use http_body_util::channel::Channel;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (first_tx, first_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (go_tx, go_rx) = tokio::sync::mpsc::channel::<()>(4);
    let go_rx = std::sync::Arc::new(tokio::sync::Mutex::new(go_rx));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (first_tx, go_rx) = (first_tx.clone(), go_rx.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (first_tx, go_rx) = (first_tx.clone(), go_rx.clone());
                        async move {
                            let mut body = request.into_body();
                            // The first frame arrives while the caller still holds the rest.
                            let mut received = Vec::new();
                            if let Some(Ok(frame)) = body.frame().await {
                                let data = frame.into_data().unwrap_or_default();
                                received.extend_from_slice(&data);
                                first_tx.send(data).await.unwrap();
                            }
                            let rest = body.collect().await.unwrap().to_bytes();
                            received.extend_from_slice(&rest);
                            let (mut sender, channel) =
                                Channel::<Bytes, std::convert::Infallible>::new(4);
                            tokio::spawn(async move {
                                sender.send_data(Bytes::from(received)).await.unwrap();
                                go_rx.lock().await.recv().await;
                                sender
                                    .send_data(Bytes::from_static(b"|second"))
                                    .await
                                    .unwrap();
                            });
                            Ok::<_, std::convert::Infallible>(http::Response::new(channel))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, first_rx, go_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_bodies_stream_through_in_both_modes() {
    use http_body_util::BodyExt;
    use http_body_util::channel::Channel;

    const STEP: Duration = Duration::from_secs(10);
    let (addr, mut first_rx, go_tx) = streaming_upstream().await;
    let list = format!("stream=http://{addr}");
    for flags in [ALL_ON, ALL_OFF] {
        let gateway = Gateway::start(&env(flags, &[("GATEWAY_UPSTREAMS", &list)]));
        let client: hyper_util::client::legacy::Client<_, Channel<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let (mut body_tx, body) = Channel::<Bytes>::new(4);
        let request = Request::put(gateway.url("/v1/upload")).body(body).unwrap();
        let call = tokio::spawn(async move { client.request(request).await });

        body_tx
            .send_data(Bytes::from_static(b"part1"))
            .await
            .unwrap();
        let first = tokio::time::timeout(STEP, first_rx.recv())
            .await
            .expect("the upstream got the first request frame before the body ended");
        assert_eq!(first.unwrap(), "part1");
        body_tx
            .send_data(Bytes::from_static(b"+part2"))
            .await
            .unwrap();
        drop(body_tx);

        let response = tokio::time::timeout(STEP, call)
            .await
            .expect("the response head came before its body ended")
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let frame = tokio::time::timeout(STEP, body.frame())
            .await
            .expect("the first response frame came before the upstream finished");
        let data = frame.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data, "part1+part2");
        go_tx.send(()).await.unwrap();
        let rest = tokio::time::timeout(STEP, body.collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        assert_eq!(rest, "|second");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_count_serves_every_connection() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("a", &upstream)]);
    for (workers, flags) in [("1", ALL_OFF), ("3", ALL_ON), ("3", ALL_OFF)] {
        let gateway = Gateway::start(&env(
            flags,
            &[("GATEWAY_UPSTREAMS", &list), ("GATEWAY_WORKERS", workers)],
        ));
        // One thread per worker, named for it (Linux shows thread names in /proc; a thread
        // names itself once running, so give it a moment).
        let pid = gateway.pid();
        let worker_threads = move || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with("gateway-worker"))
                .count()
        };
        let expected: usize = workers.parse().unwrap();
        assert!(
            eventually(Duration::from_secs(5), || worker_threads() == expected).await,
            "{} worker threads, expected {expected}",
            worker_threads()
        );
        // Each request on its own connection, so the kernel spreads them over the workers'
        // sockets: every one is answered whichever worker took it.
        let answers = parallel(gateway.url("/v1/spread"), 40).await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    }
}
