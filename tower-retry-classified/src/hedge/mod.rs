//! [`HedgeLayer`]: when an attempt takes longer than most do, sends the same request once more
//! and takes whichever answers first, cutting the tail latency a slow replica or a lost packet
//! adds.
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_retry_classified::RetryBudget;
//! use tower_retry_classified::hedge::HedgeBuilder;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let budget = RetryBudget::default(); // give the retry layer the same one
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let counted = calls.clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(HedgeBuilder::for_http().delay(Duration::from_millis(50)).budget(budget).build())
//!     .service(service_fn(move |_: http::Request<tower_retry_classified::ReplayBody<String>>| {
//!         // The first call is stuck for a second; the second answers at once.
//!         let slow = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
//!         async move {
//!             if slow {
//!                 tokio::time::sleep(Duration::from_secs(1)).await;
//!             }
//!             Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
//!         }
//!     }));
//! let started = tokio::time::Instant::now();
//! let request = http::Request::get("http://upstream/").body(String::new()).unwrap();
//! let answer = svc.ready().await.unwrap().call(request).await.unwrap();
//! assert_eq!(answer.status(), 200);
//! assert_eq!(started.elapsed(), Duration::from_millis(50), "the hedge answered");
//! # }
//! ```

mod future;
mod latency;
mod metrics;

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry::metrics::Meter;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

pub use future::ResponseFuture;

use crate::BoxError;
use crate::budget::RetryBudget;
use crate::classify::{Classify, HttpClassifier};
use crate::config::DEFAULT_REPLAY_CAP;
use crate::kind::{Generic, Http, RequestKind};
use latency::Latencies;
use metrics::HedgeInstruments;

/// The delay before the hedge when too few latencies were seen to know the percentile.
pub const DEFAULT_HEDGE_DELAY: Duration = Duration::from_millis(100);

/// The latency percentile after which a request is hedged by default: one request in twenty
/// may be hedged, which keeps the extra load near 5%.
const DEFAULT_PERCENTILE: f64 = 0.95;

pub(crate) struct HedgeConfig<C> {
    classifier: C,
    fixed: Option<Duration>,
    fallback: Duration,
    min_delay: Duration,
    latencies: Latencies,
    budget: Option<RetryBudget>,
    deposit: bool,
    replay_cap: usize,
    instruments: HedgeInstruments,
}

impl<C> HedgeConfig<C> {
    /// How long the first attempt runs alone.
    fn delay(&self) -> Duration {
        match self.fixed {
            Some(delay) => delay,
            None => self
                .latencies
                .current()
                .map_or(self.fallback, |p| p.max(self.min_delay)),
        }
    }
}

/// Settings of a [`HedgeLayer`]; [`build`](Self::build) creates its shared state (the latency
/// histogram the delay is read from, the instruments), once.
///
/// Every setter follows the family's one rule: out-of-range values are clamped to the
/// documented bounds, never rejected later, never ignored.
///
/// ```
/// use std::time::Duration;
/// use tower_retry_classified::RetryBudget;
/// use tower_retry_classified::hedge::HedgeBuilder;
///
/// let budget = RetryBudget::default(); // give the retry layer the same one
/// let layer = HedgeBuilder::for_http()
///     .percentile(0.9, Duration::from_millis(5))
///     .budget(budget)
///     .build();
/// # let _ = layer;
/// ```
pub struct HedgeBuilder<C = HttpClassifier, K = Http> {
    classifier: C,
    fixed: Option<Duration>,
    min_delay: Duration,
    percentile: f64,
    budget: Option<RetryBudget>,
    deposit: bool,
    meter: Option<Meter>,
    _kind: PhantomData<fn() -> K>,
}

impl HedgeBuilder<HttpClassifier, Http> {
    /// Hedging for HTTP (and gRPC over HTTP) clients with the built-in classifier.
    pub fn for_http() -> Self {
        Self::with(HttpClassifier::new())
    }
}

