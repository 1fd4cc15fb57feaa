//! HTTP mode: the queue answers with responses instead of errors, so axum needs no
//! `HandleErrorLayer`. Overload and queue timeout are 503 with `Retry-After`, a passed deadline
//! 504; gRPC requests get HTTP 200 with `grpc-status` 14 (UNAVAILABLE) or 4 (DEADLINE_EXCEEDED).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::admission::Shared;
use crate::error::Rejection;
use crate::future::Admit;
use crate::handle::QueueHandle;
use crate::layer::BoundedQueueLayer;

/// The conventional name for the optional status header, `x-overload-status`.
pub const X_OVERLOAD_STATUS: HeaderName = HeaderName::from_static("x-overload-status");

/// `x-overloaded: true`, on every answer the queue turns a request away with (503, and gRPC
/// UNAVAILABLE): it tells our own overload rejection from an upstream's 503 passed through, as
/// Envoy's `x-envoy-overloaded` does. `tower-retry-classified` never retries an answer carrying
/// it (the queue already shed that request; a retry one hop up would put the load back), unless
/// told to with `HttpClassifier::retry_overloaded_peers`.
pub const X_OVERLOADED: HeaderName = HeaderName::from_static("x-overloaded");

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// [`BoundedQueueLayer`] in HTTP mode: answers instead of erroring.
///
/// - [`Overloaded`](crate::Overloaded) and [`QueueTimeout`](crate::QueueTimeout): `503 Service
///   Unavailable` with `Retry-After` (default 1 s), [`X_OVERLOADED`] and a one-line text body;
/// - `DeadlineExceeded` (feature `deadline`): `504 Gateway Timeout`;
/// - gRPC requests (`content-type: application/grpc*`): HTTP 200 with `grpc-status: 14`
///   (UNAVAILABLE) and `grpc-retry-pushback-ms` (the `Retry-After` in milliseconds, gRPC's
///   equivalent) for overload and queue timeout, `grpc-status: 4` (DEADLINE_EXCEEDED) for a
///   passed deadline.
///
/// Errors of the inner service pass through unchanged. The response body is wrapped in
/// [`QueueBody`]. With the `deadline` feature the wait is bounded by
/// `tower_deadline::Deadline::effective(request.extensions())`.
///
/// With an [adaptive](crate::Adaptive) limit, the controller counts as failures the inner
/// service's errors and the answers that say a server is failing or short of capacity: any 5xx,
/// 429, and gRPC answers whose header `grpc-status` (a trailers-only answer) is 4
/// (DEADLINE_EXCEEDED), 8 (RESOURCE_EXHAUSTED) or 14 (UNAVAILABLE). A `grpc-status` sent only in
/// trailers, after the body, is not seen: the request has completed by then.
///
/// ```
/// use std::time::Duration;
/// use tower_bounded_queue::{BoundedQueueLayer, X_OVERLOAD_STATUS};
///
/// let layer = BoundedQueueLayer::new(64)
///     .capacity(1000)
///     .http()
///     .retry_after(Duration::from_secs(2))
///     .status_header(X_OVERLOAD_STATUS);
/// let handle = layer.handle();
/// # let _ = handle;
/// ```
#[derive(Clone, Debug)]
pub struct HttpBoundedQueueLayer {
    queue: BoundedQueueLayer,
    retry_after: u64,
    status_header: Option<HeaderName>,
}

// HTTP mode's entry point lives with HTTP mode, so the plain layer needs nothing from here.
impl BoundedQueueLayer {
    /// Answers with HTTP responses instead of errors (503, 504, gRPC status); see
    /// [`HttpBoundedQueueLayer`]. The HTTP layer shares this layer's queue.
    pub fn http(self) -> HttpBoundedQueueLayer {
        HttpBoundedQueueLayer {
            queue: self,
            retry_after: 1,
            status_header: None,
        }
    }
}

impl HttpBoundedQueueLayer {
    /// The `Retry-After` sent with 503 answers, rounded up to whole seconds (default 1 s); zero
    /// leaves the header out.
    pub fn retry_after(mut self, after: Duration) -> Self {
        let secs = after
            .as_secs()
            .saturating_add(u64::from(after.subsec_nanos() > 0));
        self.retry_after = secs;
        self
    }

