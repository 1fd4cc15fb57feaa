//! [`BoundedQueueBuilder`] (settings) and [`BoundedQueueLayer`] (the queue every service it
//! builds shares).

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use opentelemetry::metrics::Meter;
use tower_layer::Layer;
use tower_reliability_core::{ErrorMode, HttpMode};

use crate::adaptive::Adaptive;
use crate::admission::Shared;
use crate::config::{Config, MAX_LIMIT};
use crate::fair::{ByHeader, FairBy, MAX_KEYS, NoKey};
use crate::handle::QueueHandle;
use crate::service::BoundedQueue;
use crate::status::Thresholds;

/// What to do with a new request when every slot is busy and the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Reject the new request at once (the default): waiters keep their places.
    #[default]
    RejectNewest,
    /// Push the oldest waiter out (it gets [`Overloaded`](crate::Overloaded) with reason
    /// [`DroppedOldest`](crate::OverloadReason::DroppedOldest)) and queue the new one: fresher
    /// requests are likelier to still have a caller waiting.
    DropOldest,
}

/// Settings of a queue; [`build`](Self::build) creates the queue, once.
///
/// Every setter follows the family's one rule: out-of-range values are clamped to the
/// documented bounds, never rejected later, never ignored. `concurrency` is clamped to at least
/// 1, `concurrency` and `capacity` to at most 2^30. A capacity of 0 means no waiting (pure load
/// shedding).
///
/// ```
/// use std::time::Duration;
/// use tower_bounded_queue::{BoundedQueueBuilder, Overflow};
///
/// let layer = BoundedQueueBuilder::new(64)
///     .capacity(1000)
///     .overflow(Overflow::DropOldest)
///     .max_wait(Duration::from_secs(2))
///     .name("cpu")
///     .build();
/// let handle = layer.handle();
/// assert_eq!(handle.capacity(), 1000);
/// ```
#[derive(Clone)]
pub struct BoundedQueueBuilder<K = NoKey> {
    config: Config,
    key: K,
}

impl BoundedQueueBuilder {
    /// A queue letting `concurrency` requests into the inner service at once, with the defaults:
    /// capacity 1000, reject the newest when full, no maximum wait, `Retry-After` 1 s, name
    /// `default`, the global meter `tower-bounded-queue`, no fair share.
    pub fn new(concurrency: usize) -> Self {
        Self {
            config: Config::new(concurrency),
            key: NoKey,
        }
    }

    /// Fair share between the keys `key` gives requests (a tenant, a flow; `None`: no key),
    /// with at most 64 keys sharing on their own (see [`fair_keys`](Self::fair_keys)): while
    /// requests wait, a key holds at most its share of the capacity and waiters are served
    /// across keys in turn. See [`crate::fair`].
    pub fn fair_by<F>(self, key: F) -> BoundedQueueBuilder<FairBy<F>> {
        self.keyed(FairBy(key))
    }

    /// Fair share between the values of an HTTP request header, e.g. `x-tenant-id`; requests
    /// without it share one key. See [`fair_by`](Self::fair_by).
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_bounded_queue::BoundedQueueBuilder;
    ///
    /// let layer = BoundedQueueBuilder::new(64)
    ///     .capacity(1000)
    ///     .fair_by_header(HeaderName::from_static("x-tenant-id"))
    ///     .build()
    ///     .http();
    /// # let _ = layer;
    /// ```
    pub fn fair_by_header(self, name: HeaderName) -> BoundedQueueBuilder<ByHeader> {
        self.keyed(ByHeader(name))
    }

    /// Fair share by `key` when it is `Some`, none when `None`, with one type either way: for
    /// a setting read at start-up.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_bounded_queue::BoundedQueueBuilder;
    /// use tower_bounded_queue::fair::ByHeader;
    ///
    /// let by_tenant = std::env::var("FAIR_BY_TENANT").is_ok();
    /// let key = by_tenant.then(|| ByHeader::new(HeaderName::from_static("x-tenant-id")));
    /// let layer = BoundedQueueBuilder::new(64).fair_share(key).build().http();
    /// # let _ = layer;
    /// ```
    pub fn fair_share<K>(self, key: Option<K>) -> BoundedQueueBuilder<Option<K>> {
        let on = key.is_some();
        let mut builder = self.keyed(key);
        builder.config.fair = on;
        builder
    }

