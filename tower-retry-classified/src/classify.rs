//! Three-way classification of an attempt's outcome: success, retryable, permanent.
//!
//! Every classification carries a [`Reason`] with a stable, low-cardinality name, so metrics and
//! logs can say *why* a request was or was not retried.

use std::error::Error as StdError;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::BoxError;
use crate::hint;

/// Why an outcome was classified the way it was.
///
/// The name is stable and low-cardinality, made to be used as a metric attribute (`reason`).
/// A reason also records whether the failure *proves the request was not processed* (nothing
/// reached the upstream's application: connect refused, connect error, HTTP/2 REFUSED_STREAM).
/// Such failures are retried for any method, idempotent or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reason {
    name: &'static str,
    not_processed: bool,
}

impl Reason {
    /// A reason with the given name for a failure that may have been processed upstream.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            not_processed: false,
        }
    }

    /// A reason for a failure that proves the request never reached the upstream's application,
    /// so retrying is safe for any method.
    pub const fn not_processed(name: &'static str) -> Self {
        Self {
            name,
            not_processed: true,
        }
    }

    /// The stable name, for metrics and logs.
    pub const fn as_str(&self) -> &'static str {
        self.name
    }

    /// Whether the failure proves the request was not processed.
    pub const fn is_not_processed(&self) -> bool {
        self.not_processed
    }

    /// A successful outcome.
    pub const OK: Reason = Reason::new("ok");
    /// HTTP 408 Request Timeout.
    pub const REQUEST_TIMEOUT: Reason = Reason::new("request_timeout");
    /// HTTP 429 Too Many Requests.
    pub const TOO_MANY_REQUESTS: Reason = Reason::new("too_many_requests");
    /// HTTP 500 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Reason = Reason::new("internal_server_error");
    /// HTTP 502 Bad Gateway.
    pub const BAD_GATEWAY: Reason = Reason::new("bad_gateway");
    /// HTTP 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Reason = Reason::new("service_unavailable");
    /// HTTP 504 Gateway Timeout.
    pub const GATEWAY_TIMEOUT: Reason = Reason::new("gateway_timeout");
    /// Any other 4xx status.
    pub const CLIENT_ERROR: Reason = Reason::new("client_error");
    /// HTTP 501 Not Implemented.
    pub const NOT_IMPLEMENTED: Reason = Reason::new("not_implemented");
    /// HTTP 505 HTTP Version Not Supported.
    pub const HTTP_VERSION_NOT_SUPPORTED: Reason = Reason::new("http_version_not_supported");
    /// Any other 5xx status.
    pub const SERVER_ERROR: Reason = Reason::new("server_error");
    /// The server asked not to be retried (negative `grpc-retry-pushback-ms`).
    pub const PUSHBACK: Reason = Reason::new("retry_pushback");
    /// The answer is a peer's own overload rejection, marked with [`X_OVERLOADED`]: the peer
    /// already shed this request, and retrying it at this hop too would only add load.
    pub const PEER_OVERLOADED: Reason = Reason::new("peer_overloaded");
    /// The connection was refused: nothing was sent.
    pub const CONNECTION_REFUSED: Reason = Reason::not_processed("connection_refused");
    /// The connection was reset by the peer.
    pub const CONNECTION_RESET: Reason = Reason::new("connection_reset");
    /// The connection was aborted.
    pub const CONNECTION_ABORTED: Reason = Reason::new("connection_aborted");
    /// Writing to the connection failed: the peer closed it.
    pub const BROKEN_PIPE: Reason = Reason::new("broken_pipe");
    /// The connection closed in the middle of a message.
    pub const UNEXPECTED_EOF: Reason = Reason::new("unexpected_eof");
    /// The connection closed before a complete response arrived (hyper's incomplete message).
    pub const INCOMPLETE_MESSAGE: Reason = Reason::new("incomplete_message");
    /// hyper dropped the request before sending it (its connection closed while it was queued).
    pub const CANCELED: Reason = Reason::not_processed("canceled");
    /// Establishing the connection failed: nothing was sent.
    pub const CONNECT_ERROR: Reason = Reason::not_processed("connect_error");
    /// Establishing the connection took longer than its connect budget: nothing was sent.
    pub const CONNECT_TIMEOUT: Reason = Reason::not_processed("connect_timeout");
    /// HTTP/2 REFUSED_STREAM: the server refused the stream before processing it.
    pub const REFUSED_STREAM: Reason = Reason::not_processed("refused_stream");
    /// The caller's deadline passed; retrying cannot help.
    pub const DEADLINE_EXCEEDED: Reason = Reason::new("deadline_exceeded");
    /// A circuit breaker refused the call ([`CircuitOpen`](crate::CircuitOpen)): retrying the
    /// same dependency now only adds load it is being spared.
    pub const CIRCUIT_OPEN: Reason = Reason::new("circuit_open");
    /// An attempt ran longer than the per-attempt timeout.
    pub const ATTEMPT_TIMEOUT: Reason = Reason::new("attempt_timeout");
    /// An error the built-in classifier does not recognise.
    pub const OTHER_ERROR: Reason = Reason::new("error");
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The verdict on one attempt's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    /// The outcome is final and good; it is returned to the caller.
    Success,
    /// A transient failure: another attempt may succeed.
    Retryable {
        /// Why it failed.
        reason: Reason,
        /// A delay the server suggested (`Retry-After`, `grpc-retry-pushback-ms`), used instead
        /// of the backoff delay.
        after: Option<Duration>,
    },
    /// A failure that retrying cannot fix; it is returned to the caller.
    Permanent {
        /// Why it failed.
        reason: Reason,
    },
}

