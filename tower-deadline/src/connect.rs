//! Bounding connect time for any `tower::Service<Uri>` connector (hyper-util's `HttpConnector`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use crate::{BoxError, ConnectTimeout, Deadline, DeadlineExceeded, Stage};

/// The default connect budget: a healthy upstream on a LAN connects in milliseconds, one
/// across a region in tens; 5 s leaves room for a SYN retransmit (1 s, then 3 s).
pub const DEFAULT_CONNECT_BUDGET: Duration = Duration::from_secs(5);

/// Wraps a connector so that each connect takes at most min(connect budget, current deadline).
///
/// When the connect budget is what ran out, the error is [`ConnectTimeout`] (nothing was sent, so
/// a retry may help); when the request's deadline is, it is [`DeadlineExceeded`].
///
/// ```
/// use hyper_util::client::legacy::{Client, connect::HttpConnector};
/// use hyper_util::rt::TokioExecutor;
/// use std::time::Duration;
/// use tower_deadline::ConnectDeadline;
///
/// let connector = ConnectDeadline::new(HttpConnector::new()).budget(Duration::from_secs(2));
/// let client: Client<_, String> = Client::builder(TokioExecutor::new()).build(connector);
/// ```
#[derive(Clone, Debug)]
pub struct ConnectDeadline<C> {
    inner: C,
    budget: Duration,
}

impl<C> ConnectDeadline<C> {
    /// Wraps `inner` with the default 5 s connect budget.
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            budget: DEFAULT_CONNECT_BUDGET,
        }
    }

    /// The connect budget (default 5 s), clamped to at least [`MIN_CONNECT_BUDGET`] (1 ms).
    pub fn budget(mut self, budget: Duration) -> Self {
        self.budget = usable_budget(budget);
        self
    }
}

/// The smallest connect budget taken; smaller ones (zero included, which would fail every
/// connect) are raised to it, like every setting of the family is clamped to its bounds.
pub const MIN_CONNECT_BUDGET: Duration = Duration::from_millis(1);

fn usable_budget(budget: Duration) -> Duration {
    budget.max(MIN_CONNECT_BUDGET)
}

/// Layer form of [`ConnectDeadline`].
#[derive(Clone, Debug)]
pub struct ConnectDeadlineLayer {
    budget: Duration,
}

impl ConnectDeadlineLayer {
    /// A layer applying `budget` (clamped to at least [`MIN_CONNECT_BUDGET`]) to every connect.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget: usable_budget(budget),
        }
    }
}

impl<C> Layer<C> for ConnectDeadlineLayer {
    type Service = ConnectDeadline<C>;

    fn layer(&self, inner: C) -> Self::Service {
        ConnectDeadline {
            inner,
            budget: self.budget,
        }
    }
}

impl<C> Service<Uri> for ConnectDeadline<C>
where
    C: Service<Uri>,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = ConnectFuture<C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let start = Instant::now();
        let own = Deadline::after_from(start, self.budget);
        let (deadline, limit) = match Deadline::current() {
            Some(request) if request < own => (request, Limit::Request),
            _ => (own, Limit::Connect(self.budget)),
        };
        ConnectFuture {
            inner: self.inner.call(uri),
            // Connects never finish on their first poll, so the timer is armed right away; boxed
            // so the future stays `Unpin`, which hyper-util's `Connect` requires.
            sleep: Box::pin(tokio::time::sleep_until(deadline.instant())),
            start,
            limit,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Limit {
    Connect(Duration),
    Request,
}

pin_project_lite::pin_project! {
    /// Response future of [`ConnectDeadline`]; `Unpin` whenever the connector's future is.
    #[must_use = "futures do nothing unless polled"]
    pub struct ConnectFuture<F> {
        #[pin]
        inner: F,
        sleep: Pin<Box<Sleep>>,
        start: Instant,
        limit: Limit,
    }
}

impl<F, T, E> Future for ConnectFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        if this.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let elapsed = this.start.elapsed();
        Poll::Ready(Err(match *this.limit {
            Limit::Connect(budget) => Box::new(ConnectTimeout::new(budget)),
            Limit::Request => {
                let budget = this.sleep.deadline().saturating_duration_since(*this.start);
                Box::new(DeadlineExceeded::new(Stage::Outgoing, budget, elapsed))
            }
        }))
    }
}

impl<F> std::fmt::Debug for ConnectFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectFuture")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}