    fn keyed<K>(self, key: K) -> BoundedQueueBuilder<K> {
        let mut config = self.config;
        config.fair = true;
        BoundedQueueBuilder { config, key }
    }
}

impl<K> BoundedQueueBuilder<K> {
    /// How many keys may have a share of their own at once (default 64; clamped to 1..=4096);
    /// beyond it, new keys share one. Applies when fair share is on
    /// ([`fair_by`](BoundedQueueBuilder::fair_by)), whichever is set first.
    pub fn fair_keys(mut self, keys: usize) -> Self {
        self.config.max_fair_keys = keys.clamp(1, MAX_KEYS);
        self
    }

    /// How many requests may wait for a slot (default 1000; clamped to at most 2^30).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.config.capacity = capacity.min(MAX_LIMIT);
        self
    }

    /// What happens when the queue is full (default [`Overflow::RejectNewest`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.config.drop_oldest = overflow == Overflow::DropOldest;
        self
    }

    /// The longest a request may wait; past it, it leaves with
    /// [`QueueTimeout`](crate::QueueTimeout). Default: no limit (the request's deadline, with the
    /// `deadline` feature, still applies).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.config.max_wait = Some(max_wait);
        self
    }

    /// The wait every rejection suggests to its caller ([`Overloaded::retry_after`]): HTTP
    /// `Retry-After` in whole seconds, rounded up, or gRPC `grpc-retry-pushback-ms` (default 1 s;
    /// zero leaves both out).
    ///
    /// [`Overloaded::retry_after`]: tower_reliability_core::Rejection::retry_after
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.config.retry_after = (!after.is_zero()).then_some(after);
        self
    }

    /// The queue's name, the `tower.queue.name` attribute of every instrument (default
    /// `default`). Use one per pool, e.g. `cpu` and `io`.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Moves the concurrency limit between a floor and a ceiling by AIMD on the latency and the
    /// failures of completed requests, starting at `concurrency` (clamped into the bounds); see
    /// [`Adaptive`]. The queue still rejects at `capacity`. Bad values are clamped as
    /// [`Adaptive`] documents.
    ///
    /// ```
    /// use tower_bounded_queue::{Adaptive, BoundedQueueBuilder};
    ///
    /// let layer = BoundedQueueBuilder::new(16)
    ///     .capacity(500)
    ///     .adaptive(Adaptive::aimd().floor(4).ceiling(256))
    ///     .build();
    /// assert_eq!(layer.handle().concurrency_limit(), 16);
    /// ```
    pub fn adaptive(mut self, adaptive: Adaptive) -> Self {
        self.config.adaptive = Some(adaptive.clamped(MAX_LIMIT));
        self
    }

    /// Records on this meter instead of the global meter named `tower-bounded-queue`.
    pub fn meter(mut self, meter: &Meter) -> Self {
        self.config.meter = Some(meter.clone());
        self
    }

    /// Queue fill fractions at which [`status`](crate::QueueHandle::status) turns degraded and
    /// overloaded (default 0.5 and 0.8; critical is always "full"). Values are clamped to
    /// `[0, 1]` and ordered; NaN means the default.
    pub fn status_thresholds(mut self, degraded: f64, overloaded: f64) -> Self {
        self.config.thresholds = Thresholds::new(degraded, overloaded);
        self
    }

    /// Creates the queue: the one place its state (counts, waiters, instruments) is made. Every
    /// service the layer builds, and every clone of the layer, shares it.
    pub fn build(self) -> BoundedQueueLayer<ErrorMode, K> {
        BoundedQueueLayer {
            shared: Shared::new(self.config),
            status_header: None,
            key: self.key,
            _mode: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for BoundedQueueBuilder<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedQueueBuilder")
            .field("concurrency", &self.config.concurrency)
            .field("capacity", &self.config.capacity)
            .field("drop_oldest", &self.config.drop_oldest)
            .field("max_wait", &self.config.max_wait)
            .field("adaptive", &self.config.adaptive)
            .field("name", &self.config.name)
            .field("fair", &self.config.fair)
            .field("fair_keys", &self.config.max_fair_keys)
            .finish_non_exhaustive()
    }
}