impl<C> HedgeBuilder<C, Generic> {
    /// Hedging of any `Clone` request, `classifier` deciding which answers are final.
    pub fn new(classifier: C) -> Self {
        Self::with(classifier)
    }
}

impl<C, K> HedgeBuilder<C, K> {
    fn with(classifier: C) -> Self {
        Self {
            classifier,
            fixed: None,
            min_delay: Duration::from_millis(1),
            percentile: DEFAULT_PERCENTILE,
            budget: None,
            deposit: false,
            meter: None,
            _kind: PhantomData,
        }
    }

    /// A fixed delay before the hedge instead of the observed percentile (clamped to at least
    /// 1 ms).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.fixed = Some(delay.max(Duration::from_millis(1)));
        self
    }

    /// Hedge after this percentile of observed latencies (default 0.95; clamped to 0.5..0.999,
    /// NaN means the default), at least `min` (default 1 ms). Replaces a fixed
    /// [`delay`](Self::delay).
    pub fn percentile(mut self, percentile: f64, min: Duration) -> Self {
        self.percentile = if percentile.is_nan() {
            DEFAULT_PERCENTILE
        } else {
            percentile.clamp(0.5, 0.999)
        };
        self.fixed = None;
        self.min_delay = min;
        self
    }

    /// Each hedge withdraws from `budget` (the one the retry layer deposits into: pass a clone
    /// of the same budget). No budget: every eligible request may be hedged.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self.deposit = false;
        self
    }

    /// Like [`budget`](Self::budget), for a budget no retry layer uses: this layer also
    /// deposits one per request into it.
    pub fn own_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self.deposit = true;
        self
    }

    /// Records on `meter` instead of the global meter `tower-retry-classified`.
    pub fn meter(mut self, meter: &Meter) -> Self {
        self.meter = Some(meter.clone());
        self
    }

    /// Creates the layer's shared state: the one place it is made. Every service the layer
    /// builds, and every clone of the layer, shares it.
    pub fn build(self) -> HedgeLayer<C, K> {
        HedgeLayer {
            config: Arc::new(HedgeConfig {
                classifier: self.classifier,
                fixed: self.fixed,
                fallback: DEFAULT_HEDGE_DELAY,
                min_delay: self.min_delay,
                latencies: Latencies::new(self.percentile),
                budget: self.budget,
                deposit: self.deposit,
                replay_cap: DEFAULT_REPLAY_CAP,
                instruments: HedgeInstruments::new(self.meter.as_ref()),
            }),
            _kind: PhantomData,
        }
    }
}

impl<C, K> std::fmt::Debug for HedgeBuilder<C, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HedgeBuilder")
            .field("fixed", &self.fixed)
            .field("percentile", &self.percentile)
            .field("budget", &self.budget.is_some())
            .finish_non_exhaustive()
    }
}

/// Sends a second attempt of an idempotent request when the first takes longer than the
/// observed p95 latency (or a fixed delay), returns the first final answer and drops the other
/// attempt. A retryable failure of one attempt waits for the other.
///
/// - Only idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE, TRACE, or any with an
///   `Idempotency-Key`; every request of [`HedgeLayer::new`]) are hedged.
/// - Each hedge withdraws from a [`RetryBudget`] when one is given: give it the budget your
///   [`RetryLayer`](crate::RetryLayer) uses, and hedges and retries together stay within it.
/// - Never past the deadline: no hedge when the request's deadline would pass before the delay.
/// - The delay: [`HedgeBuilder::delay`] fixes it; by default it is the observed 95th percentile
///   of this layer's attempt latencies (at least 1 ms), [`DEFAULT_HEDGE_DELAY`] until 128
///   latencies were seen.
///
/// Settings live on [`HedgeBuilder`]; the layer and its clones share one latency histogram.
///
/// Instruments: `tower.hedge.sent`, `tower.hedge.won` (the hedge answered first; the first
/// attempt was dropped), `tower.hedge.lost` (the first attempt answered first; the hedge was
/// dropped), `tower.hedge.refused` (the budget said no).
pub struct HedgeLayer<C = HttpClassifier, K = Http> {
    config: Arc<HedgeConfig<C>>,
    _kind: PhantomData<fn() -> K>,
}

