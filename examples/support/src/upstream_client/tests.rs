//! The client against real upstreams on 127.0.0.1:0: a raw HTTP/1.1 server on its own threads,
//! scripted to keep connections, close them, or drop a request, and counting what it received.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use tower::{Service, ServiceExt};
use tower_retry_classified::{Classification, Reason};

use super::{Builder, Error, UpstreamClient};

type Client = UpstreamClient<HttpConnector, Empty<Bytes>>;

/// What the upstream does with each connection after answering a request.
#[derive(Clone, Copy)]
enum Script {
    /// Keeps it open for the next request.
    KeepAlive,
    /// Answers the first request, then closes its side (FIN) when the test says so, and
    /// reports whether anything more arrived on it.
    CloseOnSignal,
    /// Answers the first request, reads the second and closes without answering it.
    DropSecond,
}

#[derive(Default)]
struct Seen {
    connections: usize,
    /// `(connection, x-id)` of every request read, in order.
    requests: Vec<(usize, String)>,
    /// Connections the client closed (EOF while waiting for a request).
    closed_by_client: usize,
    /// Requests that arrived on a connection after the upstream closed its side.
    after_close: usize,
}

struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    close: Mutex<mpsc::Sender<mpsc::Sender<()>>>,
}

impl Upstream {
    fn start(script: Script) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (close, closes) = mpsc::channel::<mpsc::Sender<()>>();
        let closes = Arc::new(Mutex::new(closes));
        let shared = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let number = {
                    let mut seen = shared.lock().unwrap();
                    seen.connections += 1;
                    seen.connections
                };
                let (seen, closes) = (Arc::clone(&shared), Arc::clone(&closes));
                std::thread::spawn(move || serve(stream, number, script, &seen, &closes));
            }
        });
        Upstream {
            addr,
            seen,
            close: Mutex::new(close),
        }
    }

    fn url(&self, id: &str) -> String {
        format!("http://{}/v1/x?id={id}", self.addr)
    }

    /// Closes the upstream's side of the connection waiting for it, and waits until it has.
    fn close_one(&self) {
        let (done, closed) = mpsc::channel();
        self.close.lock().unwrap().send(done).unwrap();
        closed.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    fn seen<R>(&self, f: impl FnOnce(&Seen) -> R) -> R {
        f(&self.seen.lock().unwrap())
    }
}

fn serve(
    mut stream: TcpStream,
    number: usize,
    script: Script,
    seen: &Mutex<Seen>,
    closes: &Mutex<mpsc::Receiver<mpsc::Sender<()>>>,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut served = 0;
    loop {
        let Some(id) = read_request(&mut stream) else {
            seen.lock().unwrap().closed_by_client += 1;
            return;
        };
        seen.lock().unwrap().requests.push((number, id));
        served += 1;
        if matches!(script, Script::DropSecond) && served == 2 {
            return;
        }
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        if matches!(script, Script::CloseOnSignal) {
            let done = closes.lock().unwrap().recv().unwrap();
            let _ = stream.shutdown(std::net::Shutdown::Write);
            done.send(()).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            if read_request(&mut stream).is_some() {
                seen.lock().unwrap().after_close += 1;
            }
            return;
        }
    }
}

/// Reads one request head (no body); its `id` query parameter, or `None` at EOF or timeout.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next()?;
    let id = line.split("id=").nth(1)?.split(' ').next()?;
    Some(id.to_string())
}

fn client() -> Client {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    UpstreamClient::new(http)
}

/// One GET, answer read to its end: status, or the client's error.
async fn get(client: &Client, url: &str) -> Result<StatusCode, Error> {
    let request = Request::get(url).body(Empty::new()).unwrap();
    let response = client.clone().oneshot(request).await?;
    let status = response.status();
    response.into_body().collect().await.unwrap();
    Ok(status)
}

fn ids(seen: &Seen) -> Vec<&str> {
    seen.requests.iter().map(|(_, id)| id.as_str()).collect()
}

#[tokio::test]
async fn sequential_requests_share_one_kept_alive_connection() {
    let upstream = Upstream::start(Script::KeepAlive);
    let client = client();
    for id in ["a", "b", "c", "d", "e"] {
        assert_eq!(
            get(&client, &upstream.url(id)).await.unwrap(),
            StatusCode::OK
        );
    }
    upstream.seen(|seen| {
        assert_eq!(seen.connections, 1);
        assert_eq!(ids(seen), ["a", "b", "c", "d", "e"]);
    });
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_not_used_and_nothing_is_sent_twice() {
    let upstream = Upstream::start(Script::CloseOnSignal);
    let client = client();
    assert_eq!(
        get(&client, &upstream.url("1")).await.unwrap(),
        StatusCode::OK
    );
    upstream.close_one();
    // Time for the connection's task to see the close before the next request.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        get(&client, &upstream.url("2")).await.unwrap(),
        StatusCode::OK
    );
    upstream.seen(|seen| {
        assert_eq!(seen.requests, [(1, "1".to_string()), (2, "2".to_string())]);
        assert_eq!(seen.after_close, 0);
    });
}

