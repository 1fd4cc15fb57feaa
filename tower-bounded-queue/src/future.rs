//! The response futures: wait for a slot (if needed), then drive the inner service like tower's
//! `Oneshot` (`poll_ready`, then `call` on a clone of it), holding the slot until the inner
//! future completes or is dropped. With an adaptive limit, the request's clock starts when it
//! first drives the inner service and its outcome is reported as it completes (here, not on
//! admission), before the slot is freed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
#[cfg(feature = "deadline")]
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_reliability_core::{ErrorMode, HttpMode, Protocol, ResponseBody, answer};
use tower_service::Service;

use crate::BoxError;
use crate::adaptive::Sample;
use crate::admission::{Permit, Shared, Slow, WaitOutcome, Waiter};
use crate::error::{OverloadReason, Overloaded, QueueTimeout, Rejection};
use crate::metrics::Reason;

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Waiting {
            waiter: Waiter,
            // Boxed: only waiters pay for a timer, and only when a limit applies.
            timer: Option<Pin<Box<Sleep>>>,
            since: Instant,
            deadline: Option<Instant>,
        },
        Ready,
        Calling {
            #[pin]
            future: F,
        },
        Rejected {
            rejection: Option<Rejection>,
        },
        Done,
    }
}

pin_project! {
    /// The shared core of both response futures: its output separates the queue's own answers
    /// (`Err(Rejection)`) from the inner service's outcome, which passes through unchanged.
    pub(crate) struct Admit<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        service: Option<S>,
        request: Option<Req>,
        // Whether an outcome is a failure, for an adaptive limit.
        failed: fn(&Result<S::Response, S::Error>) -> bool,
        // An adaptive limit's sample, from the first drive of the inner service to completion.
        sample: Option<Sample>,
        // Declared after `state`, so the inner future is dropped before the slot is freed.
        permit: Option<Permit>,
    }

    impl<S, Req> PinnedDrop for Admit<S, Req>
    where
        S: Service<Req>,
    {
        fn drop(this: Pin<&mut Self>) {
            // Dropped inside the inner service: the caller gave up, or the inner service
            // panicked (a failure). Reported while the slot is still held, before the fields
            // (the inner future, then the permit) are dropped.
            let this = this.project();
            if let (Some(sample), Some(permit)) = (this.sample.take(), this.permit.as_ref()) {
                if std::thread::panicking() {
                    permit.finish(sample, true);
                } else {
                    permit.cancelled(sample);
                }
            }
        }
    }
}

/// The plain mode's notion of failure: the inner service's error.
pub(crate) fn is_err<T, E>(outcome: &Result<T, E>) -> bool {
    outcome.is_err()
}