impl Classification {
    /// A retryable failure with no server hint.
    pub const fn retryable(reason: Reason) -> Self {
        Classification::Retryable {
            reason,
            after: None,
        }
    }

    /// A permanent failure.
    pub const fn permanent(reason: Reason) -> Self {
        Classification::Permanent { reason }
    }

    /// The reason, [`Reason::OK`] for a success.
    pub fn reason(&self) -> Reason {
        match self {
            Classification::Success => Reason::OK,
            Classification::Retryable { reason, .. } | Classification::Permanent { reason } => {
                *reason
            }
        }
    }

    /// Whether this is [`Classification::Retryable`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, Classification::Retryable { .. })
    }

    /// Classifies an HTTP status with the built-in table: 408, 429, 500, 502, 503, 504 are
    /// retryable; every other 4xx and 5xx is permanent; everything else is a success.
    pub fn of_status(status: StatusCode) -> Self {
        let reason = match status.as_u16() {
            408 => Reason::REQUEST_TIMEOUT,
            429 => Reason::TOO_MANY_REQUESTS,
            500 => Reason::INTERNAL_SERVER_ERROR,
            502 => Reason::BAD_GATEWAY,
            503 => Reason::SERVICE_UNAVAILABLE,
            504 => Reason::GATEWAY_TIMEOUT,
            code => {
                return match code {
                    501 => Self::permanent(Reason::NOT_IMPLEMENTED),
                    505 => Self::permanent(Reason::HTTP_VERSION_NOT_SUPPORTED),
                    400..=499 => Self::permanent(Reason::CLIENT_ERROR),
                    500..=599 => Self::permanent(Reason::SERVER_ERROR),
                    _ => Classification::Success,
                };
            }
        };
        Self::retryable(reason)
    }

    /// Classifies an error by walking its [`source`](StdError::source) chain (and the inner error
    /// of any [`std::io::Error`] on the way).
    ///
    /// Retryable: connection refused, reset or aborted, broken pipe, unexpected EOF, hyper's
    /// incomplete message, hyper-util connect errors (feature `hyper-util`), HTTP/2
    /// REFUSED_STREAM (feature `h2`), `tower_deadline::ConnectTimeout` (feature `deadline`) and
    /// this crate's [`AttemptTimeout`](crate::AttemptTimeout). Never retryable:
    /// `tower_deadline::DeadlineExceeded` anywhere in the chain. Anything else is permanent
    /// ([`Reason::OTHER_ERROR`]).
    pub fn of_error(error: &(dyn StdError + 'static)) -> Self {
        classify_error(error)
    }
}

