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
mod keys;
mod service;
mod shared;
mod state;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::Meter;
use tower_layer::Layer;

pub use keys::{KeyedBy, Keying, Single};
pub use service::{BreakerFuture, CircuitBreaker, ErrorMode, HttpMode};
pub use shared::CircuitHandle;
pub use state::CircuitState;

use crate::classify::HttpClassifier;
use config::BreakerConfig;
use keys::Recipe;

/// Keys past this many share the layer's own breaker (see [`CircuitBreakerLayer::max_keys`]).
pub const DEFAULT_MAX_KEYS: usize = 256;

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
/// By default all services made by one layer, and their clones, share one breaker;
/// [`key_fn`](Self::key_fn) gives each key (an upstream's authority, a tenant) a breaker of its
/// own. [`handle`](Self::handle) reads a state. Instruments: `tower.circuit.state` (gauge: 0
/// closed, 1 half-open, 2 open) and `tower.circuit.transitions` (`from`, `to`), with
/// `tower.circuit.name` (the layer's name, or the key).
pub struct CircuitBreakerLayer<C = HttpClassifier, M = ErrorMode, K = Single> {
    classifier: C,
    recipe: Arc<Recipe>,
    keys: K,
    max_keys: usize,
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
            recipe: Arc::new(Recipe {
                config: BreakerConfig::default(),
                name: Cow::Borrowed("default"),
                meter: None,
            }),
            keys: Single::default(),
            max_keys: DEFAULT_MAX_KEYS,
            _mode: PhantomData,
        }
    }
}

impl<C, M> CircuitBreakerLayer<C, M, Single> {
    /// A breaker per key: `key` reads it from each request (`None`: the layer's own breaker).
    /// Keys beyond [`max_keys`](Self::max_keys) share the layer's own breaker.
    ///
    /// ```
    /// use tower_retry_classified::CircuitBreakerLayer;
    ///
    /// // One breaker per upstream host:port.
    /// let layer = CircuitBreakerLayer::new()
    ///     .key_fn(|request: &http::Request<()>| request.uri().authority().map(|a| a.as_str()));
    /// ```
    pub fn key_fn<F, Req>(self, key: F) -> CircuitBreakerLayer<C, M, KeyedBy<F>>
    where
        F: Fn(&Req) -> Option<&str>,
    {
        CircuitBreakerLayer {
            classifier: self.classifier,
            recipe: self.recipe,
            keys: KeyedBy::new(key, self.max_keys),
            max_keys: self.max_keys,
            _mode: PhantomData,
        }
    }

    /// Reads the state of the breaker this layer's services share.
    pub fn handle(&self) -> CircuitHandle {
        self.keys.handle(&self.recipe)
    }
}

impl<C, M, F> CircuitBreakerLayer<C, M, KeyedBy<F>> {
    /// The breaker of `key`, once a call with that key was made.
    pub fn handle_of(&self, key: &str) -> Option<CircuitHandle> {
        self.keys.handle_of(key)
    }

    /// The layer's own breaker: calls without a key, and keys past the maximum.
    pub fn handle(&self) -> CircuitHandle {
        self.keys.fallback(&self.recipe)
    }
}

/// Starts over with no breaker made yet, when a setting changed.
trait Fresh {
    fn fresh(&self, max_keys: usize) -> Self;
}

impl Fresh for Single {
    fn fresh(&self, _: usize) -> Self {
        Single::default()
    }
}

impl<F> Fresh for KeyedBy<F> {
    fn fresh(&self, max_keys: usize) -> Self {
        self.renewed(max_keys)
    }
}

impl<C, M, K> CircuitBreakerLayer<C, M, K> {
    fn into_mode<N>(self) -> CircuitBreakerLayer<C, N, K> {
        CircuitBreakerLayer {
            classifier: self.classifier,
            recipe: self.recipe,
            keys: self.keys,
            max_keys: self.max_keys,
            _mode: PhantomData,
        }
    }
}

#[allow(private_bounds)]
impl<C, M, K: Fresh> CircuitBreakerLayer<C, M, K> {
    fn set(mut self, f: impl FnOnce(&mut Recipe)) -> Self {
        f(Arc::make_mut(&mut self.recipe));
        // Settings change what the breakers are: new ones for the services made from now on.
        self.keys = self.keys.fresh(self.max_keys);
        self
    }

    /// Share of retryable failures that opens the breaker (default 0.5). Above 1 means 1; zero,
    /// negative or NaN keep the current value.
    pub fn failure_ratio(self, ratio: f64) -> Self {
        self.set(|r| r.config.failure_ratio(ratio))
    }

    /// Fewest calls in the window before the ratio is looked at (default 20; 0 means 1).
    pub fn min_volume(self, calls: u32) -> Self {
        self.set(|r| r.config.min_volume = calls.max(1))
    }

    /// How far back outcomes count (default 10 s, clamped to 1 s..1 h), in `buckets` slices
    /// (default 10, clamped to 1..60): outcomes leave the window a slice at a time.
    pub fn window(self, window: Duration, buckets: u32) -> Self {
        self.set(|r| r.config.window(window, buckets))
    }

    /// Open time after a first trip (default 5 s), doubled per further trip before a recovery,
    /// at most `max` (default 60 s; clamped to 1 ms..1 h, and `base` to 1 ms..`max`).
    pub fn open_time(self, base: Duration, max: Duration) -> Self {
        self.set(|r| r.config.open_time(base, max))
    }

    /// Probe calls let through while half-open, and the successes that close the breaker
    /// (default 3; clamped to 1..1000).
    pub fn probes(self, probes: u32) -> Self {
        self.set(|r| r.config.probes = probes.clamp(1, 1000))
    }

    /// The `tower.circuit.name` attribute of the layer's own breaker (default `"default"`):
    /// the dependency's name. Keyed breakers are named by their key.
    pub fn name(self, name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        self.set(|r| r.name = name)
    }

    /// Records on `meter` instead of the global meter `tower-retry-classified`.
    pub fn meter(self, meter: &Meter) -> Self {
        let meter = meter.clone();
        self.set(|r| r.meter = Some(meter))
    }

    /// Most keys with a breaker of their own (default [`DEFAULT_MAX_KEYS`]; 0 means every call
    /// uses the layer's own breaker).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self.keys = self.keys.fresh(max_keys);
        self
    }
}

impl<S, C: Clone, M, K: Clone> Layer<S> for CircuitBreakerLayer<C, M, K> {
    type Service = CircuitBreaker<S, C, M, K>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(
            inner,
            self.classifier.clone(),
            Arc::clone(&self.recipe),
            self.keys.clone(),
        )
    }
}

impl<C: Clone, M, K: Clone> Clone for CircuitBreakerLayer<C, M, K> {
    fn clone(&self) -> Self {
        Self {
            classifier: self.classifier.clone(),
            recipe: Arc::clone(&self.recipe),
            keys: self.keys.clone(),
            max_keys: self.max_keys,
            _mode: PhantomData,
        }
    }
}

impl<C, M, K> std::fmt::Debug for CircuitBreakerLayer<C, M, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("config", &self.recipe.config)
            .field("name", &self.recipe.name)
            .finish_non_exhaustive()
    }
}
