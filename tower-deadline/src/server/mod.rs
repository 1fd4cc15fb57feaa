//! The server layer: reads the incoming deadline, caps it, hands it to the inner service and
//! enforces it.

mod future;
mod layer;
mod response;
mod service;

pub use future::ResponseFuture;
pub use layer::DeadlineLayer;
pub use service::DeadlineService;

/// Mode of [`DeadlineLayer::new`]: a missed deadline is an error ([`DeadlineExceeded`](crate::DeadlineExceeded),
/// boxed as `tower::BoxError`), for users who map errors themselves.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorMode;

/// Mode of [`DeadlineLayer::http`]: a missed deadline is answered with a response (504, or
/// `grpc-status: 4` for gRPC), so axum needs no `HandleErrorLayer`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpMode;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ErrorMode {}
    impl Sealed for super::HttpMode {}
}

/// How [`DeadlineService`] reports a request it does not let through: [`ErrorMode`] or [`HttpMode`].
pub trait Mode: sealed::Sealed {
    /// Whether the mode answers with HTTP responses (and so needs to know gRPC from plain HTTP).
    #[doc(hidden)]
    const HTTP: bool;
}

impl Mode for ErrorMode {
    const HTTP: bool = false;
}

impl Mode for HttpMode {
    const HTTP: bool = true;
}
