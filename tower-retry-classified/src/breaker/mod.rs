//! [`CircuitBreakerLayer`]: stops calling a dependency that keeps failing, so that it gets time
//! to recover and callers get an answer at once instead of a slow failure.
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_retry_classified::{CircuitBreakerLayer, CircuitOpen, CircuitState};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = CircuitBreakerLayer::http()
//!     .failure_ratio(0.5)
//!     .min_volume(4)
//!     .open_time(Duration::from_secs(5), Duration::from_secs(60));
//! let handle = breaker.handle();
//! let mut svc = ServiceBuilder::new().layer(breaker).service(service_fn(|_: ()| async {
//!     Ok::<_, std::convert::Infallible>(
//!         http::Response::builder().status(503).body(String::new()).unwrap(),
//!     )
//! }));
//! for _ in 0..4 {
//!     let answer = svc.ready().await.unwrap().call(()).await.unwrap();
//!     assert_eq!(answer.status(), 503);
//! }
//! assert_eq!(handle.state(), CircuitState::Open);
//! // Refused at once now: 503 with the time left, marked so that retry layers leave it alone.
//! let answer = svc.ready().await.unwrap().call(()).await.unwrap();
//! assert_eq!(answer.headers()["retry-after"], "5");
//! assert_eq!(answer.headers()["x-overloaded"], "true");
//! # }
//! ```
//!
//! It shares the retry layer's classifier: only what a retry could fix (connect errors,
//! resets, 5xx, 429, gRPC UNAVAILABLE) counts as a failure; a 4xx is the caller's and never
//! opens the breaker.

mod config;
mod service;
mod shared;
mod state;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::Meter;
use tower_layer::Layer;

pub use service::{BreakerFuture, CircuitBreaker, ErrorMode, HttpMode};
pub use shared::CircuitHandle;
pub use state::CircuitState;

use crate::classify::HttpClassifier;
use config::BreakerConfig;
use shared::Shared;

/// Opens on the share of retryable failures over a sliding window, refuses calls at once while
/// open, lets a few probes through after the open time, and closes when they succeed.
///
/// - **Closed**: calls go through. Outcomes are counted over the last `window` (default 10 s).
///   Once at least `min_volume` calls (default 20) were seen and the share of retryable failures
///   reaches `failure_ratio` (default 0.5), the breaker opens.
/// - **Open**: calls are refused with [`CircuitOpen`](crate::CircuitOpen) (HTTP mode: 503 +
///   `Retry-After` with the time left + `x-overloaded`). After the open time (default 5 s,
///   doubled for each trip since the last recovery, at most 60 s) it half-opens.
/// - **Half-open**: `probes` calls (default 3) go through; if all succeed the breaker closes
///   (and the open time resets), if one fails it opens again for twice as long.
///
/// All services made by one layer, and their clones, share one breaker: one layer per
/// dependency (the gateway builds one per provider). [`handle`](Self::handle) reads its
/// state. Instruments: `tower.circuit.state` (gauge: 0 closed, 1 half-open, 2 open) and
/// `tower.circuit.transitions` (`from`, `to`), with `tower.circuit.name`.
pub struct CircuitBreakerLayer<C = HttpClassifier, M = ErrorMode> {
    classifier: C,
    config: BreakerConfig,
    name: Cow<'static, str>,
    meter: Option<Meter>,
    /// Made on first use, so that settings given after `new` apply; then shared.
    shared: Arc<std::sync::OnceLock<Arc<Shared>>>,
    _mode: PhantomData<fn() -> M>,
}

impl CircuitBreakerLayer<HttpClassifier, ErrorMode> {
    /// A breaker for HTTP clients that fails refused calls with
    /// [`CircuitOpen`](crate::CircuitOpen) (the built-in [`HttpClassifier`] decides what a
    /// failure is).
    pub fn new() -> Self {
        Self::with_classifier(HttpClassifier::new())
    }
}

impl Default for CircuitBreakerLayer<HttpClassifier, ErrorMode> {
    fn default() -> Self {
        Self::new()
    }
}

