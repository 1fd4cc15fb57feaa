//! A cloneable view of one queue: its load, its status, and its shutdown.

use std::sync::Arc;

use crate::admission::Shared;
use crate::status::QueueStatus;

/// A handle on one queue, shared by every service its layer built.
///
/// Cheap to clone; reading the counts is a single atomic load.
///
/// ```
/// use tower_bounded_queue::{BoundedQueueBuilder, BoundedQueueLayer, QueueStatus};
///
/// let layer = BoundedQueueBuilder::new(8).capacity(100).name("cpu")
/// .build();
/// let handle = layer.handle();
/// assert_eq!(handle.capacity(), 100);
/// assert_eq!(handle.concurrency(), 8);
/// assert_eq!(handle.concurrency_limit(), 8, "fixed: the same");
/// assert_eq!(handle.depth(), 0);
/// assert_eq!(handle.status(), QueueStatus::Healthy);
/// assert_eq!(handle.name(), "cpu");
/// ```
#[derive(Clone)]
pub struct QueueHandle {
    shared: Arc<Shared>,
}

impl QueueHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Requests waiting for a slot now.
    pub fn depth(&self) -> usize {
        self.shared.depth()
    }

    /// Requests inside the inner service now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// How many requests may wait.
    pub fn capacity(&self) -> usize {
        self.shared.config.capacity
    }

    /// The concurrency the layer was built with ([`BoundedQueueLayer::new`], clamped): the limit
    /// of a fixed queue, or where an [adaptive](crate::Adaptive) limit started. For the limit
    /// now, see [`concurrency_limit`](Self::concurrency_limit).
    ///
    /// [`BoundedQueueLayer::new`]: crate::BoundedQueueLayer::new
    pub fn concurrency(&self) -> usize {
        self.shared.config.concurrency
    }

    /// How many requests may be inside the inner service at once now: the fixed `concurrency`,
    /// or the [adaptive](crate::Adaptive) limit, which moves between its floor and ceiling (also
    /// the gauge `tower.queue.concurrency_limit`). Right after the limit shrank,
    /// [`in_flight`](Self::in_flight) may exceed it until enough requests finish.
    pub fn concurrency_limit(&self) -> usize {
        self.shared.concurrency_limit()
    }

    /// The adaptive settings (as clamped), if the limit is adaptive.
    pub fn adaptive(&self) -> Option<&crate::Adaptive> {
        self.shared.adaptive()
    }

    /// The queue's name (the `tower.queue.name` attribute of its instruments).
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// How full the queue is, by the configured thresholds.
    pub fn status(&self) -> QueueStatus {
        self.shared.status()
    }

    /// Stops admitting: from now on new requests get
    /// [`Overloaded`](crate::Overloaded) with reason [`Closed`](crate::OverloadReason::Closed)
    /// (503 in HTTP mode). Requests already in flight or waiting are still served.
    ///
    /// Returns `true` if this call closed the queue, `false` if it was closed already.
    pub fn close(&self) -> bool {
        self.shared.close()
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Closes the queue and waits until every request in flight or waiting has finished (or was
    /// dropped by its caller), so a server can shut down losing nothing.
    pub async fn drain(&self) {
        self.shared.close();
        self.shared.idle().await;
    }
}

impl std::fmt::Debug for QueueHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueHandle")
            .field("name", &self.name())
            .field("depth", &self.depth())
            .field("in_flight", &self.in_flight())
            .field("capacity", &self.capacity())
            .field("concurrency", &self.concurrency())
            .field("concurrency_limit", &self.concurrency_limit())
            .field("closed", &self.is_closed())
            .finish()
    }
}
