//! A real hyper upstream on 127.0.0.1 that answers from a script, a hyper-util client, a
//! streamed body and an in-memory OpenTelemetry meter.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower_retry_classified::ReplayBody;

/// One scripted answer.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// Time before the answer.
    pub delay: std::time::Duration,
}

pub(crate) fn status(status: u16) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        delay: std::time::Duration::ZERO,
    }
}

impl Reply {
    pub(crate) fn after(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// What the upstream saw of one request.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub method: http::Method,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

#[derive(Clone)]
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// Serves `script` (the last reply repeats) on a fresh port.
    pub(crate) async fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, script)
    }

    /// Serves `script` on `listener`.
    pub(crate) fn serve(listener: TcpListener, script: Vec<Reply>) -> Self {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let state = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = state.clone();
                let script = script.clone();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    let script = script.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(Seen {
                                method: parts.method,
                                headers: parts.headers,
                                body,
                                at: Instant::now(),
                            });
                            seen.len() - 1
                        };
                        let reply = script.get(n).or(script.last()).unwrap().clone();
                        tokio::time::sleep(reply.delay).await;
                        let mut resp = Response::builder().status(reply.status);
                        for (k, v) in reply.headers {
                            resp = resp.header(k, v);
                        }
                        Ok::<_, Infallible>(
                            resp.body(Full::new(Bytes::from(format!("reply {n}"))))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    pub(crate) fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn uri(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub(crate) type HttpClient<B> = Client<HttpConnector, ReplayBody<B>>;

/// A hyper-util client that keeps no timers of its own, so paused-clock tests measure only ours.
pub(crate) fn client<B>() -> HttpClient<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<tower::BoxError>,
{
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(None)
        .build_http()
}

/// A body that yields its chunks one by one with no size hint (sent chunked).
pub(crate) struct Chunked {
    chunks: VecDeque<Bytes>,
}

impl Chunked {
    pub(crate) fn new(total: usize, chunk: usize) -> (Self, Bytes) {
        let all: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let all = Bytes::from(all);
        let chunks = (0..total)
            .step_by(chunk)
            .map(|s| all.slice(s..(s + chunk).min(total)))
            .collect();
        (Self { chunks }, all)
    }
}

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::new()
    }
}

/// The in-memory meter every crate's tests share.
#[allow(unused_imports)]
pub(crate) use test_meter::TestMeter;

pub(crate) fn is_status(resp: &Response<Incoming>, code: u16) -> bool {
    resp.status() == StatusCode::from_u16(code).unwrap()
}
