//! The per-request checks at the edge, before any layer: the request's shape and size, and the
//! forwarding headers.
//!
//! `EdgeService` is the service hyper calls for each request of one connection. It refuses
//! what must not reach a provider, answering at once and counting the reason:
//!
//! | request | answer | reason |
//! |---|---|---|
//! | `Content-Length` with `Transfer-Encoding` (HTTP/1, seen by `super::framing`) | 400, connection closed | `content_length_with_transfer_encoding` |
//! | a header name with `_` (when `reject_underscore_headers`) | 400 | `underscore_header` |
//! | a declared `Content-Length` over `max_body_bytes` | 413, body unread, connection closed | `body_too_large` |
//! | a body without a declared length that grows past `max_body_bytes` | 413 if no answer started | `body_too_large` |
//!
//! Everything else goes on with its body capped at `max_body_bytes` and, unless forwarding
//! headers are trusted, the client's `Forwarded` and `X-Forwarded-For` replaced by
//! `X-Forwarded-For: <peer address>`; when trusted, the peer is appended to `X-Forwarded-For`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::Limited;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::Service;
use tower::util::Oneshot;

use super::state::ConnState;
use super::{Edge, Refusal};

/// A response extension by which the proxy says it answered a refusal of the edge's (a body
/// that grew past the limit while streaming), so that `EdgeService` counts it.
#[derive(Clone, Copy, Debug)]
pub struct Refused(pub Refusal);

/// One connection's service: the checks, then the gateway's app (see the module's docs).
#[derive(Debug)]
pub(crate) struct EdgeService<S> {
    app: S,
    state: Arc<ConnState>,
    edge: Arc<Edge>,
    /// The peer's address as an `X-Forwarded-For` element, made once per connection.
    peer: HeaderValue,
}

impl<S> EdgeService<S> {
    pub(crate) fn new(app: S, state: Arc<ConnState>, edge: Arc<Edge>, peer: SocketAddr) -> Self {
        let peer = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        EdgeService {
            app,
            state,
            edge,
            peer,
        }
    }

    fn refusal(&self, request: &Request<Incoming>, number: u32) -> Option<Refusal> {
        let limits = &self.edge.limits;
        if request.version() <= Version::HTTP_11 && self.state.smuggled(number) {
            return Some(Refusal::ContentLengthWithTransferEncoding);
        }
        let headers = request.headers();
        if limits.reject_underscore_headers
            && headers.keys().any(|name| name.as_str().contains('_'))
        {
            return Some(Refusal::UnderscoreHeader);
        }
        // hyper knows a declared length (HTTP/1 framing, HTTP/2 `content-length`) and says so
        // in the body's size hint: no header lookup needed.
        let declared = http_body::Body::size_hint(request.body()).exact();
        if declared.is_some_and(|length| length > limits.max_body_bytes) {
            return Some(Refusal::BodyTooLarge);
        }
        None
    }

    fn forwarding(&self, headers: &mut HeaderMap) {
        if !self.edge.limits.trust_forwarded {
            headers.remove(header::FORWARDED);
            headers.insert(X_FORWARDED_FOR, self.peer.clone());
            return;
        }
        let appended = match headers.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
            None => self.peer.clone(),
            Some(list) => {
                let mut value = Vec::with_capacity(list.len() + 2 + self.peer.len());
                value.extend_from_slice(list);
                value.extend_from_slice(b", ");
                value.extend_from_slice(self.peer.as_bytes());
                HeaderValue::from_bytes(&value).unwrap_or_else(|_| self.peer.clone())
            }
        };
        headers.insert(X_FORWARDED_FOR, appended);
    }
}

const X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");

/// The answer to a refused request: its status and a line saying why.
pub fn refusal_response(refusal: Refusal, version: Version) -> Response<Body> {
    let (status, message) = match refusal {
        Refusal::ContentLengthWithTransferEncoding => (
            StatusCode::BAD_REQUEST,
            "request refused: Content-Length and Transfer-Encoding together\n",
        ),
        Refusal::UnderscoreHeader => (
            StatusCode::BAD_REQUEST,
            "request refused: a header name contains '_'\n",
        ),
        Refusal::BodyTooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request refused: the body is larger than the gateway accepts\n",
        ),
        _ => (StatusCode::BAD_REQUEST, "request refused\n"),
    };
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // A smuggled request's body and an unread oversized body leave the connection's framing
    // unknown: it cannot carry another request (HTTP/2 streams are independent).
    let closes = matches!(
        refusal,
        Refusal::ContentLengthWithTransferEncoding | Refusal::BodyTooLarge
    );
    if closes && version <= Version::HTTP_11 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response.extensions_mut().insert(Refused(refusal));
    response
}

impl<S> hyper::service::Service<Request<Incoming>> for EdgeService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EdgeFuture<S>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let number = self.state.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let answered = Answered(Arc::clone(&self.state));
        if let Some(refusal) = self.refusal(&request, number) {
            self.edge.refused(refusal);
            return EdgeFuture {
                inner: None,
                refused: Some(refusal_response(refusal, request.version())),
                edge: Arc::clone(&self.edge),
                _answered: answered,
            };
        }
        let (mut parts, body) = request.into_parts();
        self.forwarding(&mut parts.headers);
        let body = Body::new(Limited::new(
            body,
            usize::try_from(self.edge.limits.max_body_bytes).unwrap_or(usize::MAX),
        ));
        EdgeFuture {
            inner: Some(Oneshot::new(
                self.app.clone(),
                Request::from_parts(parts, body),
            )),
            refused: None,
            edge: Arc::clone(&self.edge),
            _answered: answered,
        }
    }
}

/// Counts the request answered when its future goes, finished or dropped: the idle check
/// waits for every request to be answered.
#[derive(Debug)]
struct Answered(Arc<ConnState>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.responses.fetch_add(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// The response of `EdgeService`: a refusal at once, or the app's answer.
    pub(crate) struct EdgeFuture<S>
    where
        S: Service<Request<Body>>,
    {
        #[pin]
        inner: Option<Oneshot<S, Request<Body>>>,
        refused: Option<Response<Body>>,
        edge: Arc<Edge>,
        _answered: Answered,
    }
}

impl<S> Future for EdgeFuture<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(refused) = this.refused.take() {
            return Poll::Ready(Ok(refused));
        }
        match this.inner.as_pin_mut() {
            Some(inner) => {
                let response = ready!(inner.poll(cx))?;
                if let Some(Refused(refusal)) = response.extensions().get::<Refused>() {
                    this.edge.refused(*refusal);
                }
                Poll::Ready(Ok(response))
            }
            None => panic!("EdgeFuture polled after completion"),
        }
    }
}