    /// Adds a header carrying the queue's [`QueueStatus`](crate::QueueStatus) (`healthy`,
    /// `degraded`, `overloaded`, `critical`) to every response, so an upstream router can steer
    /// away before requests are rejected. Usually [`X_OVERLOAD_STATUS`].
    pub fn status_header(mut self, name: HeaderName) -> Self {
        self.status_header = Some(name);
        self
    }

    /// A handle on this layer's queue.
    pub fn handle(&self) -> QueueHandle {
        self.queue.handle()
    }
}

impl<S> Layer<S> for HttpBoundedQueueLayer {
    type Service = HttpBoundedQueue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpBoundedQueue {
            inner,
            shared: Arc::clone(self.queue.shared()),
            retry_after: self.retry_after,
            status_header: self.status_header.clone(),
        }
    }
}

/// The queue in HTTP mode; built by [`HttpBoundedQueueLayer`].
pub struct HttpBoundedQueue<S> {
    inner: S,
    shared: Arc<Shared>,
    retry_after: u64,
    status_header: Option<HeaderName>,
}

impl<S> HttpBoundedQueue<S> {
    /// A handle on this service's queue.
    pub fn handle(&self) -> QueueHandle {
        QueueHandle::new(Arc::clone(&self.shared))
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the queue service, returning the wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for HttpBoundedQueue<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            retry_after: self.retry_after,
            status_header: self.status_header.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for HttpBoundedQueue<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBoundedQueue")
            .field("inner", &self.inner)
            .field("queue", &self.shared)
            .finish_non_exhaustive()
    }
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The deadline bounding an HTTP request's wait: the earliest of its extensions' and the
/// task-local one.
fn deadline_of<B>(_request: &Request<B>) -> Option<tokio::time::Instant> {
    #[cfg(feature = "deadline")]
    {
        tower_deadline::Deadline::effective(_request.extensions()).map(|d| d.instant())
    }
    #[cfg(not(feature = "deadline"))]
    {
        None
    }
}

/// An answer that says a server is failing or short of capacity, for an adaptive limit: the
/// inner error, any 5xx, 429, or a trailers-only gRPC DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED or
/// UNAVAILABLE.
fn failed_answer<B, E>(outcome: &Result<Response<B>, E>) -> bool {
    let Ok(response) = outcome else { return true };
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return true;
    }
    response
        .headers()
        .get(GRPC_STATUS)
        .is_some_and(|code| matches!(code.as_bytes(), b"4" | b"8" | b"14"))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpBoundedQueue<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<QueueBody<ResBody>>;
    type Error = S::Error;
    type Future = HttpResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Never backpressure: admission is decided in `call`, on counts alone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let grpc = is_grpc(request.headers());
        let status = self
            .status_header
            .as_ref()
            .map(|name| (name.clone(), Arc::clone(&self.shared)));
        HttpResponseFuture {
            inner: Admit::new(
                &self.shared,
                &self.inner,
                request,
                deadline_of::<ReqBody>,
                failed_answer::<ResBody, S::Error>,
            ),
            grpc,
            retry_after: self.retry_after,
            status,
        }
    }
}

pin_project! {
    /// Response future of [`HttpBoundedQueue`].
    pub struct HttpResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        inner: Admit<S, Request<ReqBody>>,
        grpc: bool,
        retry_after: u64,
        status: Option<(HeaderName, Arc<Shared>)>,
    }
}

impl<S, ReqBody> std::fmt::Debug for HttpResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponseFuture")
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Future for HttpResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<QueueBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match ready!(this.inner.poll(cx)) {
            Ok(Ok(response)) => response.map(|body| QueueBody {
                kind: Kind::Inner { body },
            }),
            Ok(Err(error)) => return Poll::Ready(Err(error)),
            Err(rejection) => answer(rejection, *this.grpc, *this.retry_after),
        };
        if let Some((name, shared)) = this.status.as_ref() {
            response.headers_mut().insert(
                name.clone(),
                HeaderValue::from_static(shared.status().as_str()),
            );
        }
        Poll::Ready(Ok(response))
    }
}

