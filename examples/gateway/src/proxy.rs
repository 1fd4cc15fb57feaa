//! `ANY /v1/{*path}`: forward to the chosen provider, stream both bodies, answer errors.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri, Version};
use tower::{BoxError, Service, ServiceExt};
use tower_deadline::DeadlineExceeded;
use tower_reliability_core::Protocol;
use tower_retry_classified::CircuitOpen;

use crate::edge::{self, Refusal};
use crate::error_chain::find;
use crate::routing;

/// One upstream provider, ready to call.
pub struct Provider<S> {
    pub name: String,
    /// Takes origin-form requests (`/v1/...` plus `Host`); knows its own base URL.
    pub service: S,
}

/// Everything the proxy handler needs; shared by all requests.
pub struct Gateway<S> {
    pub router: routing::Router,
    pub providers: Vec<Provider<S>>,
}

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus
/// `Upgrade`: never forwarded. [`is_hop_by_hop`] is the check the proxy runs; this list is
/// what a test holds it to.
#[cfg(test)]
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is hop-by-hop (`HOP_BY_HOP`). A match on the (already lower-case) name compiles
/// to a length switch and at most one short compare; testing `HeaderName` equality against
/// each entry cost about 1,600 instructions per message (callgrind), most of a request's
/// routing work.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
///
/// Shaped for what most messages carry: none of them, or `Connection: keep-alive` from an
/// upstream such as nginx. Neither allocates: `keep-alive` and `close` are recognised as text,
/// without making a `HeaderName` of them (a custom name is a heap copy), and present hop-by-hop
/// headers are removed one by one instead of first collected (about 400 instructions per
/// response from nginx, callgrind).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the (few) present names decides.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Other headers the `Connection` header names; collecting none allocates nothing.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // `close` names no header, `keep-alive` is removed below.
        .filter(|token| {
            !token.is_empty()
                && !token.eq_ignore_ascii_case("close")
                && !token.eq_ignore_ascii_case("keep-alive")
        })
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .filter(|name| !is_hop_by_hop(name))
        .collect();
    for name in &named {
        headers.remove(name);
    }
    // Only what is present is removed: a removal hashes the name, and most of the list is
    // usually absent.
    while let Some(name) = headers.keys().find(|name| is_hop_by_hop(name)).cloned() {
        headers.remove(&name);
    }
}

pub async fn proxy<S, B>(State(gateway): State<Arc<Gateway<S>>>, request: Request) -> Response
where
    S: Service<Request, Response = http::Response<B>, Error = BoxError> + Clone,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (index, _reason) = gateway.router.pick();
    let provider = &gateway.providers[index];

    let (mut parts, body) = request.into_parts();
    // Origin-form: the provider's stack turns it into its own absolute URL.
    if let Some(path_and_query) = parts.uri.path_and_query().cloned() {
        parts.uri = Uri::from(path_and_query);
    }
    strip_hop_by_hop(&mut parts.headers);
    // The incoming version (HTTP/2 from an h2c client) says nothing about the upstream
    // connection; the client speaks HTTP/1.1 to providers.
    parts.version = Version::HTTP_11;
    let grpc = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    // Extensions stay behind: axum's (matched path, URL parameters) are not the provider's
    // business, and an empty map costs nothing to copy for each retry. The request's deadline
    // reaches the client stack through the scope `DeadlineLayer` runs this handler in.
    crate::traces::note_deadline(&parts.extensions);
    parts.extensions = http::Extensions::new();
    let upstream_request = Request::from_parts(parts, body);

    match provider.service.clone().oneshot(upstream_request).await {
        Ok(mut response) => {
            let ok = !response.status().is_server_error();
            gateway.router.outcome(index, ok);
            strip_hop_by_hop(response.headers_mut());
            response.map(Body::new)
        }
        Err(error) => {
            // A caller's deadline running out says nothing about the provider's health; an
            // open breaker already knows it.
            if find::<DeadlineExceeded>(&*error).is_none() && find::<CircuitOpen>(&*error).is_none()
            {
                gateway.router.outcome(index, false);
            }
            error_response(&provider.name, &error, grpc)
        }
    }
}

/// A gRPC trailers-only answer with status 14 UNAVAILABLE and `message`.
fn grpc_unavailable(message: &'static str) -> Response {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static("14"));
    headers.insert("grpc-message", HeaderValue::from_static(message));
    response
}

/// A body over the edge's limit gets the edge's 413. Our layers' own rejections answered as
/// their HTTP mode would (`tower_reliability_core::
/// error_response`): 504 when time ran out (the request's deadline or the connect budget; gRPC 4
/// or 14), 503 + `Retry-After` + `x-overloaded` for an open breaker (gRPC 14 with pushback);
/// 502 naming the provider for anything else (gRPC 14).
fn error_response(provider: &str, error: &BoxError, grpc: bool) -> Response {
    // The caller's body grew past the edge's limit while it streamed (`edge::checks`).
    if find::<http_body_util::LengthLimitError>(&**error).is_some() {
        return edge::checks::refusal_response(Refusal::BodyTooLarge, Version::HTTP_11);
    }
    let protocol = if grpc { Protocol::Grpc } else { Protocol::Http };
    if let Some(ours) = tower_reliability_core::error_response::<Body>(&**error, protocol) {
        return ours.map(Body::new);
    }
    tracing::debug!(provider, %error, "upstream call failed");
    if !grpc {
        return (
            StatusCode::BAD_GATEWAY,
            format!("upstream {provider} failed: {error}\n"),
        )
            .into_response();
    }
    grpc_unavailable("upstream call failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert(header::UPGRADE, "h2c".parse().unwrap());
        headers.insert("x-request-id", "abc".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-request-id"]);
    }

    #[test]
    fn connection_keep_alive_alone_is_removed_and_the_rest_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        headers.insert(header::CONTENT_LENGTH, "2".parse().unwrap());
        headers.insert("x-other", "1".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["content-length", "x-other"]);

        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "close, X-Private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert(header::TE, "trailers".parse().unwrap());
        headers.insert(header::HOST, "a".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["host"]);

        // Tokens in any case; a hop-by-hop name given as a token goes too.
        let mut headers = HeaderMap::new();
        headers.append(header::CONNECTION, "Keep-Alive, Upgrade".parse().unwrap());
        headers.append(header::CONNECTION, "X-Two".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        headers.insert("x-two", "2".parse().unwrap());
        headers.insert(header::ACCEPT, "*/*".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn the_fast_check_knows_exactly_the_hop_by_hop_names() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "host",
            "content-length",
            "x-connection",
            "tee",
            "upgrade-insecure-requests",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }
}
