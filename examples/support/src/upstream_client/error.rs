//! The client's error: what failed (connecting, a request never written, a request written) and
//! the cause as its `source()`, so a classifier walking the chain finds the io error, hyper's
//! error or `tower_deadline`'s connect timeout underneath.
//!
//! `tower-retry-classified` knows hyper-util's legacy error as "connect stage, not sent", not
//! this one, so a failed connect is classified by its cause alone: refused
//! (`connection_refused`) and over budget (`connect_timeout`) are still "not sent" and
//! retryable for any method, but a name that does not resolve or an unreachable host is
//! `error` (permanent) where the legacy client's was `connect_error`.

use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an upstream call failed; the cause is its [`source`](std::error::Error::source).
pub struct Error {
    kind: Kind,
    source: BoxError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The request cannot be sent as given (no authority in its URI, HTTP/2 version).
    Request,
    /// Establishing a connection failed: nothing was sent.
    Connect,
    /// The request was handed back unwritten from a fresh connection that closed: nothing was
    /// sent.
    Canceled,
    /// Sending the request or reading the answer failed after the request was handed to its
    /// connection: it may have been processed.
    Send,
}

impl Error {
    pub(crate) fn new(kind: Kind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// Establishing the connection failed, so nothing was sent.
    pub fn is_connect(&self) -> bool {
        self.kind == Kind::Connect
    }

    /// The request was never written (its fresh connection closed first), so nothing was sent.
    pub fn is_canceled(&self) -> bool {
        self.kind == Kind::Canceled
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Request => "request not valid for this client",
            Kind::Connect => "connect failed",
            Kind::Canceled => "connection closed before the request was written",
            Kind::Send => "request failed",
        })
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
