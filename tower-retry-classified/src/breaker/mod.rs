//! [`CircuitBreakerLayer`]: stops calling a dependency that keeps failing, so that it gets time
//! to recover and callers get an answer at once instead of a slow failure.
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_retry_classified::breaker::{CircuitBreakerBuilder, CircuitState};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = CircuitBreakerBuilder::new()
//!     .failure_ratio(0.5)
//!     .min_volume(4)
//!     .open_time(Duration::from_secs(5), Duration::from_secs(60))
//!     .build()
//!     .http();
//! let handle = breaker.handle();
//! let mut svc = ServiceBuilder::new().layer(breaker).service(service_fn(|_: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(
//!         http::Response::builder().status(503).body(String::new()).unwrap(),
//!     )
//! }));
//! for _ in 0..4 {
//!     let answer = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//!     assert_eq!(answer.status(), 503);
//! }
//! assert_eq!(handle.state(), CircuitState::Open);
//! // Refused at once now: 503 with the time left, marked so that retry layers leave it alone.
//! let answer = svc.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
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
use tower_reliability_core::{ErrorMode, HttpMode};

pub use keys::{KeyedBy, Keying, Single};
pub use service::{CircuitBreaker, ResponseFuture};
pub use shared::CircuitHandle;
pub use state::CircuitState;

use crate::classify::HttpClassifier;
use config::BreakerConfig;
use keys::Recipe;

/// Keys past this many share the layer's own breaker (see [`CircuitBreakerBuilder::max_keys`]).
pub const DEFAULT_MAX_KEYS: usize = 256;

/// Settings of a circuit breaker; [`build`](Self::build) creates its breakers' shared state,
/// once.
///
/// Every setter follows the family's one rule: out-of-range values are clamped to the
/// documented bounds, never rejected later, never ignored.
///
/// ```
/// use std::time::Duration;
/// use tower_retry_classified::breaker::CircuitBreakerBuilder;
///
/// // One breaker per upstream host:port.
/// let layer = CircuitBreakerBuilder::new()
///     .key_fn(|request: &http::Request<()>| request.uri().authority().map(|a| a.as_str()))
///     .max_keys(64)
///     .open_time(Duration::from_secs(2), Duration::from_secs(30))
///     .build();
/// assert!(layer.handle_of("example.com:80").is_none(), "made on its first call");
/// ```
pub struct CircuitBreakerBuilder<C = HttpClassifier, K = Single> {
    classifier: C,
    recipe: Recipe,
    keys: K,
    max_keys: usize,
}

impl CircuitBreakerBuilder<HttpClassifier> {
    /// A breaker for HTTP clients: the built-in [`HttpClassifier`] decides what a failure is.
    pub fn new() -> Self {
        Self::with_classifier(HttpClassifier::new())
    }
}

impl Default for CircuitBreakerBuilder<HttpClassifier> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> CircuitBreakerBuilder<C> {
    /// A breaker whose `classifier` decides what a failure is (a
    /// [`Classify`](crate::Classify) implementation or a closure): only
    /// [`Classification::Retryable`](crate::Classification::Retryable) outcomes count.
    pub fn with_classifier(classifier: C) -> Self {
        Self {
            classifier,
            recipe: Recipe {
                config: BreakerConfig::default(),
                name: Cow::Borrowed("default"),
                meter: None,
            },
            keys: Single::default(),
            max_keys: DEFAULT_MAX_KEYS,
        }
    }

    /// A breaker per key: `key` reads it from each request (`None`: the layer's own breaker).
    /// Keys beyond [`max_keys`](Self::max_keys) share the layer's own breaker.
    pub fn key_fn<F, Req>(self, key: F) -> CircuitBreakerBuilder<C, KeyedBy<F>>
    where
        F: Fn(&Req) -> Option<&str>,
    {
        CircuitBreakerBuilder {
            classifier: self.classifier,
            recipe: self.recipe,
            keys: KeyedBy::new(key, self.max_keys),
            max_keys: self.max_keys,
        }
    }
}

/// Makes a layer's breakers from a builder's key choice.
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

#[allow(private_bounds)]
impl<C, K: Fresh> CircuitBreakerBuilder<C, K> {
    /// Share of retryable failures that opens the breaker (default 0.5), clamped to
    /// 0.01..=1; NaN means the default.
    pub fn failure_ratio(mut self, ratio: f64) -> Self {
        self.recipe.config.failure_ratio(ratio);
        self
    }

    /// Fewest calls in the window before the ratio is looked at (default 20; 0 means 1).
    pub fn min_volume(mut self, calls: u32) -> Self {
        self.recipe.config.min_volume = calls.max(1);
        self
    }

    /// How far back outcomes count (default 10 s, clamped to 1 s..1 h), in `buckets` slices
    /// (default 10, clamped to 1..60): outcomes leave the window a slice at a time.
    pub fn window(mut self, window: Duration, buckets: u32) -> Self {
        self.recipe.config.window(window, buckets);
        self
    }

