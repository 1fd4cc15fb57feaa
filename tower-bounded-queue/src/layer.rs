//! [`BoundedQueueLayer`]: configuration, and the queue every service it builds shares.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::metrics::Meter;
use tower_layer::Layer;

use crate::adaptive::Adaptive;
use crate::admission::Shared;
use crate::config::{Config, MAX_LIMIT};
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

/// Applies admission control: at most `concurrency` requests inside the inner service, at most
/// `capacity` (default 1000) waiting, the rest rejected at once.
///
/// One layer is one queue: every service it builds (and every clone of the layer) shares the
/// same counts, so stacking it per connection still limits the whole server. Configure it first,
/// then take [`handle`](Self::handle)s or build services; a setter called afterwards starts a new,
/// separate queue.
///
/// Invalid values are clamped, never a later panic: `concurrency` to at least 1, `concurrency`
/// and `capacity` to at most 2^30. A capacity of 0 means no waiting (pure load shedding).
///
/// ```
/// use std::time::Duration;
/// use tower_bounded_queue::{BoundedQueueLayer, Overflow};
///
/// let layer = BoundedQueueLayer::new(64)
///     .capacity(1000)
///     .overflow(Overflow::DropOldest)
///     .max_wait(Duration::from_secs(2))
///     .name("cpu");
/// let handle = layer.handle();
/// assert_eq!(handle.capacity(), 1000);
/// ```
#[derive(Clone)]
pub struct BoundedQueueLayer {
    config: Config,
    shared: Arc<OnceLock<Arc<Shared>>>,
}

impl BoundedQueueLayer {
    /// A queue letting `concurrency` requests into the inner service at once, with the defaults:
    /// capacity 1000, reject the newest when full, no maximum wait, name `default`, the global
    /// meter `tower-bounded-queue`.
    pub fn new(concurrency: usize) -> Self {
        Self::from_config(Config::new(concurrency))
    }

    fn from_config(config: Config) -> Self {
        Self {
            config,
            shared: Arc::new(OnceLock::new()),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        Self::from_config(self.config)
    }

    /// How many requests may wait for a slot (default 1000; clamped to at most 2^30).
    pub fn capacity(self, capacity: usize) -> Self {
        self.update(|c| c.capacity = capacity.min(MAX_LIMIT))
    }

    /// What happens when the queue is full (default [`Overflow::RejectNewest`]).
    pub fn overflow(self, overflow: Overflow) -> Self {
        self.update(|c| c.drop_oldest = overflow == Overflow::DropOldest)
    }

    /// The longest a request may wait; past it, it leaves with
    /// [`QueueTimeout`](crate::QueueTimeout). Default: no limit (the request's deadline, with the
    /// `deadline` feature, still applies).
    pub fn max_wait(self, max_wait: Duration) -> Self {
        self.update(|c| c.max_wait = Some(max_wait))
    }

    /// The queue's name, the `tower.queue.name` attribute of every instrument (default
    /// `default`). Use one per pool, e.g. `cpu` and `io`.
    pub fn name(self, name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        self.update(|c| c.name = name)
    }

    /// Moves the concurrency limit between a floor and a ceiling by AIMD on the latency and the
    /// failures of completed requests, starting at `concurrency` (clamped into the bounds); see
    /// [`Adaptive`]. The queue still rejects at `capacity`. Bad values are clamped as
    /// [`Adaptive`] documents.
    ///
    /// ```
    /// use tower_bounded_queue::{Adaptive, BoundedQueueLayer};
    ///
    /// let layer = BoundedQueueLayer::new(16)
    ///     .capacity(500)
    ///     .adaptive(Adaptive::aimd().floor(4).ceiling(256));
    /// assert_eq!(layer.handle().concurrency_limit(), 16);
    /// ```
    pub fn adaptive(self, adaptive: Adaptive) -> Self {
        self.update(|c| c.adaptive = Some(adaptive.clamped(MAX_LIMIT)))
    }

    /// Records on this meter instead of the global meter named `tower-bounded-queue`.
    pub fn meter(self, meter: &Meter) -> Self {
        self.update(|c| c.meter = Some(meter.clone()))
    }

    /// Queue fill fractions at which [`status`](crate::QueueHandle::status) turns degraded and
    /// overloaded (default 0.5 and 0.8; critical is always "full"). Values are clamped to
    /// `[0, 1]` and ordered; NaN means the default.
    pub fn status_thresholds(self, degraded: f64, overloaded: f64) -> Self {
        self.update(|c| c.thresholds = Thresholds::new(degraded, overloaded))
    }

    /// A handle on this layer's queue.
    pub fn handle(&self) -> QueueHandle {
        QueueHandle::new(Arc::clone(self.shared()))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        self.shared.get_or_init(|| Shared::new(self.config.clone()))
    }
}

impl std::fmt::Debug for BoundedQueueLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedQueueLayer")
            .field("concurrency", &self.config.concurrency)
            .field("capacity", &self.config.capacity)
            .field("drop_oldest", &self.config.drop_oldest)
            .field("max_wait", &self.config.max_wait)
            .field("adaptive", &self.config.adaptive)
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for BoundedQueueLayer {
    type Service = BoundedQueue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BoundedQueue::new(inner, Arc::clone(self.shared()))
    }
}