/// Decides what an attempt's outcome means.
///
/// Implemented by [`HttpClassifier`] and by any closure
/// `Fn(Result<&Res, &BoxError>) -> Classification`, which replaces the built-in one. To adjust
/// the built-in verdict instead, see [`HttpClassifier::refine`].
pub trait Classify<Res> {
    /// Classifies one attempt's outcome: the response or the inner service's error.
    fn classify(&self, outcome: Result<&Res, &BoxError>) -> Classification;
}

impl<F, Res> Classify<Res> for F
where
    F: Fn(Result<&Res, &BoxError>) -> Classification,
{
    fn classify(&self, outcome: Result<&Res, &BoxError>) -> Classification {
        self(outcome)
    }
}

/// The built-in classifier for HTTP and gRPC over HTTP.
///
/// - HTTP 200 responses with a `grpc-status` header (gRPC trailers-only responses put it there)
///   are classified by gRPC code: `0` OK is a success, codes in the retryable set (default `14`
///   UNAVAILABLE) are retryable, all others permanent.
/// - Other responses by status, see [`Classification::of_status`].
/// - Errors by their source chain, see [`Classification::of_error`].
///
/// Retryable responses carry the server's hint: `Retry-After` (delta-seconds or HTTP-date) or
/// `grpc-retry-pushback-ms`; a negative or malformed pushback means "do not retry" (gRPC A6).
///
/// A failure marked with [`X_OVERLOADED`] (a peer's own overload rejection, such as
/// `tower-bounded-queue`'s) is permanent with [`Reason::PEER_OVERLOADED`]: as with Envoy's
/// `x-envoy-overloaded`, only the layer that sheds load decides, and layers above it do not
/// retry and multiply the load it shed. [`retry_overloaded_peers`](Self::retry_overloaded_peers)
/// opts out, for a hop that is the only one retrying and should honour the peer's hint instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpClassifier {
    /// Bit `n` set: gRPC code `n` is retryable.
    grpc_retryable: u32,
    retry_overloaded_peers: bool,
}

/// The header marking a peer's own overload rejection, `x-overloaded` (any value): the one
/// `tower_reliability_core` defines and every layer of the family that sheds load sends; any
/// server may send it to say "I shed this request".
pub use tower_reliability_core::X_OVERLOADED;

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

/// Header names as constants: looking up a `&str` would parse and hash it on every call.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// gRPC status UNAVAILABLE.
const GRPC_UNAVAILABLE: u8 = 14;

impl HttpClassifier {
    /// The default classifier: only gRPC UNAVAILABLE among gRPC codes is retryable.
    pub const fn new() -> Self {
        Self {
            grpc_retryable: 1 << GRPC_UNAVAILABLE,
            retry_overloaded_peers: false,
        }
    }

    /// Retries failures marked with [`X_OVERLOADED`] like unmarked ones, after the peer's
    /// `Retry-After` / `grpc-retry-pushback-ms` (default false: never retried).
    pub const fn retry_overloaded_peers(mut self, yes: bool) -> Self {
        self.retry_overloaded_peers = yes;
        self
    }

    /// Sets which gRPC status codes (1 to 16) are retryable. Codes outside 1..=16 are ignored:
    /// 0 is OK and never a failure.
    pub fn grpc_retryable_codes(mut self, codes: &[u8]) -> Self {
        self.grpc_retryable = codes
            .iter()
            .filter(|c| (1..=16).contains(*c))
            .fold(0, |bits, c| bits | (1 << c));
        self
    }

    /// Wraps this classifier with a closure that receives the outcome and the built-in verdict
    /// and returns the final one: composition instead of replacement.
    pub fn refine<F>(self, f: F) -> Refine<Self, F> {
        Refine {
            first: self,
            then: f,
        }
    }

