//! [`ProxyFirst`]: proxied paths go straight to the proxy stack, everything else to the axum
//! router.
//!
//! Almost every request a gateway serves is proxied. Through axum's `Router` each one paid for
//! the path lookup, the URL-parameter map it allocates for the `{*path}` wildcard, a boxed
//! route service cloned per call and a boxed future: about 4,500 instructions per request
//! (callgrind), close to a tenth of the whole proxied request's work in the gateway. The proxy
//! needs none of it (it forwards the path as it came and reads no parameter), so one prefix
//! check sends it past the router. `/healthz`, `/readyz`, `/metrics` and 404s still go through
//! axum.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{BoxError, Service};

/// What a path must start with, and go beyond, to be proxied: the same paths axum's
/// `/v1/{*path}` matches (its wildcard needs at least one character).
pub const PROXY_PREFIX: &str = "/v1/";

/// Whether `path` is proxied.
pub fn is_proxied(path: &str) -> bool {
    path.len() > PROXY_PREFIX.len() && path.starts_with(PROXY_PREFIX)
}

/// Sends proxied paths to `proxy` and the rest to `router`.
#[derive(Clone, Debug)]
pub struct ProxyFirst<P, R> {
    proxy: P,
    router: R,
}

impl<P, R> ProxyFirst<P, R> {
    pub fn new(proxy: P, router: R) -> Self {
        Self { proxy, router }
    }
}

impl<P, R, PB> Service<Request<Body>> for ProxyFirst<P, R>
where
    P: Service<Request<Body>, Response = Response<PB>, Error = Infallible>,
    R: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    PB: http_body::Body<Data = Bytes> + Send + 'static,
    PB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = DispatchFuture<P::Future, R::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Either may take the next request. Both are always ready here (axum's router clones
        // its routes per call; the deadline, queue and handler never push back), so waiting
        // on both never holds one up for the other.
        ready!(self.proxy.poll_ready(cx))?;
        self.router.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if is_proxied(request.uri().path()) {
            DispatchFuture::Proxy {
                future: self.proxy.call(request),
            }
        } else {
            DispatchFuture::Router {
                future: self.router.call(request),
            }
        }
    }
}

pin_project! {
    /// The response future of [`ProxyFirst`].
    #[project = DispatchProjection]
    pub enum DispatchFuture<P, R> {
        Proxy { #[pin] future: P },
        Router { #[pin] future: R },
    }
}

impl<P, R, PB> Future for DispatchFuture<P, R>
where
    P: Future<Output = Result<Response<PB>, Infallible>>,
    R: Future<Output = Result<Response<Body>, Infallible>>,
    PB: http_body::Body<Data = Bytes> + Send + 'static,
    PB::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            // One box for the proxy's body, as axum's route service did.
            DispatchProjection::Proxy { future } => {
                future.poll(cx).map_ok(|response| response.map(Body::new))
            }
            DispatchProjection::Router { future } => future.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_paths_are_those_of_the_wildcard_route() {
        assert!(is_proxied("/v1/chat/completions"));
        assert!(is_proxied("/v1/x"));
        assert!(!is_proxied("/v1/"), "axum's wildcard needs a segment");
        assert!(!is_proxied("/v1"));
        assert!(!is_proxied("/v10/x"));
        assert!(!is_proxied("/healthz"));
        assert!(!is_proxied("/"));
    }
}
