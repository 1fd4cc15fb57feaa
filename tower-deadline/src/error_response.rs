//! [`error_response`]: the answer a proxy gives its caller when a call it made ran out of time,
//! so that every proxy need not write it by hand.

use std::error::Error as StdError;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::body::DeadlineBody;
use crate::error::{ConnectTimeout, DeadlineExceeded};

/// The response for a failed outgoing call whose error (anywhere in its `source()` chain) is a
/// [`DeadlineExceeded`] or a [`ConnectTimeout`]; `None` for any other error, which the caller
/// answers its own way (a proxy usually with 502).
///
/// | error | HTTP | gRPC (`grpc: true`: HTTP 200, trailers-only) |
/// |---|---|---|
/// | [`DeadlineExceeded`] | 504 | `grpc-status: 4` DEADLINE_EXCEEDED |
/// | [`ConnectTimeout`] | 504 | `grpc-status: 14` UNAVAILABLE (nothing was sent: another attempt may connect) |
///
/// The text (HTTP body, or `grpc-message`) is the error's own message, with its numbers. Pass
/// `grpc` as the incoming request's `content-type` says (`application/grpc*`). The body type
/// is the layer's [`DeadlineBody`], whatever `B` the rest of the service uses; axum users turn
/// it into theirs with `.map(axum::body::Body::new)`.
///
/// `tower_bounded_queue::error_response` does the same for the queue's errors; a proxy tries
/// both:
///
/// ```
/// use std::time::Duration;
/// use tower_deadline::{DeadlineExceeded, Stage, error_response};
///
/// let error: Box<dyn std::error::Error + Send + Sync> = Box::new(DeadlineExceeded::new(
///     Stage::Handling,
///     Duration::from_millis(300),
///     Duration::from_millis(301),
/// ));
/// let response = error_response::<String>(&*error, false).expect("a deadline error");
/// assert_eq!(response.status(), 504);
/// let grpc = error_response::<String>(&*error, true).unwrap();
/// assert_eq!(grpc.status(), 200);
/// assert_eq!(grpc.headers()["grpc-status"], "4");
/// ```
pub fn error_response<B>(
    error: &(dyn StdError + 'static),
    grpc: bool,
) -> Option<Response<DeadlineBody<B>>> {
    let (grpc_status, text) = find(error)?;
    Some(answer(
        StatusCode::GATEWAY_TIMEOUT,
        grpc_status,
        &text,
        grpc,
    ))
}

/// The gRPC status and the message of the first deadline or connect-timeout error in the chain.
fn find(error: &(dyn StdError + 'static)) -> Option<(&'static str, String)> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(d) = e.downcast_ref::<DeadlineExceeded>() {
            return Some(("4", d.to_string()));
        }
        if let Some(c) = e.downcast_ref::<ConnectTimeout>() {
            return Some(("14", c.to_string()));
        }
        source = e.source();
    }
    None
}

fn answer<B>(
    status: StatusCode,
    grpc_status: &'static str,
    text: &str,
    grpc: bool,
) -> Response<DeadlineBody<B>> {
    if grpc {
        let mut response = Response::new(DeadlineBody::text(Bytes::new()));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static(grpc_status));
        if let Ok(message) = HeaderValue::from_str(&grpc_message(text)) {
            headers.insert("grpc-message", message);
        }
        return response;
    }
    let mut response = Response::new(DeadlineBody::text(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `grpc-message` is percent-encoded; our messages are ASCII, so encoding `%` and anything
/// outside printable ASCII is all it takes.
fn grpc_message(text: &str) -> String {
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
    use std::time::Duration;

    use super::*;
    use crate::Stage;

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

    #[test]
    fn found_anywhere_in_the_chain() {
        let connect = Wrapper(Box::new(ConnectTimeout::new(Duration::from_secs(5))));
        let response = error_response::<()>(&connect, false).unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        let grpc = error_response::<()>(&connect, true).unwrap();
        assert_eq!(grpc.headers()["grpc-status"], "14");
        let expired = Wrapper(Box::new(DeadlineExceeded::new(
            Stage::Handling,
            Duration::from_millis(10),
            Duration::from_millis(12),
        )));
        let grpc = error_response::<()>(&expired, true).unwrap();
        assert_eq!(grpc.headers()["grpc-status"], "4");
        assert_eq!(grpc.headers()["content-type"], "application/grpc");
        let other = std::io::Error::other("refused");
        assert!(error_response::<()>(&other, false).is_none());
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_message("50% done\n"), "50%25 done%0A");
        assert_eq!(grpc_message("caf\u{e9}"), "caf%C3%A9");
    }
}