    /// Classifies a response head.
    pub fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Classification {
        // gRPC answers every call with HTTP 200; other statuses need no header lookup.
        let verdict = if status == StatusCode::OK {
            match grpc_status(headers) {
                Some(code) => self.classify_grpc(code, headers),
                None => return Classification::Success,
            }
        } else {
            match Classification::of_status(status) {
                Classification::Retryable { reason, .. } => Classification::Retryable {
                    reason,
                    after: hint::retry_after(headers),
                },
                other => other,
            }
        };
        // Only a would-be retry pays for the marker lookup.
        if verdict.is_retryable()
            && !self.retry_overloaded_peers
            && headers.contains_key(X_OVERLOADED)
        {
            return Classification::permanent(Reason::PEER_OVERLOADED);
        }
        verdict
    }

    fn classify_grpc(&self, code: u8, headers: &HeaderMap) -> Classification {
        if code == 0 {
            return Classification::Success;
        }
        let reason = grpc_reason(code);
        if code > 16 || self.grpc_retryable & (1 << code) == 0 {
            return Classification::permanent(reason);
        }
        match hint::grpc_pushback(headers) {
            hint::Pushback::None => Classification::retryable(reason),
            hint::Pushback::After(after) => Classification::Retryable {
                reason,
                after: Some(after),
            },
            hint::Pushback::Stop => Classification::permanent(Reason::PUSHBACK),
        }
    }
}

impl<B> Classify<http::Response<B>> for HttpClassifier {
    fn classify(&self, outcome: Result<&http::Response<B>, &BoxError>) -> Classification {
        match outcome {
            Ok(response) => self.classify_response(response.status(), response.headers()),
            Err(error) => classify_error(&**error),
        }
    }
}

/// A classifier followed by a closure that may change its verdict; see [`HttpClassifier::refine`].
#[derive(Clone, Copy, Debug)]
pub struct Refine<C, F> {
    first: C,
    then: F,
}

impl<C, F> Refine<C, F> {
    /// Runs `first`, then lets `then` (`Fn(Result<&Res, &BoxError>, Classification) ->
    /// Classification`) change its verdict. Composes any two classifiers.
    pub fn new(first: C, then: F) -> Self {
        Self { first, then }
    }
}

