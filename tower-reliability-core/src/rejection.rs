//! [`Rejection`]: why a layer turned a request away, and how that is answered over HTTP and gRPC.

use std::any::TypeId;
use std::error::Error as StdError;
use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::body::ResponseBody;

/// `x-overloaded: true` marks an answer with which one of our layers *shed* a request (a full
/// queue, an open circuit), as opposed to an upstream's own 503 passed through; Envoy's
/// `x-envoy-overloaded` does the same. `tower-retry-classified` never retries an answer carrying
/// it: the request was refused to take load off, and a retry one hop up would put the load back.
pub const X_OVERLOADED: HeaderName = HeaderName::from_static("x-overloaded");

/// gRPC's `Retry-After` (gRFC A6): milliseconds before a retrying client may try again.
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const APPLICATION_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// gRPC status codes this family answers with.
pub mod grpc_code {
    /// `INVALID_ARGUMENT`: the request itself is wrong (a malformed deadline header).
    pub const INVALID_ARGUMENT: u8 = 3;
    /// `DEADLINE_EXCEEDED`: the caller's time ran out.
    pub const DEADLINE_EXCEEDED: u8 = 4;
    /// `RESOURCE_EXHAUSTED`.
    pub const RESOURCE_EXHAUSTED: u8 = 8;
    /// `UNAVAILABLE`: shed, or nothing reached the server; another attempt may succeed.
    pub const UNAVAILABLE: u8 = 14;
}

/// Why one of our layers turned a request away: what every layer's error implements, so that
/// one function ([`answer`]) turns any of them into an HTTP or gRPC answer the same way.
///
/// | | HTTP | gRPC (HTTP 200, trailers-only) |
/// |---|---|---|
/// | status | [`http_status`](Self::http_status) | `grpc-status`: [`grpc_code`](Self::grpc_code) |
/// | message | text body, the error's `Display` | `grpc-message`, percent-encoded |
/// | [`retry_after`](Self::retry_after) | `Retry-After`, whole seconds rounded up | `grpc-retry-pushback-ms` |
/// | [`overloaded`](Self::overloaded) | [`X_OVERLOADED`] | [`X_OVERLOADED`] |
pub trait Rejection: StdError + Send + Sync + 'static {
    /// The HTTP status of the answer (503 for load shed, 504 for time out, ...).
    fn http_status(&self) -> StatusCode;

    /// The gRPC status code of the answer (see [`grpc_code`]).
    fn grpc_code(&self) -> u8;

    /// When the caller may try again, if the layer knows.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// Whether the request was shed to take load off (a full queue, an open circuit): the
    /// answer carries [`X_OVERLOADED`] and retry layers leave it alone.
    fn overloaded(&self) -> bool {
        false
    }
}

/// Whether an answer goes out as plain HTTP or as gRPC, as the request's `content-type` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Plain HTTP: the status code and a one-line text body.
    #[default]
    Http,
    /// gRPC (`content-type: application/grpc*`): HTTP 200 with the status in the headers.
    Grpc,
}

impl Protocol {
    /// The protocol of a request with these headers.
    pub fn of(request_headers: &HeaderMap) -> Self {
        if is_grpc(request_headers) {
            Protocol::Grpc
        } else {
            Protocol::Http
        }
    }
}

/// Whether a request is gRPC: its `content-type` starts with `application/grpc`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A wait as a `Retry-After` value: whole seconds, rounded up (a 1.2 s wait is 2).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
}

