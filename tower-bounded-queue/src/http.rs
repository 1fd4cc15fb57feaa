//! What HTTP mode needs beyond the answer protocol: the request's deadline, and which answers
//! count as failures for an adaptive limit.

use http::{HeaderName, Request, Response, StatusCode};

/// The conventional name for the optional status header, `x-overload-status` (see
/// [`BoundedQueueLayer::status_header`](crate::BoundedQueueLayer::status_header)).
pub const X_OVERLOAD_STATUS: HeaderName = HeaderName::from_static("x-overload-status");

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The deadline bounding an HTTP request's wait: the earliest of its extensions' and the
/// task-local one.
pub(crate) fn deadline_of<B>(_request: &Request<B>) -> Option<tokio::time::Instant> {
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
pub(crate) fn failed_answer<B, E>(outcome: &Result<Response<B>, E>) -> bool {
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
