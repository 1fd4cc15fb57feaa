//! Pooled upstream connections the provider has closed: no request is lost and none is sent
//! twice, with the gateway's retries off (the client alone) and on.
//!
//! The provider here is a raw HTTP/1.1 server that closes keep-alive connections the way real
//! ones do: after a short idle time, right after each answer, or right after an answer that
//! says `connection: close`. It counts every request by its `x-request-id`.
//!
//! The sharper race (the close has arrived but the connection's task has not seen it yet, so
//! the request is queued on the dead connection and handed back unwritten) needs control of the
//! gateway's scheduler; `example_support::upstream_client`'s own tests force it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// How long the provider keeps an idle connection.
const IDLE: Duration = Duration::from_millis(20);
/// Between two requests in the idle case: every pooled connection was closed a while ago.
const SPACING: Duration = Duration::from_millis(45);

/// When the provider closes a connection.
#[derive(Clone, Copy, Debug)]
enum Close {
    /// After `IDLE` without a request.
    WhenIdle,
    /// Right after each answer, which does not say so.
    AfterAnswer,
    /// Right after each answer, which says `connection: close`.
    AfterAnswerSaid,
}

#[derive(Default)]
struct Counts {
    /// Requests received, by `x-request-id`.
    ids: BTreeMap<String, usize>,
    /// Requests served on each connection, in accept order.
    per_connection: Vec<usize>,
}

struct Provider {
    addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    task: tokio::task::JoinHandle<()>,
}

impl Provider {
    async fn start(close: Close) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Mutex::new(Counts::default()));
        let shared = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = {
                    let mut counts = shared.lock().unwrap();
                    counts.per_connection.push(0);
                    counts.per_connection.len() - 1
                };
                tokio::spawn(serve(stream, connection, close, Arc::clone(&shared)));
            }
        });
        Provider { addr, counts, task }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, connection: usize, close: Close, counts: Arc<Mutex<Counts>>) {
    let mut served = 0;
    loop {
        // The first request comes at once; later ones may wait only `IDLE`.
        let wait = if served == 0 {
            Duration::from_secs(5)
        } else {
            IDLE
        };
        let Ok(Some(id)) = tokio::time::timeout(wait, read_head(&mut stream)).await else {
            // Idle too long (or the gateway closed it): drop it, which sends a FIN.
            return;
        };
        served += 1;
        {
            let mut counts = counts.lock().unwrap();
            *counts.ids.entry(id).or_default() += 1;
            counts.per_connection[connection] += 1;
        }
        let answer: &[u8] = match close {
            Close::AfterAnswerSaid => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            }
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        };
        if stream.write_all(answer).await.is_err() {
            return;
        }
        if !matches!(close, Close::WhenIdle) {
            return;
        }
    }
}

/// Reads a request head (the gateway forwards these GETs without a body); its
/// `x-request-id`, or `None` at EOF.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    head.lines()
        .find_map(|line| line.strip_prefix("x-request-id: "))
        .map(str::to_string)
}

/// Sends `n` requests one after the other, `spacing` apart, each with its own id; every
/// one must be answered 200, and reach the provider exactly once.
async fn every_request_once(flags: &[(&str, &str)], close: Close, n: usize, spacing: Duration) {
    let provider = Provider::start(close).await;
    let list = format!("p=http://{}", provider.addr);
    let gateway = Gateway::start(&env(
        flags,
        &[("GATEWAY_UPSTREAMS", &list), ("GATEWAY_WORKERS", "1")],
    ));
    let client = client();
    for i in 0..n {
        tokio::time::sleep(spacing).await;
        let id = format!("{close:?}-{i}");
        let request = Request::get(gateway.url("/v1/chat"))
            .header("x-request-id", &id)
            .body(Full::default())
            .unwrap();
        let answer = send(&client, request).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{close:?}: request {id} lost: {}",
            answer.body
        );
    }
    let counts = provider.counts.lock().unwrap();
    let twice: Vec<_> = counts.ids.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "{close:?}: sent more than once: {twice:?}"
    );
    assert_eq!(counts.ids.len(), n, "{close:?}: {:?}", counts.ids);
    // Every request found its pooled connection closed, so each went on a new one.
    assert_eq!(
        counts.per_connection.len(),
        n,
        "{close:?}: {:?}",
        counts.per_connection
    );
    assert!(
        counts.per_connection.iter().all(|&served| served == 1),
        "{close:?}: {:?}",
        counts.per_connection
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_provider_closed_lose_no_request_and_send_none_twice() {
    for flags in [ALL_OFF, ALL_ON] {
        every_request_once(flags, Close::WhenIdle, 20, SPACING).await;
        every_request_once(flags, Close::AfterAnswer, 50, Duration::ZERO).await;
        every_request_once(flags, Close::AfterAnswerSaid, 50, Duration::ZERO).await;
    }
}
