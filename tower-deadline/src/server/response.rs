//! Why the layer answers a request itself ([`Rejection`]), and the answers it gives in HTTP
//! mode. gRPC requests get a trailers-only response (HTTP 200, the status in headers), as the
//! gRPC spec requires; never 408 or CANCELLED.
//!
//! The service and its response future both reject, so the reasons live here, below both.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::body::DeadlineBody;
use crate::{BoxError, DeadlineExceeded, InvalidDeadlineHeader};

/// Why the layer answered a request itself.
#[derive(Debug)]
pub(crate) enum Rejection {
    Expired(DeadlineExceeded),
    Malformed(InvalidDeadlineHeader),
}

/// Error mode's answer: the reason itself, boxed.
impl From<Rejection> for BoxError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Expired(e) => Box::new(e),
            Rejection::Malformed(e) => Box::new(e),
        }
    }
}

const GRPC_DEADLINE_EXCEEDED: HeaderValue = HeaderValue::from_static("4");
const GRPC_INVALID_ARGUMENT: HeaderValue = HeaderValue::from_static("3");

pub(crate) fn answer<B>(rejection: &Rejection, grpc: bool) -> Response<DeadlineBody<B>> {
    let (status, grpc_status, text) = match rejection {
        Rejection::Expired(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            GRPC_DEADLINE_EXCEEDED,
            "deadline exceeded",
        ),
        Rejection::Malformed(_) => (
            StatusCode::BAD_REQUEST,
            GRPC_INVALID_ARGUMENT,
            "malformed deadline header",
        ),
    };
    if grpc {
        let mut response = Response::new(DeadlineBody::message(""));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", grpc_status);
        headers.insert("grpc-message", HeaderValue::from_static(text));
        response
    } else {
        let mut response = Response::new(DeadlineBody::message(text));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}