impl<C, F, Res> Classify<Res> for Refine<C, F>
where
    C: Classify<Res>,
    F: Fn(Result<&Res, &BoxError>, Classification) -> Classification,
{
    fn classify(&self, outcome: Result<&Res, &BoxError>) -> Classification {
        let first = self.first.classify(outcome);
        (self.then)(outcome, first)
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    let value = headers.get(GRPC_STATUS)?.to_str().ok()?.trim();
    // Malformed codes are treated as UNKNOWN (2), as gRPC clients do.
    Some(value.parse::<u8>().unwrap_or(2))
}

fn grpc_reason(code: u8) -> Reason {
    const NAMES: [&str; 17] = [
        "grpc_ok",
        "grpc_cancelled",
        "grpc_unknown",
        "grpc_invalid_argument",
        "grpc_deadline_exceeded",
        "grpc_not_found",
        "grpc_already_exists",
        "grpc_permission_denied",
        "grpc_resource_exhausted",
        "grpc_failed_precondition",
        "grpc_aborted",
        "grpc_out_of_range",
        "grpc_unimplemented",
        "grpc_internal",
        "grpc_unavailable",
        "grpc_data_loss",
        "grpc_unauthenticated",
    ];
    Reason::new(NAMES.get(code as usize).copied().unwrap_or("grpc_unknown"))
}

fn classify_error(error: &(dyn StdError + 'static)) -> Classification {
    #[cfg_attr(not(feature = "hyper-util"), allow(unused_mut))]
    let mut connect = false;
    let mut found: Option<Reason> = None;
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    // Bounded walk: a cyclic or absurdly deep chain must not hang us.
    let mut steps = 0;
    while let Some(err) = next {
        steps += 1;
        if steps > 32 {
            break;
        }
        #[cfg(feature = "deadline")]
        {
            if err.is::<tower_deadline::DeadlineExceeded>() {
                return Classification::permanent(Reason::DEADLINE_EXCEEDED);
            }
            if err.is::<tower_deadline::ConnectTimeout>() {
                found.get_or_insert(Reason::CONNECT_TIMEOUT);
            }
        }
        if err.is::<crate::AttemptTimeout>() {
            found.get_or_insert(Reason::ATTEMPT_TIMEOUT);
        }
        if err.is::<crate::CircuitOpen>() {
            return Classification::permanent(Reason::CIRCUIT_OPEN);
        }
        #[cfg(feature = "hyper-util")]
        if let Some(e) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect |= e.is_connect();
        }
        #[cfg(feature = "h2")]
        if let Some(e) = err.downcast_ref::<h2::Error>() {
            if e.reason() == Some(h2::Reason::REFUSED_STREAM) {
                found.get_or_insert(Reason::REFUSED_STREAM);
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(reason) = io_reason(io.kind()) {
                found.get_or_insert(reason);
            }
            // io::Error::source skips a custom inner error itself; look at it directly.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
                continue;
            }
        }
        if let Some(reason) = hyper_reason(err) {
            found.get_or_insert(reason);
        }
        next = err.source();
    }
    match found {
        Some(reason) if connect && !reason.is_not_processed() => {
            // A connect-stage failure never sent the request, whatever the io kind was.
            Classification::retryable(Reason::not_processed(reason.as_str()))
        }
        Some(reason) => Classification::retryable(reason),
        None if connect => Classification::retryable(Reason::CONNECT_ERROR),
        None => Classification::permanent(Reason::OTHER_ERROR),
    }
}

fn io_reason(kind: std::io::ErrorKind) -> Option<Reason> {
    use std::io::ErrorKind::*;
    Some(match kind {
        ConnectionRefused => Reason::CONNECTION_REFUSED,
        ConnectionReset => Reason::CONNECTION_RESET,
        ConnectionAborted => Reason::CONNECTION_ABORTED,
        BrokenPipe => Reason::BROKEN_PIPE,
        UnexpectedEof => Reason::UNEXPECTED_EOF,
        _ => return None,
    })
}

#[cfg(feature = "hyper-util")]
fn hyper_reason(err: &(dyn StdError + 'static)) -> Option<Reason> {
    let e = err.downcast_ref::<hyper::Error>()?;
    if e.is_incomplete_message() {
        Some(Reason::INCOMPLETE_MESSAGE)
    } else if e.is_canceled() {
        // hyper cancels requests that were still queued when their connection closed.
        Some(Reason::CANCELED)
    } else {
        None
    }
}

#[cfg(not(feature = "hyper-util"))]
fn hyper_reason(_err: &(dyn StdError + 'static)) -> Option<Reason> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn status_table() {
        for code in [408, 429, 500, 502, 503, 504] {
            let c = Classification::of_status(StatusCode::from_u16(code).unwrap());
            assert!(c.is_retryable(), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422, 501, 505, 507] {
            let c = Classification::of_status(StatusCode::from_u16(code).unwrap());
            assert!(
                matches!(c, Classification::Permanent { .. }),
                "{code}: {c:?}"
            );
        }
        for code in [200, 201, 204, 301, 304] {
            assert_eq!(
                Classification::of_status(StatusCode::from_u16(code).unwrap()),
                Classification::Success
            );
        }
        assert_eq!(
            Classification::of_status(StatusCode::SERVICE_UNAVAILABLE).reason(),
            Reason::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn grpc_status_from_headers() {
        let c = HttpClassifier::new();
        let mut h = HeaderMap::new();
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(
            c.classify_response(StatusCode::OK, &h),
            Classification::retryable(Reason::new("grpc_unavailable"))
        );
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(
            c.classify_response(StatusCode::OK, &h),
            Classification::permanent(Reason::new("grpc_not_found"))
        );
        h.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(
            c.classify_response(StatusCode::OK, &h),
            Classification::Success
        );
        h.insert("grpc-status", "junk".parse().unwrap());
        assert!(!c.classify_response(StatusCode::OK, &h).is_retryable());
        let custom = HttpClassifier::new().grpc_retryable_codes(&[8, 14, 0, 99]);
        h.insert("grpc-status", "8".parse().unwrap());
        assert!(custom.classify_response(StatusCode::OK, &h).is_retryable());
    }

    #[test]
    fn grpc_pushback() {
        let c = HttpClassifier::new();
        let mut h = HeaderMap::new();
        h.insert("grpc-status", "14".parse().unwrap());
        h.insert("grpc-retry-pushback-ms", "250".parse().unwrap());
        assert_eq!(
            c.classify_response(StatusCode::OK, &h),
            Classification::Retryable {
                reason: Reason::new("grpc_unavailable"),
                after: Some(Duration::from_millis(250))
            }
        );
        h.insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
        assert_eq!(
            c.classify_response(StatusCode::OK, &h),
            Classification::permanent(Reason::PUSHBACK)
        );
    }

    #[test]
    fn retry_after_hint_on_status() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(
            HttpClassifier::new().classify_response(StatusCode::TOO_MANY_REQUESTS, &h),
            Classification::Retryable {
                reason: Reason::TOO_MANY_REQUESTS,
                after: Some(Duration::from_secs(3))
            }
        );
    }

    #[derive(Debug)]
    struct Wrap(Box<dyn StdError + Send + Sync>);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn errors_walk_the_chain() {
        let refused = Wrap(Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)));
        let c = Classification::of_error(&refused);
        assert_eq!(c, Classification::retryable(Reason::CONNECTION_REFUSED));
        assert!(c.reason().is_not_processed());

        let reset = io::Error::other(Wrap(Box::new(io::Error::from(
            io::ErrorKind::ConnectionReset,
        ))));
        let c = Classification::of_error(&reset);
        assert_eq!(c, Classification::retryable(Reason::CONNECTION_RESET));
        assert!(!c.reason().is_not_processed());

        let other = io::Error::other("boom");
        assert_eq!(
            Classification::of_error(&other),
            Classification::permanent(Reason::OTHER_ERROR)
        );
    }

    #[cfg(feature = "deadline")]
    #[test]
    fn deadline_exceeded_is_never_retried() {
        use tower_deadline::{DeadlineExceeded, Stage};
        let e = io::Error::new(
            io::ErrorKind::ConnectionReset,
            Wrap(Box::new(DeadlineExceeded::new(
                Stage::Outgoing,
                Duration::from_secs(1),
                Duration::from_secs(1),
            ))),
        );
        assert_eq!(
            Classification::of_error(&e),
            Classification::permanent(Reason::DEADLINE_EXCEEDED)
        );
    }

    #[cfg(feature = "deadline")]
    #[test]
    fn connect_timeout_is_retryable_and_proves_not_processed() {
        let e = Wrap(Box::new(tower_deadline::ConnectTimeout::new(
            std::time::Duration::from_secs(5),
        )));
        let c = Classification::of_error(&e);
        assert_eq!(c, Classification::retryable(Reason::CONNECT_TIMEOUT));
        assert!(c.reason().is_not_processed());
    }

    #[cfg(feature = "h2")]
    #[test]
    fn refused_stream_proves_not_processed() {
        let e = Wrap(Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM)));
        let c = Classification::of_error(&e);
        assert_eq!(c, Classification::retryable(Reason::REFUSED_STREAM));
        assert!(c.reason().is_not_processed());
        let other = Wrap(Box::new(h2::Error::from(h2::Reason::INTERNAL_ERROR)));
        assert!(!Classification::of_error(&other).is_retryable());
    }

    #[test]
    fn refine_composes() {
        let c = HttpClassifier::new().refine(|_: Result<&http::Response<()>, &BoxError>, first| {
            match first {
                Classification::Permanent { reason } if reason == Reason::CLIENT_ERROR => {
                    Classification::retryable(Reason::new("custom"))
                }
                other => other,
            }
        });
        let resp = http::Response::builder().status(409).body(()).unwrap();
        assert_eq!(
            c.classify(Ok(&resp)),
            Classification::retryable(Reason::new("custom"))
        );
    }
}