/// The answer to a request that `rejection` turned away, in `protocol`; see [`Rejection`] for
/// what goes where.
///
/// ```
/// use tower_reliability_core::{Protocol, Rejection, ResponseBody, answer};
///
/// #[derive(Debug)]
/// struct Busy;
/// impl std::fmt::Display for Busy {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("busy") }
/// }
/// impl std::error::Error for Busy {}
/// impl Rejection for Busy {
///     fn http_status(&self) -> http::StatusCode { http::StatusCode::SERVICE_UNAVAILABLE }
///     fn grpc_code(&self) -> u8 { 14 }
///     fn overloaded(&self) -> bool { true }
/// }
///
/// let http: http::Response<ResponseBody<String>> = answer(&Busy, Protocol::Http);
/// assert_eq!(http.status(), 503);
/// assert_eq!(http.headers()["x-overloaded"], "true");
/// let grpc: http::Response<ResponseBody<String>> = answer(&Busy, Protocol::Grpc);
/// assert_eq!(grpc.status(), 200);
/// assert_eq!(grpc.headers()["grpc-status"], "14");
/// assert_eq!(grpc.headers()["grpc-message"], "busy");
/// ```
pub fn answer<B>(rejection: &dyn Rejection, protocol: Protocol) -> Response<ResponseBody<B>> {
    let message = rejection.to_string();
    let retry_after = rejection.retry_after().map(retry_after_secs);
    let mut response = match protocol {
        Protocol::Grpc => {
            let mut response = Response::new(ResponseBody::text(Bytes::new()));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, APPLICATION_GRPC);
            headers.insert(
                GRPC_STATUS,
                HeaderValue::from(u16::from(rejection.grpc_code())),
            );
            if let Ok(value) = HeaderValue::try_from(percent_encode(&message)) {
                headers.insert(GRPC_MESSAGE, value);
            }
            if let Some(secs) = retry_after {
                headers.insert(
                    GRPC_RETRY_PUSHBACK_MS,
                    HeaderValue::from(secs.saturating_mul(1000)),
                );
            }
            response
        }
        Protocol::Http => {
            let mut response = Response::new(ResponseBody::text(message + "\n"));
            *response.status_mut() = rejection.http_status();
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, TEXT_PLAIN);
            if let Some(secs) = retry_after {
                headers.insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    };
    if rejection.overloaded() {
        response
            .headers_mut()
            .insert(X_OVERLOADED, HeaderValue::from_static("true"));
    }
    response
}

/// The answer for a failed call whose error is, anywhere in its `source()` chain, one of our
/// layers' rejections (a deadline that passed, a connect that timed out, a full queue, an open
/// circuit); `None` for any other error, which the caller answers its own way (a proxy usually
/// with 502).
///
/// For a proxy whose client stack runs our layers in error mode: one call answers all of them
/// as the layers' own HTTP mode would.
///
/// ```
/// use tower_reliability_core::{Protocol, error_response};
///
/// fn answer(error: &(dyn std::error::Error + 'static), protocol: Protocol) -> http::Response<String> {
///     if let Some(ours) = error_response::<String>(error, protocol) {
///         return ours.map(|body| format!("{body:?}"));
///     }
///     let mut bad_gateway = http::Response::new(String::from("upstream failed\n"));
///     *bad_gateway.status_mut() = http::StatusCode::BAD_GATEWAY;
///     bad_gateway
/// }
/// let refused = std::io::Error::other("connection refused");
/// assert_eq!(answer(&refused, Protocol::Http).status(), 502);
/// ```
pub fn error_response<B>(
    error: &(dyn StdError + 'static),
    protocol: Protocol,
) -> Option<Response<ResponseBody<B>>> {
    find(error).map(|rejection| answer(rejection, protocol))
}

/// The first of our rejections in `error`'s `source()` chain.
pub fn find<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e dyn Rejection> {
    let finders = FINDERS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(rejection) = finders.iter().find_map(|(_, find)| find(e)) {
            return Some(rejection);
        }
        source = e.source();
    }
    None
}