/// Applies admission control: at most `concurrency` requests inside the inner service, at most
/// `capacity` (default 1000) waiting, the rest rejected at once.
///
/// One layer is one queue, created by [`BoundedQueueBuilder::build`] (or [`new`](Self::new),
/// with the defaults): every service it builds and every clone of it share the same counts, so
/// stacking it per connection still limits the whole server. The layer has no setters, so a
/// clone can never become a second queue by accident.
///
/// In [`ErrorMode`] (the default) a rejection is a boxed [`Overloaded`](crate::Overloaded),
/// [`QueueTimeout`](crate::QueueTimeout) or (feature `deadline`) `DeadlineExceeded`;
/// [`.http()`](Self::http) answers them instead ([`HttpMode`]): 503 with `Retry-After` and
/// `x-overloaded`, 504 for a passed deadline, and for gRPC requests HTTP 200 with
/// `grpc-status` 14 (with `grpc-retry-pushback-ms`) or 4.
///
/// ```
/// use tower_bounded_queue::{BoundedQueueLayer, X_OVERLOAD_STATUS};
///
/// let layer = BoundedQueueLayer::new(64).http().status_header(X_OVERLOAD_STATUS);
/// let handle = layer.handle();
/// assert_eq!(handle.capacity(), 1000);
/// ```
///
/// `K` keys requests for fair share ([`BoundedQueueBuilder::fair_by`]); [`NoKey`] (the default)
/// has none.
pub struct BoundedQueueLayer<M = ErrorMode, K = NoKey> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) status_header: Option<HeaderName>,
    key: K,
    _mode: PhantomData<fn() -> M>,
}

impl BoundedQueueLayer {
    /// A queue of `concurrency` with every default (see [`BoundedQueueBuilder::new`]).
    pub fn new(concurrency: usize) -> Self {
        BoundedQueueBuilder::new(concurrency).build()
    }
}

impl<K> BoundedQueueLayer<ErrorMode, K> {
    /// Answers with HTTP responses instead of errors (503, 504, gRPC status); the layer keeps
    /// its queue.
    pub fn http(self) -> BoundedQueueLayer<HttpMode, K> {
        BoundedQueueLayer {
            shared: self.shared,
            status_header: None,
            key: self.key,
            _mode: PhantomData,
        }
    }
}

impl<K> BoundedQueueLayer<HttpMode, K> {
    /// Adds a header carrying the queue's [`QueueStatus`](crate::QueueStatus) (`healthy`,
    /// `degraded`, `overloaded`, `critical`) to every response, so an upstream router can steer
    /// away before requests are rejected. Usually [`X_OVERLOAD_STATUS`](crate::X_OVERLOAD_STATUS).
    pub fn status_header(mut self, name: HeaderName) -> Self {
        self.status_header = Some(name);
        self
    }
}

impl<M, K> BoundedQueueLayer<M, K> {
    /// A handle on this layer's queue.
    pub fn handle(&self) -> QueueHandle {
        QueueHandle::new(Arc::clone(&self.shared))
    }
}

impl<M, K: Clone> Clone for BoundedQueueLayer<M, K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            status_header: self.status_header.clone(),
            key: self.key.clone(),
            _mode: PhantomData,
        }
    }
}

impl<M, K> std::fmt::Debug for BoundedQueueLayer<M, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedQueueLayer")
            .field("queue", &self.shared)
            .field("status_header", &self.status_header)
            .finish()
    }
}

impl<S, M, K: Clone> Layer<S> for BoundedQueueLayer<M, K> {
    type Service = BoundedQueue<S, M, K>;

    fn layer(&self, inner: S) -> Self::Service {
        BoundedQueue::new(
            inner,
            Arc::clone(&self.shared),
            self.status_header.clone(),
            self.key.clone(),
        )
    }
}
