//! The edge against hostile HTTP/1 clients: slowloris, connection floods, idle connections,
//! oversized heads and bodies, request smuggling, underscore headers, forged forwarding headers.
//! Each refusal is also read back from `/metrics` by its reason.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// `gateway_edge_refused_total{reason}` once it reads `expected`, or what it reads after 3 s.
/// A refusal hyper answers itself is counted when its connection's task ends, which can be a
/// moment after the client saw the answer and the close.
pub(crate) async fn refused(gateway: &Gateway, reason: &str, expected: f64) -> f64 {
    let filter = format!("reason=\"{reason}\"");
    let started = Instant::now();
    loop {
        let text = get(&client(), &gateway.url("/metrics")).await.body;
        let counted = sample_sum(&text, "gateway_edge_refused_total", &[&filter]);
        if counted == expected || started.elapsed() > Duration::from_secs(3) {
            return counted;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `bytes` on a new connection and reads until the gateway closes it (at most 10 s).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the gateway kept the connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether the gateway has closed `stream` (EOF or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut byte = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut byte)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // An answer to an earlier request: keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

fn p99(mut took: Vec<Duration>) -> Duration {
    took.sort();
    took[(took.len() * 99 / 100).min(took.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_closed_at_the_header_timeout_while_others_are_served() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("p", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_HEADER_READ_TIMEOUT_MS", "1000"),
        ],
    ));
    let client = client();
    let url = gateway.url("/v1/x");
    let mut quiet = Vec::new();
    for _ in 0..50 {
        let answer = get(&client, &url).await;
        assert_eq!(answer.status, StatusCode::OK);
        quiet.push(answer.took);
    }

    // 200 clients each start a head and add one byte every 100 ms, never finishing it.
    const SLOW: usize = 200;
    let addr = gateway.addr;
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let started = Instant::now();
                stream
                    .write_all(b"GET /v1/x HTTP/1.1\r\nhost: a\r\nx-slow: ")
                    .await
                    .unwrap();
                let mut buf = [0u8; 64];
                loop {
                    tokio::select! {
                        read = stream.read(&mut buf) => match read {
                            Ok(0) | Err(_) => return Some(started.elapsed()),
                            Ok(_) => return None, // answered: the head was never finished
                        },
                        () = tokio::time::sleep(Duration::from_millis(100)) => {
                            if stream.write_all(b"a").await.is_err() {
                                return Some(started.elapsed());
                            }
                            if started.elapsed() > Duration::from_secs(10) {
                                return None;
                            }
                        }
                    }
                }
            })
        })
        .collect();

    // Meanwhile, normal clients are served as before: not behind the slow heads.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut loaded = Vec::new();
    for _ in 0..50 {
        let answer = get(&client, &url).await;
        assert_eq!(answer.status, StatusCode::OK);
        loaded.push(answer.took);
    }
    let (quiet, loaded) = (p99(quiet), p99(loaded));
    assert!(
        loaded < Duration::from_millis(250),
        "p99 {loaded:?} with slow clients (quiet: {quiet:?})"
    );

    for task in slow {
        let closed = task.await.unwrap().expect("a slow client was closed");
        // A quarter of the timeout is the checks' resolution; the rest is scheduling slack.
        assert!(
            closed >= Duration::from_millis(950) && closed < Duration::from_millis(2_500),
            "closed after {closed:?}"
        );
    }
    assert_eq!(
        refused(&gateway, "header_timeout", SLOW as f64).await,
        SLOW as f64
    );
    assert_eq!(upstream.calls(), 100, "no slow head reached the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_stay_within_the_limit_and_bounded_memory() {
    const LIMIT: usize = 1000;
    const FLOOD: usize = 10_000;
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("p", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_WORKERS", "2"),
            ("GATEWAY_MAX_CONNECTIONS", &LIMIT.to_string()),
        ],
    ));
    assert_eq!(
        get(&client(), &gateway.url("/v1/x")).await.status,
        StatusCode::OK
    );
    let before = gateway.rss_kib();

    // Connections that send nothing: held open up to the limit, the rest closed at once.
    let mut held = Vec::with_capacity(FLOOD);
    for batch in 0..FLOOD / 500 {
        let connects: Vec<_> = (0..500)
            .map(|_| tokio::spawn(TcpStream::connect(gateway.addr)))
            .collect();
        for connect in connects {
            match connect.await.unwrap() {
                Ok(stream) => held.push(stream),
                Err(error) => panic!("batch {batch}: connect failed: {error}"),
            }
        }
    }
    let mut closed = 0;
    let mut open = Vec::new();
    for mut stream in held {
        if closed_within(&mut stream, Duration::from_millis(1)).await {
            closed += 1;
        } else {
            open.push(stream);
        }
    }
    // Refused connections may still be on their way to being closed: look again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut still_open = Vec::new();
    for mut stream in open {
        if closed_within(&mut stream, Duration::from_millis(1)).await {
            closed += 1;
        } else {
            still_open.push(stream);
        }
    }
    let after = gateway.rss_kib();
    assert!(
        still_open.len() <= LIMIT,
        "{} connections held open, limit {LIMIT}",
        still_open.len()
    );
    assert!(closed >= FLOOD - LIMIT, "only {closed} closed");
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );

    // Once the flood lets go, everyone is served again and the refusals are on /metrics.
    drop(still_open);
    let served = async {
        loop {
            let scraped = tokio::time::timeout(
                Duration::from_secs(1),
                client().request(
                    Request::get(gateway.url("/metrics"))
                        .body(Full::default())
                        .unwrap(),
                ),
            )
            .await;
            if let Ok(Ok(response)) = scraped {
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let text = String::from_utf8_lossy(&body).into_owned();
                if sample_sum(&text, "gateway_connections_open", &[]) <= 2.0 {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let text = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the open connections fell back once the flood closed");
    let limited = sample_sum(
        &text,
        "gateway_edge_refused_total",
        &["reason=\"connection_limit\""],
    );
    assert!(limited >= (FLOOD - LIMIT) as f64, "{limited} counted");
    assert_eq!(
        get(&client(), &gateway.url("/v1/x")).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("p", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_IDLE_TIMEOUT_MS", "400"),
        ],
    ));
    // One that never says anything, one that goes quiet after a request.
    let mut silent = TcpStream::connect(gateway.addr).await.unwrap();
    let mut kept = TcpStream::connect(gateway.addr).await.unwrap();
    kept.write_all(b"GET /v1/x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(!closed_within(&mut kept, Duration::from_millis(300)).await);
    assert!(closed_within(&mut kept, Duration::from_secs(2)).await);
    assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "closed after {took:?}");
    assert_eq!(refused(&gateway, "idle_timeout", 2.0).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_gets_400_and_reaches_no_provider() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("p", &upstream)]);
    let gateway = Gateway::start(&env(ALL_ON, &[("GATEWAY_UPSTREAMS", &list)]));
    for smuggling in [
        &b"POST /v1/x HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        &b"POST /v1/x HTTP/1.1\r\nhost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\nGET /v1/admin HTTP/1.1\r\nhost: a\r\n\r\n"[..],
    ] {
        let answer = exchange(gateway.addr, smuggling).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("Content-Length and Transfer-Encoding"), "{answer}");
        // One answer, then the connection is closed: the smuggled request is never read.
        assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    }
    // Pipelined after an honest request: the honest one is served, the other refused.
    let answer = exchange(
        gateway.addr,
        b"GET /v1/honest HTTP/1.1\r\nhost: a\r\n\r\nPOST /v1/x HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    let statuses: Vec<_> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, vec!["200", "400"], "{answer}");
    let seen: Vec<_> = upstream.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(seen, vec!["/v1/honest"]);
    assert_eq!(
        refused(&gateway, "content_length_with_transfer_encoding", 3.0).await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_and_oversized_bodies_413_without_being_read() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("p", &upstream)]);
    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_MAX_HEADER_BYTES", "16384"),
            ("GATEWAY_MAX_BODY_BYTES", "1048576"),
        ],
    ));
    let big = format!(
        "GET /v1/x HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert!(
        exchange(gateway.addr, big.as_bytes())
            .await
            .starts_with("HTTP/1.1 431")
    );
    let mut many = String::from("GET /v1/x HTTP/1.1\r\nhost: a\r\n");
    for i in 0..150 {
        many.push_str(&format!("x-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(
        exchange(gateway.addr, many.as_bytes())
            .await
            .starts_with("HTTP/1.1 431")
    );
    assert_eq!(refused(&gateway, "headers_too_large", 2.0).await, 2.0);

    // A declared gigabyte: 413 before a byte of it is sent, and the gateway does not grow.
    let before = gateway.rss_kib();
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/x HTTP/1.1\r\nhost: a\r\ncontent-length: 1073741824\r\nexpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered before the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");

    // A body with no declared length is cut where it passes the limit.
    let (mut sender, body) = Channel::<Bytes, std::convert::Infallible>::new(1);
    tokio::spawn(async move {
        for _ in 0..32 {
            if sender
                .send_data(Bytes::from(vec![1u8; 64 * 1024]))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Channel<Bytes, std::convert::Infallible>>();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(Request::post(gateway.url("/v1/x")).body(body).unwrap()),
    )
    .await
    .expect("answered within 10 s")
    .expect("an answer");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(gateway.rss_kib().saturating_sub(before) < 16 * 1024);
    assert_eq!(refused(&gateway, "body_too_large", 2.0).await, 2.0);
    assert!(
        upstream.seen().iter().all(|s| s.body.len() <= 1_048_576),
        "no provider got more than the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_headers_are_refused_and_forwarding_headers_replaced() {
    let upstream = Upstream::fixed(200, Duration::ZERO).await;
    let list = upstreams(&[("p", &upstream)]);
    let gateway = Gateway::start(&env(ALL_ON, &[("GATEWAY_UPSTREAMS", &list)]));
    let client = client();
    let request = Request::get(gateway.url("/v1/x"))
        .header("x_user", "admin")
        .body(Full::default())
        .unwrap();
    let answer = send(&client, request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("'_'"), "{}", answer.body);
    assert_eq!(upstream.calls(), 0);
    assert_eq!(refused(&gateway, "underscore_header", 1.0).await, 1.0);

    let forged = || {
        Request::get(gateway.url("/v1/x"))
            .header("x-forwarded-for", "203.0.113.9")
            .header("forwarded", "for=203.0.113.9")
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(send(&client, forged()).await.status, StatusCode::OK);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert!(!seen.headers.contains_key("forwarded"));
    drop(gateway);

    let gateway = Gateway::start(&env(
        ALL_ON,
        &[
            ("GATEWAY_UPSTREAMS", &list),
            ("GATEWAY_TRUST_FORWARDED", "true"),
            ("GATEWAY_REJECT_UNDERSCORE_HEADERS", "false"),
        ],
    ));
    let forged = Request::get(gateway.url("/v1/x"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("forwarded", "for=203.0.113.9")
        .header("x_user", "kept")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client, forged).await.status, StatusCode::OK);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["forwarded"], "for=203.0.113.9");
    assert_eq!(seen.headers["x_user"], "kept");
}
