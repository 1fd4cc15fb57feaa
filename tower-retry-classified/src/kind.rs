//! How a request is kept for retries: HTTP requests (head cloned, body replayed) or any `Clone`
//! request.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use http_body::Body;
use tokio::time::Instant;

use crate::metrics::SkipReason;
use crate::replay::{Refusal, ReplayBody};

/// Marker for HTTP retries: requests are `http::Request<B>` for any body `B`, the inner service
/// receives `http::Request<ReplayBody<B>>`, idempotency rules apply, and responses carry
/// [`Attempts`](crate::Attempts).
#[derive(Clone, Copy, Debug, Default)]
pub struct Http;

/// Marker for HTTP retries whose inner service receives `http::Request<T>`, a body type of its
/// own, instead of `http::Request<ReplayBody<B>>`; made by
/// [`RetryLayer::attempt_body`](crate::RetryLayer::attempt_body). Each attempt's
/// [`ReplayBody`] is turned into `T` with `T::from`, so a client typed for
/// `http_body_util::Either<ReplayBody<B>, Other>` (or an enum body of the user's that implements
/// `From<ReplayBody<B>>`) sits under the layer directly: no `map_request`, and no boxing or
/// allocation, since the conversion only wraps the body. Otherwise as [`Http`].
pub struct HttpAs<T>(PhantomData<fn() -> T>);

impl<T> Clone for HttpAs<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for HttpAs<T> {}

impl<T> Default for HttpAs<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T> fmt::Debug for HttpAs<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpAs")
    }
}

/// Marker for generic retries of any `Clone` request, classified by a user classifier.
#[derive(Clone, Copy, Debug, Default)]
pub struct Generic;

/// What the retry logic needs to know about a request, taken once at call time.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    pub(crate) idempotent: bool,
    pub(crate) deadline: Option<Instant>,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Http {}
    impl<T> Sealed for super::HttpAs<T> {}
    impl Sealed for super::Generic {}

    /// The HTTP kinds, which share the HTTP-only settings (replay cap, retrying any method).
    pub trait IsHttp {}
    impl IsHttp for super::Http {}
    impl<T> IsHttp for super::HttpAs<T> {}
}

pub(crate) use sealed::IsHttp;

/// How a kind of request is prepared for, and re-issued on, retries. Implemented by [`Http`]
/// and [`Generic`] only.
pub trait RequestKind<Req>: sealed::Sealed {
    /// What the inner service receives.
    type Attempt;
    /// What is kept to build later attempts.
    type Saved;

    #[doc(hidden)]
    fn split(
        req: Req,
        retry_any_method: bool,
        replay_cap: usize,
    ) -> (Self::Attempt, Self::Saved, Facts);

    /// Attempt number `attempt` (2 for the first retry).
    #[doc(hidden)]
    fn replay(saved: &Self::Saved, attempt: u32) -> Result<Self::Attempt, SkipReason>;
}

/// How a kind of response records the attempt count. Implemented by [`Http`] and [`Generic`].
pub trait ResponseKind<Res>: sealed::Sealed {
    #[doc(hidden)]
    fn annotate(response: &mut Res, attempts: u32);
}

/// The saved head and body of an HTTP request.
#[doc(hidden)]
#[derive(Debug)]
pub struct SavedHttp<B> {
    parts: http::request::Parts,
    body: Result<ReplayBody<B>, Refusal>,
}

const IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");

fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl<B> RequestKind<http::Request<B>> for Http
where
    B: Body,
{
    type Attempt = http::Request<ReplayBody<B>>;
    type Saved = SavedHttp<B>;

    fn split(
        req: http::Request<B>,
        retry_any_method: bool,
        replay_cap: usize,
    ) -> (Self::Attempt, Self::Saved, Facts) {
        let (parts, body) = req.into_parts();
        let idempotent = retry_any_method
            || is_idempotent(&parts.method)
            || parts.headers.contains_key(IDEMPOTENCY_KEY);
        let deadline = http_deadline(&parts.extensions);
        let body = ReplayBody::new(body, replay_cap);
        let saved = SavedHttp {
            parts: parts.clone(),
            body: body.replay(),
        };
        (
            http::Request::from_parts(parts, body),
            saved,
            Facts {
                idempotent,
                deadline,
            },
        )
    }

    fn replay(saved: &Self::Saved, attempt: u32) -> Result<Self::Attempt, SkipReason> {
        let body = match &saved.body {
            Ok(body) => body.replay(),
            Err(refusal) => Err(*refusal),
        };
        match body {
            Ok(body) => {
                let mut request = http::Request::from_parts(saved.parts.clone(), body);
                // Retries only: the first attempt (the success path) allocates nothing for it.
                request.extensions_mut().insert(crate::Attempts(attempt));
                Ok(request)
            }
            Err(Refusal::TooLarge) => Err(SkipReason::BodyTooLarge),
            Err(Refusal::Failed) => Err(SkipReason::BodyError),
        }
    }
}

impl<B, T> RequestKind<http::Request<B>> for HttpAs<T>
where
    B: Body,
    T: From<ReplayBody<B>>,
{
    type Attempt = http::Request<T>;
    type Saved = SavedHttp<B>;

    fn split(
        req: http::Request<B>,
        retry_any_method: bool,
        replay_cap: usize,
    ) -> (Self::Attempt, Self::Saved, Facts) {
        let (attempt, saved, facts) = Http::split(req, retry_any_method, replay_cap);
        (attempt.map(T::from), saved, facts)
    }

    fn replay(saved: &Self::Saved, attempt: u32) -> Result<Self::Attempt, SkipReason> {
        Http::replay(saved, attempt).map(|request| request.map(T::from))
    }
}

impl<B, T> ResponseKind<http::Response<B>> for HttpAs<T> {
    fn annotate(response: &mut http::Response<B>, attempts: u32) {
        Http::annotate(response, attempts);
    }
}

impl<B> ResponseKind<http::Response<B>> for Http {
    fn annotate(response: &mut http::Response<B>, attempts: u32) {
        // Only retried responses get the extension: inserting one allocates, and the success
        // path should not. `Attempts::of` reads absence as 1.
        if attempts > 1 {
            response.extensions_mut().insert(crate::Attempts(attempts));
        }
    }
}

impl<Req: Clone> RequestKind<Req> for Generic {
    type Attempt = Req;
    type Saved = Req;

    fn split(req: Req, _: bool, _: usize) -> (Req, Req, Facts) {
        let facts = Facts {
            idempotent: true,
            deadline: task_deadline(),
        };
        (req.clone(), req, facts)
    }

    fn replay(saved: &Req, _: u32) -> Result<Req, SkipReason> {
        Ok(saved.clone())
    }
}

impl<Res> ResponseKind<Res> for Generic {
    fn annotate(_: &mut Res, _: u32) {}
}

#[cfg(feature = "deadline")]
fn http_deadline(extensions: &http::Extensions) -> Option<Instant> {
    tower_deadline::Deadline::effective(extensions).map(|d| d.instant())
}

#[cfg(not(feature = "deadline"))]
fn http_deadline(_: &http::Extensions) -> Option<Instant> {
    None
}

#[cfg(feature = "deadline")]
fn task_deadline() -> Option<Instant> {
    tower_deadline::Deadline::current().map(|d| d.instant())
}

#[cfg(not(feature = "deadline"))]
fn task_deadline() -> Option<Instant> {
    None
}

/// Time left until `deadline`, zero once passed.
pub(crate) fn left(deadline: Instant, now: Instant) -> Duration {
    deadline.saturating_duration_since(now)
}
