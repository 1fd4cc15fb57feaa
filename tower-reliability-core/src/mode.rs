//! The two ways a layer of this family reports a request it does not let through.
//!
//! Every layer that can answer by itself (`DeadlineLayer`, `BoundedQueueLayer`,
//! `CircuitBreakerLayer`) is `FooLayer<M = ErrorMode>`: by default a refusal is a typed error the
//! caller maps, and `.http()` turns the layer into `FooLayer<HttpMode>`, whose service answers
//! with a response instead (see [`answer`](crate::answer)).

/// A refusal is a typed error (boxed as `tower::BoxError`, downcastable), for callers that map
/// errors themselves: clients, `HandleErrorLayer`, non-HTTP services.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ErrorMode;

/// A refusal is answered with a response: HTTP status, or for gRPC requests HTTP 200 with
/// `grpc-status` in the headers (trailers-only). The inner service's error type is kept, so an
/// axum app needs no `HandleErrorLayer`. Response bodies become
/// [`ResponseBody<B>`](crate::ResponseBody).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HttpMode;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ErrorMode {}
    impl Sealed for super::HttpMode {}
}

/// [`ErrorMode`] or [`HttpMode`]; sealed.
pub trait Mode: sealed::Sealed + Copy + Default + Send + Sync + 'static {
    /// Whether refusals are answered with responses.
    const HTTP: bool;
}

impl Mode for ErrorMode {
    const HTTP: bool = false;
}

impl Mode for HttpMode {
    const HTTP: bool = true;
}
