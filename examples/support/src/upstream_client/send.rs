//! One request: a pooled connection (or a new one), the request written with
//! `try_send_request`, and one re-send on a fresh connection when a pooled connection hands the
//! request back unwritten.

use std::future::poll_fn;
use std::sync::Arc;

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::rt::{Read, Write};
use tower::Service;

use super::body::{self, Body};
use super::error::{Error, Kind};
use super::pool::{self, Lease};
use super::{BoxError, Recipe};

/// Sends `request` (absolute URI) to its URI's host.
///
/// A pooled connection the peer has closed while it sat idle shows up in one of three ways:
/// closed when taken (skipped), closed while waiting to be ready (skipped: nothing was handed
/// to it), or the request handed back unwritten by `try_send_request` (hyper's dispatcher saw
/// the close first). Only the last one re-sends, once and on a fresh connection: the other
/// pooled connections may have been closed at the same time. A request that was written is
/// never sent again here, whatever happens next; the retry layer above decides.
pub(crate) async fn send<C, B>(
    recipe: Arc<Recipe<C>>,
    mut request: Request<B>,
) -> Result<Response<Body<B>>, Error>
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Read + Write + Unpin + Send + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let target = prepare(&mut request)?;
    let (home, mut idle) = pool::checkout::<B>(recipe.id, recipe.limits, &target.authority);
    let mut resent = false;
    loop {
        let (mut sender, reused) = match idle.take() {
            Some(sender) => (sender, true),
            // A new connection takes its first request at once (hyper buffers one before the
            // connection's task has run), so there is nothing to wait for. Boxed: connecting is
            // rare, and its state would otherwise enlarge every request's future.
            None => (Box::pin(connect(&recipe.connector, &target)).await?, false),
        };
        if reused && poll_fn(|cx| sender.poll_ready(cx)).await.is_err() {
            idle = pool::take::<B>(home);
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok(body::attach(response, Lease::new(sender, home))),
            Err(mut failed) => match failed.take_message() {
                Some(unsent) if reused && !resent => {
                    tracing::debug!(error = %failed.error(), "pooled connection closed; re-sending on a new one");
                    resent = true;
                    request = unsent;
                }
                // A fresh connection closed before writing it: still not sent, and said so
                // (hyper's "canceled" error), for the layer above to retry if it likes.
                Some(_) => return Err(Error::new(Kind::Canceled, failed.into_error())),
                None => return Err(Error::new(Kind::Send, failed.into_error())),
            },
        }
    }
}

/// Where a request goes: the connector's target, and the pool's key.
struct Target {
    scheme: Option<Scheme>,
    authority: Authority,
}

/// Takes the target out of the request's absolute URI and leaves what goes on the wire: the
/// origin form (authority form for CONNECT), and `Host` from the URI if the request has none.
fn prepare<B>(request: &mut Request<B>) -> Result<Target, Error> {
    if request.version() == Version::HTTP_2 {
        return Err(Error::new(
            Kind::Request,
            "HTTP/2 requests need an HTTP/2 connection; this client speaks HTTP/1.1",
        ));
    }
    let parts = std::mem::take(request.uri_mut()).into_parts();
    let Some(authority) = parts.authority else {
        return Err(Error::new(
            Kind::Request,
            "the request URI has no authority",
        ));
    };
    let wire = if request.method() == Method::CONNECT {
        authority_form(&authority)
    } else {
        origin_form(parts.path_and_query)
    };
    *request.uri_mut() = wire;
    if !request.headers().contains_key(HOST) {
        let host = host_header(&authority)?;
        request.headers_mut().insert(HOST, host);
    }
    Ok(Target {
        scheme: parts.scheme,
        authority,
    })
}

fn origin_form(path_and_query: Option<PathAndQuery>) -> Uri {
    match path_and_query {
        Some(path) if path.as_str() != "/" => Uri::from(path),
        _ => Uri::from_static("/"),
    }
}

fn authority_form(authority: &Authority) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.authority = Some(authority.clone());
    Uri::from_parts(parts).unwrap_or_default()
}

/// `Host` for a request without one: the URI's authority as written, without user info.
fn host_header(authority: &Authority) -> Result<HeaderValue, Error> {
    let host = match authority.as_str().split_once('@') {
        Some((_, host)) => host,
        None => authority.as_str(),
    };
    HeaderValue::from_str(host).map_err(|e| Error::new(Kind::Request, e))
}

/// A new HTTP/1.1 connection through `connector` (whose budget, e.g. `tower_deadline`'s
/// `ConnectDeadline`, bounds the TCP connect), its task spawned on this thread's runtime.
async fn connect<C, B>(connector: &C, target: &Target) -> Result<SendRequest<B>, Error>
where
    C: Service<Uri> + Clone,
    C::Response: Read + Write + Unpin + Send + 'static,
    C::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(target.scheme.clone().unwrap_or(Scheme::HTTP));
    parts.authority = Some(target.authority.clone());
    parts.path_and_query = Some(PathAndQuery::from_static("/"));
    let uri = Uri::from_parts(parts).map_err(|e| Error::new(Kind::Connect, e))?;
    let mut connector = connector.clone();
    poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(|e| Error::new(Kind::Connect, e))?;
    let io = connector
        .call(uri)
        .await
        .map_err(|e| Error::new(Kind::Connect, e))?;
    let (sender, connection) = http1::handshake(io)
        .await
        .map_err(|e| Error::new(Kind::Connect, e))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection failed");
        }
    });
    Ok(sender)
}