/// The race the legacy client's retry exists for: the peer's close has arrived but the
/// connection's task has not run since, so the connection still looks open when taken. The
/// request is queued on it; the task then reads the close first, never writes the request and
/// hands it back; it goes out once, on a new connection.
///
/// The order is forced on this current-thread runtime: the test blocks the thread while the
/// close lands, then yields once, which polls the io driver (waking the connection's task)
/// and comes back to the test before that task runs.
#[tokio::test]
async fn a_request_handed_back_unwritten_is_sent_once_on_a_new_connection() {
    let upstream = Upstream::start(Script::CloseOnSignal);
    let client = client();
    assert_eq!(
        get(&client, &upstream.url("1")).await.unwrap(),
        StatusCode::OK
    );
    // Let the connection's task settle into waiting for the next request.
    tokio::time::sleep(Duration::from_millis(50)).await;
    upstream.close_one();
    std::thread::sleep(Duration::from_millis(50));
    tokio::task::yield_now().await;

    let request = Request::get(upstream.url("2")).body(Empty::new()).unwrap();
    let mut service = client.clone();
    let mut future = service.call(request);
    // The first poll takes the pooled connection and queues the request on it.
    assert!(futures_poll_once(&mut future).await.is_none());
    let response = future.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();

    upstream.seen(|seen| {
        assert_eq!(seen.connections, 2);
        assert_eq!(seen.requests, [(1, "1".to_string()), (2, "2".to_string())]);
        assert_eq!(
            seen.after_close, 0,
            "nothing written on the closed connection"
        );
    });
}

/// Polls `future` once; its output if it was ready.
async fn futures_poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn a_request_written_and_then_lost_is_an_error_and_not_sent_again() {
    let upstream = Upstream::start(Script::DropSecond);
    let client = client();
    assert_eq!(
        get(&client, &upstream.url("1")).await.unwrap(),
        StatusCode::OK
    );
    let error = get(&client, &upstream.url("2")).await.unwrap_err();
    assert!(!error.is_connect() && !error.is_canceled(), "{error:?}");
    let classification = Classification::of_error(&error);
    assert!(
        classification.is_retryable() && !classification.reason().is_not_processed(),
        "a lost answer may have been processed: {classification:?}"
    );
    upstream.seen(|seen| {
        assert_eq!(seen.connections, 1, "no new connection to send it again");
        assert_eq!(ids(seen), ["1", "2"]);
    });
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_error_classified_as_not_sent() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = get(&client(), &format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    assert_eq!(
        Classification::of_error(&error),
        Classification::retryable(Reason::CONNECTION_REFUSED)
    );
}

#[tokio::test]
async fn idle_connections_are_bounded_per_host() {
    let upstream = Upstream::start(Script::KeepAlive);
    let client: Client = Builder::new()
        .max_idle_per_host(1)
        .build(HttpConnector::new());
    // Three at once: three connections, of which one stays.
    let answers = join3(
        get(&client, &upstream.url("a")),
        get(&client, &upstream.url("b")),
        get(&client, &upstream.url("c")),
    )
    .await;
    assert!(answers.iter().all(|a| matches!(a, Ok(StatusCode::OK))));
    wait_for(|| upstream.seen(|seen| seen.closed_by_client == 2)).await;
    assert_eq!(
        get(&client, &upstream.url("d")).await.unwrap(),
        StatusCode::OK
    );
    upstream.seen(|seen| assert_eq!(seen.connections, 3, "d reused the one kept"));
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout_without_further_use() {
    let upstream = Upstream::start(Script::KeepAlive);
    let client: Client = Builder::new()
        .idle_timeout(Duration::from_millis(100))
        .build(HttpConnector::new());
    assert_eq!(
        get(&client, &upstream.url("a")).await.unwrap(),
        StatusCode::OK
    );
    // The thread's sweep closes it; no request comes to notice.
    wait_for(|| upstream.seen(|seen| seen.closed_by_client == 1)).await;
}

#[tokio::test]
async fn an_answer_dropped_before_its_end_does_not_go_back_to_the_pool() {
    let upstream = Upstream::start(Script::KeepAlive);
    let client = client();
    let request = Request::get(upstream.url("a")).body(Empty::new()).unwrap();
    let response = client.clone().oneshot(request).await.unwrap();
    let (_, body) = response.into_parts();
    assert!(!http_body::Body::is_end_stream(&body));
    drop(body);
    assert_eq!(
        get(&client, &upstream.url("b")).await.unwrap(),
        StatusCode::OK
    );
    upstream.seen(|seen| assert_eq!(seen.connections, 2));
}

/// Waits up to 2 s for `condition`.
async fn wait_for(condition: impl Fn() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 2 s");
}

async fn join3<T>(
    a: impl std::future::Future<Output = T>,
    b: impl std::future::Future<Output = T>,
    c: impl std::future::Future<Output = T>,
) -> [T; 3] {
    let (a, b, c) = tokio::join!(a, b, c);
    [a, b, c]
}
