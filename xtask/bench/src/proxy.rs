//! The reference proxies the gateway is measured against: `bare` forwards each request with the
//! gateway's own upstream client (`example_support::upstream_client`, one keep-alive pool per
//! thread) and nothing else; `naive` adds plain `tower::retry` with a policy that retries every
//! failure (any status >= 400 or error) with the gateway's backoff (100 ms doubling, full
//! jitter, at most 4 retries), i.e. what a user writes without classification.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use example_support::upstream_client::{self, UpstreamClient};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower::ServiceExt;
use tower::retry::{Policy, Retry};

type HttpClient = UpstreamClient<HttpConnector, Full<Bytes>>;
type Upstream = Response<upstream_client::Body<Full<Bytes>>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn main(upstream: Option<&str>, naive_retry: bool) -> Result<(), String> {
    let upstream: Uri = upstream
        .ok_or("the proxy needs an upstream URL")?
        .parse()
        .map_err(|e| format!("bad upstream URL: {e}"))?;
    // Served like the gateway (and nginx): one thread per core, each with its own runtime, its
    // own listening socket on the shared port and its own client pool, so the comparison is
    // of the work per request, not of two threading models.
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let listeners = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(async { bind(workers) })
        .map_err(|e| format!("bind: {e}"))?;
    crate::announce(listeners[0].local_addr().map_err(|e| e.to_string())?);
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                    serve(listener, upstream, naive_retry).await
                })
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a proxy thread panicked")??;
    }
    Ok(())
}

/// `count` listening sockets sharing one loopback port (`SO_REUSEPORT`).
fn bind(count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut listeners = Vec::new();
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        addr = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

async fn serve(
    listener: tokio::net::TcpListener,
    upstream: Uri,
    naive_retry: bool,
) -> Result<(), String> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = UpstreamClient::new(connector);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                forward(client.clone(), upstream.clone(), naive_retry, request)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Answer = Response<Either<upstream_client::Body<Full<Bytes>>, Full<Bytes>>>;

async fn forward(
    client: HttpClient,
    upstream: Uri,
    naive_retry: bool,
    request: Request<Incoming>,
) -> Result<Answer, Infallible> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{upstream}{}", path.trim_start_matches('/'))
        .parse()
        .expect("upstream base plus a request path is a URI");
    parts.headers.remove(http::header::HOST);
    // Buffered so the naive policy can clone it; the bare proxy pays the same, to stay comparable.
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request = Request::from_parts(parts, Full::new(body));
    let result: Result<Upstream, BoxError> = if naive_retry {
        Retry::new(RetryEverything::default(), client)
            .oneshot(request)
            .await
            .map_err(Into::into)
    } else {
        client.oneshot(request).await.map_err(Into::into)
    };
    Ok(match result {
        Ok(response) => response.map(Either::Left),
        Err(_) => {
            let mut response =
                Response::new(Either::Right(Full::new(Bytes::from_static(b"bad gateway"))));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    })
}

#[derive(Clone, Default)]
struct RetryEverything {
    attempts: u32,
}

impl Policy<Request<Full<Bytes>>, Upstream, upstream_client::Error> for RetryEverything {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        _: &mut Request<Full<Bytes>>,
        result: &mut Result<Upstream, upstream_client::Error>,
    ) -> Option<Self::Future> {
        let failed = match result {
            Ok(response) => response.status().as_u16() >= 400,
            Err(_) => true,
        };
        if !failed || self.attempts >= 4 {
            return None;
        }
        let cap = Duration::from_millis(100) * 2u32.pow(self.attempts);
        self.attempts += 1;
        let delay = cap.mul_f64(jitter());
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, request: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.headers_mut() = request.headers().clone();
        Some(clone)
    }
}

/// Full jitter in [0, 1), from a per-thread xorshift: good enough for spreading sleeps.
fn jitter() -> f64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) });
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}
