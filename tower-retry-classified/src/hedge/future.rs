//! [`ResponseFuture`]: the first attempt, and after the hedge delay a second one; the first final
//! answer wins and the other attempt is dropped (cancelled).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::HedgeConfig;
use crate::BoxError;
use crate::classify::{Classification, Classify};
use crate::kind::{Facts, RequestKind, left};

pin_project! {
    /// The response future of [`Hedge`](super::Hedge).
    pub struct ResponseFuture<S, C, K, Req>
    where
        S: Service<K::Attempt>,
        K: RequestKind<Req>,
    {
        #[pin]
        primary: S::Future,
        primary_done: bool,
        // Allocated only for the requests that are hedged.
        hedge: Option<Pin<Box<S::Future>>>,
        #[pin]
        timer: Sleep,
        // Still waiting for the delay to decide on a hedge.
        armed: bool,
        // The delay passed and a hedge is to be sent once the service is ready.
        sending: bool,
        // A retryable failure of one attempt while the other still runs.
        failed: Option<Result<S::Response, BoxError>>,
        service: S,
        saved: K::Saved,
        config: Arc<HedgeConfig<C>>,
        started: Instant,
        hedge_started: Option<Instant>,
    }
}

impl<S, C, K, Req> ResponseFuture<S, C, K, Req>
where
    S: Service<K::Attempt>,
    K: RequestKind<Req>,
{
    pub(crate) fn new(
        primary: S::Future,
        service: S,
        saved: K::Saved,
        facts: Facts,
        config: Arc<HedgeConfig<C>>,
        started: Instant,
    ) -> Self {
        let delay = config.delay();
        // Only idempotent requests are sent twice, and never a hedge that would start past the
        // deadline.
        let armed = facts.idempotent && facts.deadline.is_none_or(|d| delay < left(d, started));
        Self {
            primary,
            primary_done: false,
            hedge: None,
            timer: tokio::time::sleep_until(started + delay),
            armed,
            sending: false,
            failed: None,
            service,
            saved,
            config,
            started,
            hedge_started: None,
        }
    }
}

impl<S, C, K, Req> Future for ResponseFuture<S, C, K, Req>
where
    S: Service<K::Attempt>,
    S::Error: Into<BoxError>,
    K: RequestKind<Req>,
    C: Classify<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if !*this.primary_done {
                if let Poll::Ready(outcome) = this.primary.as_mut().poll(cx) {
                    *this.primary_done = true;
                    *this.armed = false;
                    *this.sending = false;
                    let outcome = outcome.map_err(Into::into);
                    this.config.latencies.record(this.started.elapsed());
                    if is_final(&this.config.classifier, &outcome) || this.hedge.is_none() {
                        if this.hedge.is_some() {
                            this.config.instruments.lost();
                        }
                        return Poll::Ready(outcome);
                    }
                    *this.failed = Some(outcome);
                }
            }
            if let Some(hedge) = this.hedge.as_mut() {
                if let Poll::Ready(outcome) = hedge.as_mut().poll(cx) {
                    *this.hedge = None;
                    let outcome = outcome.map_err(Into::into);
                    if let Some(at) = this.hedge_started {
                        this.config.latencies.record(at.elapsed());
                    }
                    if is_final(&this.config.classifier, &outcome) || *this.primary_done {
                        if !*this.primary_done {
                            // The primary is dropped with this future: cancelled.
                            this.config.instruments.won();
                        }
                        return Poll::Ready(outcome);
                    }
                    *this.failed = Some(outcome);
                }
            }
            if *this.primary_done && this.hedge.is_none() {
                // Both ended in retryable failures: the last one is the answer.
                return Poll::Ready(
                    this.failed
                        .take()
                        .unwrap_or_else(|| Err("hedge future polled after completion".into())),
                );
            }
            if *this.armed && this.timer.as_mut().poll(cx).is_ready() {
                *this.armed = false;
                *this.sending = this
                    .config
                    .budget
                    .as_ref()
                    .is_none_or(|budget| budget.withdraw());
                if !*this.sending {
                    this.config.instruments.refused_by_budget();
                }
            }
            if *this.sending {
                match this.service.poll_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(_)) => *this.sending = false,
                    Poll::Ready(Ok(())) => {
                        *this.sending = false;
                        if let Ok(attempt) = K::replay(this.saved, 2) {
                            *this.hedge_started = Some(Instant::now());
                            *this.hedge = Some(Box::pin(this.service.call(attempt)));
                            this.config.instruments.sent();
                            continue;
                        }
                    }
                }
            }
            return Poll::Pending;
        }
    }
}

/// A final answer ends the call; a retryable failure waits for the other attempt.
fn is_final<C: Classify<Res>, Res>(classifier: &C, outcome: &Result<Res, BoxError>) -> bool {
    !matches!(
        classifier.classify(outcome.as_ref()),
        Classification::Retryable { .. }
    )
}
