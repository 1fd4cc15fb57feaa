//! [`ResponseFuture`]: one call, through its attempts and backoff sleeps.
//!
//! Retry decisions are made on the outcome of an attempt: the response head (or the error).
//! Once a response is returned to the caller its body streams straight through; nothing is
//! retried after that, so a caller never sees a response whose body was restarted.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::BoxError;
use crate::classify::{Classification, Classify};
use crate::config::Config;
use crate::error::AttemptTimeout;
use crate::kind::{Facts, RequestKind, ResponseKind, left};
use crate::metrics::SkipReason;
use crate::trace;

pin_project! {
    /// The future returned by [`Retry`](crate::Retry).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, C, K, Req>
    where
        S: Service<K::Attempt>,
        K: RequestKind<Req>,
    {
        #[pin]
        state: State<S::Future, K::Attempt>,
        service: S,
        saved: K::Saved,
        config: Arc<Config<C>>,
        facts: Facts,
        start: Instant,
        // Attempts sent so far.
        attempts: u32,
        previous_delay: Duration,
    }
}

pin_project! {
    // The next request lives inside the states that need it, so the future stays small.
    #[project = StateProj]
    enum State<F, R> {
        // An attempt is in flight, with its per-attempt timeout if one is set (boxed: the
        // timeout is opt-in, and an inline `Sleep` would make every future 112 bytes larger).
        Calling { #[pin] future: F, timeout: Option<Pin<Box<Sleep>>> },
        // Sleeping before the next attempt. Boxed: only the retry path pays for the space.
        Backoff { sleep: Pin<Box<Sleep>>, request: Option<Box<R>> },
        // Waiting for the inner service to be ready for the next attempt.
        Ready { request: Option<Box<R>> },
    }
}

enum Decision<R> {
    Return,
    Retry(Duration, R),
}

impl<S, C, K, Req> ResponseFuture<S, C, K, Req>
where
    S: Service<K::Attempt>,
    K: RequestKind<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        saved: K::Saved,
        config: Arc<Config<C>>,
        facts: Facts,
        start: Instant,
    ) -> Self {
        let timeout = attempt_timer(&config, start);
        Self {
            state: State::Calling { future, timeout },
            service,
            saved,
            config,
            facts,
            start,
            attempts: 1,
            previous_delay: Duration::ZERO,
        }
    }
}

impl<S, C, K, Req> Future for ResponseFuture<S, C, K, Req>
where
    K: RequestKind<Req> + ResponseKind<S::Response>,
    S: Service<K::Attempt>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future, timeout } => {
                    let outcome = match future.poll(cx) {
                        Poll::Ready(result) => result.map_err(Into::into),
                        Poll::Pending => match timeout.as_mut() {
                            Some(timer) => {
                                ready!(timer.as_mut().poll(cx));
                                let limit = this.config.attempt_timeout.unwrap_or_default();
                                Err(AttemptTimeout::new(limit, *this.attempts).into())
                            }
                            None => return Poll::Pending,
                        },
                    };
                    let config = &**this.config;
                    let class = config.classifier.classify(outcome.as_ref());
                    let reason = class.reason();
                    config
                        .instruments
                        .attempt(matches!(class, Classification::Success), reason);
                    let decision = decide::<K, Req, C>(
                        class,
                        config,
                        this.facts,
                        *this.start,
                        *this.attempts,
                        *this.previous_delay,
                        this.saved,
                    );
                    match decision {
                        Decision::Return => {
                            let attempts = *this.attempts;
                            return Poll::Ready(outcome.map(|mut response| {
                                K::annotate(&mut response, attempts);
                                response
                            }));
                        }
                        Decision::Retry(delay, request) => {
                            // The failed outcome is dropped here: a retry is certain to be sent.
                            drop(outcome);
                            *this.previous_delay = delay;
                            config.instruments.retried(reason, delay);
                            let request = Some(Box::new(request));
                            if delay.is_zero() {
                                this.state.set(State::Ready { request });
                            } else {
                                let sleep = Box::pin(tokio::time::sleep(delay));
                                this.state.set(State::Backoff { sleep, request });
                            }
                        }
                    }
                }
                StateProj::Backoff { sleep, request } => {
                    ready!(sleep.as_mut().poll(cx));
                    let request = request.take();
                    this.state.set(State::Ready { request });
                }
                StateProj::Ready { request } => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        // The inner service itself failed: a real error, returned as is.
                        return Poll::Ready(Err(e.into()));
                    }
                    let Some(request) = request.take() else {
                        // Only reachable by polling again after a panic in `call`.
                        return Poll::Ready(Err("retry request missing".into()));
                    };
                    *this.attempts += 1;
                    let timeout = attempt_timer(this.config, Instant::now());
                    let future = this.service.call(*request);
                    this.state.set(State::Calling { future, timeout });
                }
            }
        }
    }
}

/// The timer cutting an attempt sent at `sent`, if a per-attempt timeout is set; clamped to the
/// total retry time (which may have been set after the timeout).
fn attempt_timer<C>(config: &Config<C>, sent: Instant) -> Option<Pin<Box<Sleep>>> {
    config
        .attempt_timeout
        .map(|t| Box::pin(tokio::time::sleep_until(sent + t.min(config.max_total))))
}

#[allow(clippy::too_many_arguments)]
fn decide<K, Req, C>(
    class: Classification,
    config: &Config<C>,
    facts: &Facts,
    start: Instant,
    attempts: u32,
    previous_delay: Duration,
    saved: &K::Saved,
) -> Decision<K::Attempt>
where
    K: RequestKind<Req>,
{
    let skip = |why: SkipReason| {
        config.instruments.skipped(why);
        trace::not_retried(attempts, class.reason(), why);
        Decision::Return
    };
    let (reason, hint) = match class {
        Classification::Success => return Decision::Return,
        Classification::Permanent { .. } => return skip(SkipReason::Permanent),
        Classification::Retryable { reason, after } => (reason, after),
    };
    if !facts.idempotent && !reason.is_not_processed() {
        return skip(SkipReason::NonIdempotent);
    }
    let retries_done = attempts - 1;
    if retries_done >= config.max_retries {
        return skip(SkipReason::MaxRetries);
    }
    let delay = match hint {
        Some(hint) => hint.min(config.max_hint),
        None => config.backoff.delay(retries_done, previous_delay),
    };
    // Contract: no sleep may end past the total cap or the deadline; the caller then gets this
    // real outcome instead.
    let now = Instant::now();
    let total_left = config
        .max_total
        .saturating_sub(now.saturating_duration_since(start));
    if delay >= total_left {
        return skip(SkipReason::TotalCap);
    }
    if let Some(deadline) = facts.deadline {
        if delay >= left(deadline, now) {
            return skip(SkipReason::Deadline);
        }
    }
    let request = match K::replay(saved, attempts + 1) {
        Ok(request) => request,
        Err(reason) => return skip(reason),
    };
    if let Some(budget) = &config.budget {
        if !budget.withdraw() {
            return skip(SkipReason::Budget);
        }
    }
    trace::scheduled(
        attempts,
        reason,
        delay,
        hint.is_some(),
        config.budget.as_ref(),
    );
    Decision::Retry(delay, request)
}

impl<S, C, K, Req> fmt::Debug for ResponseFuture<S, C, K, Req>
where
    S: Service<K::Attempt>,
    K: RequestKind<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}