impl HedgeLayer<HttpClassifier, Http> {
    /// Hedging for HTTP (and gRPC over HTTP) clients with every default (see
    /// [`HedgeBuilder::for_http`]).
    pub fn for_http() -> Self {
        HedgeBuilder::for_http().build()
    }
}

impl<C> HedgeLayer<C, Generic> {
    /// Hedging of any `Clone` request with every default, `classifier` deciding which answers
    /// are final (see [`HedgeBuilder::new`]).
    pub fn new(classifier: C) -> Self {
        HedgeBuilder::new(classifier).build()
    }
}

impl<C, K> Clone for HedgeLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            _kind: PhantomData,
        }
    }
}

impl<C, K> std::fmt::Debug for HedgeLayer<C, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("delay", &self.config.delay())
            .finish_non_exhaustive()
    }
}

impl<S, C, K> Layer<S> for HedgeLayer<C, K> {
    type Service = Hedge<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge {
            inner,
            config: Arc::clone(&self.config),
            _kind: PhantomData,
        }
    }
}

/// A hedging service; see [`HedgeLayer`].
pub struct Hedge<S, C, K> {
    inner: S,
    config: Arc<HedgeConfig<C>>,
    _kind: PhantomData<fn() -> K>,
}

impl<S: Clone, C, K> Clone for Hedge<S, C, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            _kind: PhantomData,
        }
    }
}

impl<S, C, K> std::fmt::Debug for Hedge<S, C, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hedge").finish_non_exhaustive()
    }
}

impl<S, C, K, Req> Service<Req> for Hedge<S, C, K>
where
    K: RequestKind<Req>,
    S: Service<K::Attempt> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, C, K, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let started = Instant::now();
        if self.config.deposit {
            if let Some(budget) = &self.config.budget {
                budget.deposit_at(started);
            }
        }
        let (attempt, saved, facts) = K::split(request, false, self.config.replay_cap);
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let primary = ready.call(attempt);
        ResponseFuture::new(
            primary,
            ready,
            saved,
            facts,
            Arc::clone(&self.config),
            started,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_clamped_whatever_their_order() {
        let nan = HedgeBuilder::for_http().percentile(f64::NAN, Duration::ZERO);
        assert_eq!(nan.percentile, DEFAULT_PERCENTILE);
        assert_eq!(
            HedgeBuilder::for_http()
                .percentile(2.0, Duration::ZERO)
                .percentile,
            0.999
        );
        assert_eq!(
            HedgeBuilder::for_http()
                .percentile(0.1, Duration::ZERO)
                .percentile,
            0.5
        );
        let zero = HedgeBuilder::for_http().delay(Duration::ZERO);
        assert_eq!(zero.fixed, Some(Duration::from_millis(1)));
        // A percentile set after a fixed delay replaces it, and the other way round.
        let later = HedgeBuilder::for_http()
            .delay(Duration::from_millis(50))
            .percentile(0.9, Duration::ZERO);
        assert_eq!(later.fixed, None);
        let fixed = HedgeBuilder::for_http()
            .percentile(0.9, Duration::ZERO)
            .delay(Duration::from_millis(50));
        assert_eq!(fixed.build().config.delay(), Duration::from_millis(50));
    }

    #[test]
    fn clones_of_a_layer_share_one_state_and_each_build_makes_one() {
        let builder = HedgeBuilder::for_http();
        let layer = builder.build();
        let clone = layer.clone();
        assert!(Arc::ptr_eq(&layer.config, &clone.config));
        assert!(!Arc::ptr_eq(
            &layer.config,
            &HedgeBuilder::for_http().build().config
        ));
    }
}