/// The response for a failed outgoing call whose error (anywhere in its `source()` chain) is
/// the queue's: [`Overloaded`](crate::Overloaded) or [`QueueTimeout`](crate::QueueTimeout),
/// answered as the HTTP mode answers them (503 with `Retry-After: 1` and [`X_OVERLOADED`]; gRPC:
/// HTTP 200 with `grpc-status: 14` and `grpc-retry-pushback-ms`). `None` for any other error.
///
/// For a proxy with a queue (in error mode) in front of its client: the caller learns the
/// proxy shed the call. `tower_deadline::error_response` answers deadline and connect errors
/// the same way; a proxy tries both, then answers anything else its own way:
///
/// ```
/// use tower_bounded_queue::error_response;
///
/// fn answer(error: &tower::BoxError, grpc: bool) -> http::Response<axum::body::Body> {
///     if let Some(shed) = error_response::<axum::body::Body>(&**error, grpc) {
///         return shed.map(axum::body::Body::new);
///     }
///     // ... then `tower_deadline::error_response` the same way ...
///     let mut bad_gateway = http::Response::new(axum::body::Body::from("upstream failed\n"));
///     *bad_gateway.status_mut() = http::StatusCode::BAD_GATEWAY;
///     bad_gateway
/// }
/// # let _ = answer;
/// ```
pub fn error_response<B>(
    error: &(dyn std::error::Error + 'static),
    grpc: bool,
) -> Option<Response<QueueBody<B>>> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(overloaded) = e.downcast_ref::<crate::Overloaded>() {
            return Some(answer(Rejection::Overloaded(overloaded.clone()), grpc, 1));
        }
        if let Some(timeout) = e.downcast_ref::<crate::QueueTimeout>() {
            return Some(answer(Rejection::Timeout(timeout.clone()), grpc, 1));
        }
        source = e.source();
    }
    None
}

/// The response for a request the queue turned away.
fn answer<B>(rejection: Rejection, grpc: bool, retry_after: u64) -> Response<QueueBody<B>> {
    let (status, grpc_status, message) = match &rejection {
        Rejection::Overloaded(e) => (StatusCode::SERVICE_UNAVAILABLE, "14", e.to_string()),
        Rejection::Timeout(e) => (StatusCode::SERVICE_UNAVAILABLE, "14", e.to_string()),
        #[cfg(feature = "deadline")]
        Rejection::Deadline(e) => (StatusCode::GATEWAY_TIMEOUT, "4", e.to_string()),
    };
    // Load shed here, as opposed to a deadline that ran out while waiting.
    let shed = status == StatusCode::SERVICE_UNAVAILABLE;
    if grpc {
        // A trailers-only gRPC answer: status in the headers, empty body.
        let mut response = Response::new(QueueBody::message(Bytes::new()));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(GRPC_STATUS, HeaderValue::from_static(grpc_status));
        // Our messages are printable ASCII without '%', so they need no percent-encoding.
        if let Ok(value) = HeaderValue::from_str(&message) {
            headers.insert(GRPC_MESSAGE, value);
        }
        if shed {
            headers.insert(X_OVERLOADED, HeaderValue::from_static("true"));
            // gRPC's own Retry-After (gRFC A6): when a retrying client may try again.
            if retry_after > 0 {
                headers.insert(
                    GRPC_RETRY_PUSHBACK_MS,
                    HeaderValue::from(retry_after.saturating_mul(1000)),
                );
            }
        }
        return response;
    }
    let mut response = Response::new(QueueBody::message(Bytes::from(message + "\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if shed {
        headers.insert(X_OVERLOADED, HeaderValue::from_static("true"));
        if retry_after > 0 {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after));
        }
    }
    response
}

pin_project! {
    /// Response body of [`HttpBoundedQueue`]: the inner service's body, or the queue's own short
    /// message.
    pub struct QueueBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Message { data: Option<Bytes> },
    }
}

impl<B> QueueBody<B> {
    fn message(data: Bytes) -> Self {
        let data = (!data.is_empty()).then_some(data);
        Self {
            kind: Kind::Message { data },
        }
    }
}

impl<B> std::fmt::Debug for QueueBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("QueueBody::Inner"),
            Kind::Message { data } => f.debug_tuple("QueueBody::Message").field(data).finish(),
        }
    }
}

impl<B> Body for QueueBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Message { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Message { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Message { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