    /// Open time after a first trip (default 5 s), doubled per further trip before a recovery,
    /// at most `max` (default 60 s; clamped to 1 ms..1 h, and `base` to 1 ms..`max`).
    pub fn open_time(mut self, base: Duration, max: Duration) -> Self {
        self.recipe.config.open_time(base, max);
        self
    }

    /// Probe calls let through while half-open, and the successes that close the breaker
    /// (default 3; clamped to 1..1000).
    pub fn probes(mut self, probes: u32) -> Self {
        self.recipe.config.probes = probes.clamp(1, 1000);
        self
    }

    /// The `tower.circuit.name` attribute of the layer's own breaker (default `"default"`):
    /// the dependency's name. Keyed breakers are named by their key.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.recipe.name = name.into();
        self
    }

    /// Records on `meter` instead of the global meter `tower-retry-classified`.
    pub fn meter(mut self, meter: &Meter) -> Self {
        self.recipe.meter = Some(meter.clone());
        self
    }

    /// Most keys with a breaker of their own (default [`DEFAULT_MAX_KEYS`]; 0 means every call
    /// uses the layer's own breaker).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Creates the breakers' shared state: the one place it is made. Every service the layer
    /// builds, and every clone of the layer, shares it.
    pub fn build(self) -> CircuitBreakerLayer<C, ErrorMode, K> {
        CircuitBreakerLayer {
            classifier: self.classifier,
            keys: self.keys.fresh(self.max_keys),
            recipe: Arc::new(self.recipe),
            _mode: PhantomData,
        }
    }
}

impl<C: Clone, K: Clone> Clone for CircuitBreakerBuilder<C, K> {
    fn clone(&self) -> Self {
        Self {
            classifier: self.classifier.clone(),
            recipe: self.recipe.clone(),
            keys: self.keys.clone(),
            max_keys: self.max_keys,
        }
    }
}

impl<C, K> std::fmt::Debug for CircuitBreakerBuilder<C, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("config", &self.recipe.config)
            .field("name", &self.recipe.name)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// Opens on the share of retryable failures over a sliding window, refuses calls at once while
/// open, lets a few probes through after the open time, and closes when they succeed.
///
/// - **Closed**: calls go through. Outcomes are counted over the last `window` (default 10 s).
///   Once at least `min_volume` calls (default 20) were seen and the share of retryable failures
///   reaches `failure_ratio` (default 0.5), the breaker opens.
/// - **Open**: calls are refused with [`CircuitOpen`](crate::CircuitOpen). After the open time
///   (default 5 s, doubled for each trip since the last recovery, at most 60 s) it half-opens.
/// - **Half-open**: `probes` calls (default 3) go through; if all succeed the breaker closes
///   (and the open time resets), if one fails it opens again for twice as long.
///
/// In [`ErrorMode`] (the default) a refused call fails with [`CircuitOpen`](crate::CircuitOpen);
/// [`.http()`](Self::http) answers it instead ([`HttpMode`]): 503 with `Retry-After` (the time
/// left) and `x-overloaded`, or for gRPC callers HTTP 200 with `grpc-status: 14` and
/// `grpc-retry-pushback-ms`, so retry layers above, ours included, do not retry it.
///
/// Settings live on [`CircuitBreakerBuilder`], whose `build` creates the breakers once: all
/// services made by one layer, and its clones, share them; [`key_fn`](CircuitBreakerBuilder::key_fn)
/// gives each key (an upstream's authority, a tenant) a breaker of its own.
/// [`handle`](Self::handle) reads a state. Instruments: `tower.circuit.state` (gauge: 0
/// closed, 1 half-open, 2 open) and `tower.circuit.transitions` (`from`, `to`), with
/// `tower.circuit.name` (the layer's name, or the key).
pub struct CircuitBreakerLayer<C = HttpClassifier, M = ErrorMode, K = Single> {
    classifier: C,
    recipe: Arc<Recipe>,
    keys: K,
    _mode: PhantomData<fn() -> M>,
}

impl CircuitBreakerLayer {
    /// A breaker with every default (see [`CircuitBreakerBuilder::new`]).
    pub fn new() -> Self {
        CircuitBreakerBuilder::new().build()
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C, K> CircuitBreakerLayer<C, ErrorMode, K> {
    /// Answers refused calls with HTTP responses instead of [`CircuitOpen`](crate::CircuitOpen)
    /// errors; the layer keeps its breakers.
    pub fn http(self) -> CircuitBreakerLayer<C, HttpMode, K> {
        CircuitBreakerLayer {
            classifier: self.classifier,
            recipe: self.recipe,
            keys: self.keys,
            _mode: PhantomData,
        }
    }
}

impl<C, M> CircuitBreakerLayer<C, M, Single> {
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