impl<S, Req> Admit<S, Req>
where
    S: Service<Req> + Clone,
{
    /// Admission happens here, at `call` time, on counts alone. `deadline_of` and `key_of` (the
    /// fair-share key) are consulted only when the request cannot take a free slot at once,
    /// keeping the success path free of them; `failed` only when an adaptive limit observes the
    /// outcome.
    pub(crate) fn new(
        shared: &Arc<Shared>,
        service: &S,
        request: Req,
        deadline_of: fn(&Req) -> Option<Instant>,
        key_of: impl FnOnce(&Req) -> Option<u64>,
        failed: fn(&Result<S::Response, S::Error>) -> bool,
    ) -> Self {
        let with_state = |state, permit, request| Self {
            state,
            service: Some(service.clone()),
            request: Some(request),
            failed,
            sample: None,
            permit,
        };
        if let Some(permit) = shared.try_acquire() {
            return with_state(State::Ready, Some(permit), request);
        }
        let deadline = deadline_of(&request);
        #[cfg(feature = "deadline")]
        if let Some(deadline) = deadline {
            if deadline <= Instant::now() {
                // No time left to wait: answer at once instead of queueing.
                shared.rejected(Reason::Deadline);
                let error = tower_deadline::DeadlineExceeded::new(
                    tower_deadline::Stage::Queued,
                    Duration::ZERO,
                    Duration::ZERO,
                );
                return Self::rejected(Rejection::Deadline(error), request, failed);
            }
        }
        match shared.admit_or_queue(key_of(&request)) {
            Slow::Admitted(permit) => with_state(State::Ready, Some(permit), request),
            Slow::Rejected(error) => Self::rejected(Rejection::Overloaded(error), request, failed),
            Slow::Queued(waiter) => {
                let since = Instant::now();
                // An absurd maximum that overflows the clock means no limit, never a panic.
                let max_wait = shared
                    .config
                    .max_wait
                    .and_then(|max| since.checked_add(max));
                let wake_at = match (max_wait, deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let timer = wake_at.map(|at| Box::pin(tokio::time::sleep_until(at)));
                let state = State::Waiting {
                    waiter,
                    timer,
                    since,
                    deadline,
                };
                with_state(state, None, request)
            }
        }
    }

    fn rejected(
        rejection: Rejection,
        request: Req,
        failed: fn(&Result<S::Response, S::Error>) -> bool,
    ) -> Self {
        let state = State::Rejected {
            rejection: Some(rejection),
        };
        // The request is dropped at once: nothing of it is kept for a rejection.
        drop(request);
        Self {
            state,
            service: None,
            request: None,
            failed,
            sample: None,
            permit: None,
        }
    }
}

/// A waiter's way out without a slot.
fn left(shared: &Shared, since: Instant, deadline: Option<Instant>) -> Rejection {
    let now = Instant::now();
    #[cfg(feature = "deadline")]
    if let Some(deadline) = deadline {
        if deadline <= now {
            shared.rejected(Reason::Deadline);
            return Rejection::Deadline(tower_deadline::DeadlineExceeded::new(
                tower_deadline::Stage::Queued,
                deadline.saturating_duration_since(since),
                now.saturating_duration_since(since),
            ));
        }
    }
    #[cfg(not(feature = "deadline"))]
    let _ = deadline;
    shared.rejected(Reason::QueueTimeout);
    Rejection::Timeout(QueueTimeout::new(
        now.saturating_duration_since(since),
        shared.config.max_wait.unwrap_or_default(),
        shared.config.retry_after,
    ))
}

/// A waiter pushed out of a full queue: by a newer request (drop-oldest mode), or by a request
/// of a key under its fair share.
fn pushed_out(shared: &Shared, reason: OverloadReason) -> Rejection {
    let capacity = shared.config.capacity;
    Rejection::Overloaded(Overloaded::new(
        capacity,
        capacity,
        reason,
        shared.config.retry_after,
    ))
}

impl<S, Req> Future for Admit<S, Req>
where
    S: Service<Req>,
{
    type Output = Result<Result<S::Response, S::Error>, Rejection>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting {
                    waiter,
                    timer,
                    since,
                    deadline,
                } => {
                    let mut outcome = waiter.poll(cx);
                    if matches!(outcome, WaitOutcome::Pending) {
                        let fired = timer
                            .as_mut()
                            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                        if !fired {
                            return Poll::Pending;
                        }
                        outcome = waiter.leave();
                    }
                    let shared = Arc::clone(waiter.shared());
                    match outcome {
                        WaitOutcome::Granted(permit) => {
                            shared.admitted_after_wait(since.elapsed());
                            *this.permit = Some(permit);
                            this.state.set(State::Ready);
                        }
                        WaitOutcome::Dropped | WaitOutcome::Evicted => {
                            let reason = if matches!(outcome, WaitOutcome::Evicted) {
                                OverloadReason::FairShare
                            } else {
                                OverloadReason::DroppedOldest
                            };
                            let rejection = pushed_out(&shared, reason);
                            this.state.set(State::Done);
                            *this.service = None;
                            *this.request = None;
                            return Poll::Ready(Err(rejection));
                        }
                        WaitOutcome::Left => {
                            let rejection = left(&shared, *since, *deadline);
                            this.state.set(State::Done);
                            *this.service = None;
                            *this.request = None;
                            return Poll::Ready(Err(rejection));
                        }
                        WaitOutcome::Pending => return Poll::Pending,
                    }
                }
                StateProj::Ready => {
                    if this.sample.is_none() {
                        *this.sample = this.permit.as_ref().and_then(Permit::start);
                    }
                    let service = this
                        .service
                        .as_mut()
                        .expect("service is present until called");
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        this.state.set(State::Done);
                        *this.service = None;
                        if let (Some(sample), Some(permit)) =
                            (this.sample.take(), this.permit.as_ref())
                        {
                            permit.finish(sample, true);
                        }
                        *this.permit = None;
                        return Poll::Ready(Ok(Err(error)));
                    }
                    let request = this
                        .request
                        .take()
                        .expect("request is present until called");
                    let future = service.call(request);
                    *this.service = None;
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let output = ready!(future.poll(cx));
                    this.state.set(State::Done);
                    if let (Some(sample), Some(permit)) = (this.sample.take(), this.permit.as_ref())
                    {
                        permit.finish(sample, (this.failed)(&output));
                    }
                    *this.permit = None;
                    return Poll::Ready(Ok(output));
                }
                StateProj::Rejected { rejection } => {
                    let rejection = rejection.take().expect("polled after completion");
                    this.state.set(State::Done);
                    return Poll::Ready(Err(rejection));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// What a response future keeps besides its admission, by mode: nothing in [`ErrorMode`] (its
/// success path stays as small as the queue without modes), the request's protocol and the
/// status header to add in [`HttpMode`]. Sealed.
pub trait QueueMode: sealed::Sealed {
    /// The mode's part of the response future.
    #[doc(hidden)]
    type Answer;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for tower_reliability_core::ErrorMode {}
    impl Sealed for tower_reliability_core::HttpMode {}
}

impl QueueMode for ErrorMode {
    type Answer = ();
}

impl QueueMode for HttpMode {
    type Answer = HttpAnswer;
}

/// HTTP mode's part of a response future: how to answer a rejection, and the status header.
#[doc(hidden)]
pub struct HttpAnswer {
    pub(crate) protocol: Protocol,
    pub(crate) status: Option<(HeaderName, Arc<Shared>)>,
}

pin_project! {
    /// Response future of [`BoundedQueue`](crate::BoundedQueue).
    ///
    /// In [`ErrorMode`] it resolves to the inner service's response, the inner error (boxed,
    /// unchanged), or one of the queue's errors: [`Overloaded`], [`QueueTimeout`] or, with the
    /// `deadline` feature, `tower_deadline::DeadlineExceeded`. In [`HttpMode`] the queue's
    /// errors are answered instead.
    pub struct ResponseFuture<S, Req, M = ErrorMode>
    where
        S: Service<Req>,
        M: QueueMode,
    {
        #[pin]
        inner: Admit<S, Req>,
        answer: M::Answer,
    }
}

impl<S, Req, M> ResponseFuture<S, Req, M>
where
    S: Service<Req>,
    M: QueueMode,
{
    pub(crate) fn new(inner: Admit<S, Req>, answer: M::Answer) -> Self {
        Self { inner, answer }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req, ErrorMode>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match ready!(self.project().inner.poll(cx)) {
            Ok(Ok(response)) => Poll::Ready(Ok(response)),
            Ok(Err(error)) => Poll::Ready(Err(error.into())),
            Err(rejection) => Poll::Ready(Err(rejection.into_box())),
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, Request<ReqBody>, HttpMode>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match ready!(this.inner.poll(cx)) {
            Ok(Ok(response)) => response.map(ResponseBody::inner),
            Ok(Err(error)) => return Poll::Ready(Err(error)),
            Err(rejection) => answer(rejection.as_answer(), this.answer.protocol),
        };
        if let Some((name, shared)) = this.answer.status.as_ref() {
            response.headers_mut().insert(
                name.clone(),
                HeaderValue::from_static(shared.status().as_str()),
            );
        }
        Poll::Ready(Ok(response))
    }
}

impl<S, Req, M> std::fmt::Debug for ResponseFuture<S, Req, M>
where
    S: Service<Req>,
    M: QueueMode,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HttpAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAnswer")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}