type Finder = for<'e> fn(&'e (dyn StdError + 'static)) -> Option<&'e dyn Rejection>;

/// The rejection types [`find`] knows. A trait object cannot be downcast to another trait, so
/// each crate registers its concrete types (see [`register`]); only the error path reads this.
static FINDERS: RwLock<Vec<(TypeId, Finder)>> = RwLock::new(Vec::new());

fn downcast<'e, T: Rejection>(error: &'e (dyn StdError + 'static)) -> Option<&'e dyn Rejection> {
    error.downcast_ref::<T>().map(|r| r as &dyn Rejection)
}

/// Makes [`find`] and [`error_response`] recognise `T`. Our crates call it once, the first time
/// one of their rejections is created; a crate of yours with its own [`Rejection`] calls it
/// once too. Registering a type again has no further effect.
pub fn register<T: Rejection>() {
    let id = TypeId::of::<T>();
    let mut finders = FINDERS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if finders.iter().all(|(known, _)| *known != id) {
        finders.push((id, downcast::<T>));
    }
}

/// `grpc-message` is percent-encoded: `%` and anything outside printable ASCII.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use http_body::Body;
    use http_body_util::BodyExt;

    use super::*;

    #[derive(Debug)]
    struct Shed(Option<Duration>);

    impl std::fmt::Display for Shed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("shed: 100% full")
        }
    }

    impl StdError for Shed {}

    impl Rejection for Shed {
        fn http_status(&self) -> StatusCode {
            StatusCode::SERVICE_UNAVAILABLE
        }
        fn grpc_code(&self) -> u8 {
            grpc_code::UNAVAILABLE
        }
        fn retry_after(&self) -> Option<Duration> {
            self.0
        }
        fn overloaded(&self) -> bool {
            true
        }
    }

    #[derive(Debug)]
    struct Wrapper(Box<dyn StdError + Send + Sync>);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    #[tokio::test]
    async fn http_answers_carry_status_text_retry_after_and_the_marker() {
        let response = answer::<String>(&Shed(Some(Duration::from_millis(1200))), Protocol::Http);
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        assert_eq!(response.headers()[X_OVERLOADED], "true");
        assert_eq!(response.headers()[CONTENT_TYPE], TEXT_PLAIN);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "shed: 100% full\n");
    }

    #[tokio::test]
    async fn grpc_answers_are_trailers_only_with_pushback() {
        let response = answer::<String>(&Shed(Some(Duration::from_secs(3))), Protocol::Grpc);
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers[CONTENT_TYPE], "application/grpc");
        assert_eq!(headers[GRPC_STATUS], "14");
        assert_eq!(headers[GRPC_MESSAGE], "shed: 100%25 full");
        assert_eq!(headers[GRPC_RETRY_PUSHBACK_MS], "3000");
        assert_eq!(headers[X_OVERLOADED], "true");
        assert!(!headers.contains_key(RETRY_AFTER));
        assert!(response.into_body().is_end_stream());
    }

    #[test]
    fn no_hint_no_header() {
        let response = answer::<String>(&Shed(None), Protocol::Http);
        assert!(!response.headers().contains_key(RETRY_AFTER));
    }

    #[test]
    fn found_anywhere_in_the_chain_once_registered() {
        register::<Shed>();
        register::<Shed>();
        let wrapped = Wrapper(Box::new(Wrapper(Box::new(Shed(None)))));
        let response = error_response::<String>(&wrapped, Protocol::Grpc).unwrap();
        assert_eq!(response.headers()[GRPC_STATUS], "14");
        let other = std::io::Error::other("refused");
        assert!(error_response::<String>(&other, Protocol::Http).is_none());
        let id = TypeId::of::<Shed>();
        let finders = FINDERS.read().unwrap();
        assert_eq!(finders.iter().filter(|(known, _)| *known == id).count(), 1);
    }

    #[test]
    fn protocol_from_content_type() {
        let mut headers = HeaderMap::new();
        assert_eq!(Protocol::of(&headers), Protocol::Http);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert_eq!(Protocol::of(&headers), Protocol::Grpc);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 0);
        assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
        assert_eq!(retry_after_secs(Duration::from_millis(4001)), 5);
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("50% done\n"), "50%25 done%0A");
        assert_eq!(percent_encode("caf\u{e9}"), "caf%C3%A9");
    }
}