impl CircuitBreakerLayer<HttpClassifier, HttpMode> {
    /// A breaker for HTTP services that answers refused calls itself (503 + `Retry-After`).
    pub fn http() -> Self {
        CircuitBreakerLayer::new().into_mode()
    }
}

impl<C> CircuitBreakerLayer<C, ErrorMode> {
    /// A breaker whose `classifier` decides what a failure is (a
    /// [`Classify`](crate::Classify) implementation or a closure): only
    /// [`Classification::Retryable`](crate::Classification::Retryable) outcomes count.
    pub fn with_classifier(classifier: C) -> Self {
        Self {
            classifier,
            config: BreakerConfig::default(),
            name: Cow::Borrowed("default"),
            meter: None,
            shared: Arc::default(),
            _mode: PhantomData,
        }
    }
}

impl<C, M> CircuitBreakerLayer<C, M> {
    fn into_mode<N>(self) -> CircuitBreakerLayer<C, N> {
        CircuitBreakerLayer {
            classifier: self.classifier,
            config: self.config,
            name: self.name,
            meter: self.meter,
            shared: self.shared,
            _mode: PhantomData,
        }
    }

    fn set(mut self, f: impl FnOnce(&mut BreakerConfig)) -> Self {
        f(&mut self.config);
        // Settings change what the breaker is: a new one for the services made from now on.
        self.shared = Arc::default();
        self
    }

    /// Share of retryable failures that opens the breaker (default 0.5). Above 1 means 1; zero,
    /// negative or NaN keep the current value.
    pub fn failure_ratio(self, ratio: f64) -> Self {
        self.set(|c| c.failure_ratio(ratio))
    }

    /// Fewest calls in the window before the ratio is looked at (default 20; 0 means 1).
    pub fn min_volume(self, calls: u32) -> Self {
        self.set(|c| c.min_volume = calls.max(1))
    }

    /// How far back outcomes count (default 10 s, clamped to 1 s..1 h), in `buckets` slices
    /// (default 10, clamped to 1..60): outcomes leave the window a slice at a time.
    pub fn window(self, window: Duration, buckets: u32) -> Self {
        self.set(|c| c.window(window, buckets))
    }

    /// Open time after a first trip (default 5 s), doubled per further trip before a recovery,
    /// at most `max` (default 60 s; clamped to 1 ms..1 h, and `base` to 1 ms..`max`).
    pub fn open_time(self, base: Duration, max: Duration) -> Self {
        self.set(|c| c.open_time(base, max))
    }

    /// Probe calls let through while half-open, and the successes that close the breaker
    /// (default 3; clamped to 1..1000).
    pub fn probes(self, probes: u32) -> Self {
        self.set(|c| c.probes = probes.clamp(1, 1000))
    }

    /// The `tower.circuit.name` attribute (default `"default"`): the dependency's name.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self.shared = Arc::default();
        self
    }

    /// Records on `meter` instead of the global meter `tower-retry-classified`.
    pub fn meter(mut self, meter: &Meter) -> Self {
        self.meter = Some(meter.clone());
        self.shared = Arc::default();
        self
    }

    /// Reads the state of the breaker this layer's services share.
    pub fn handle(&self) -> CircuitHandle {
        CircuitHandle {
            shared: Arc::clone(self.shared()),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        self.shared.get_or_init(|| {
            let global;
            let meter = match &self.meter {
                Some(meter) => meter,
                None => {
                    global = opentelemetry::global::meter("tower-retry-classified");
                    &global
                }
            };
            Shared::new(self.config.clone(), self.name.clone(), meter)
        })
    }
}

impl<S, C: Clone, M> Layer<S> for CircuitBreakerLayer<C, M> {
    type Service = CircuitBreaker<S, C, M>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.classifier.clone(), Arc::clone(self.shared()))
    }
}

impl<C: Clone, M> Clone for CircuitBreakerLayer<C, M> {
    fn clone(&self) -> Self {
        Self {
            classifier: self.classifier.clone(),
            config: self.config.clone(),
            name: self.name.clone(),
            meter: self.meter.clone(),
            shared: Arc::clone(&self.shared),
            _mode: PhantomData,
        }
    }
}

impl<C, M> std::fmt::Debug for CircuitBreakerLayer<C, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("config", &self.config)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
