//! The admission state machine: at most `limit` requests inside the inner service and at most
//! `capacity` waiting, decided on counts alone.
//!
//! All counts live in one atomic word so the success path (a free slot and nobody waiting) is a
//! single compare-and-swap, with no lock and no allocation. Only requests that must wait take the
//! mutex around the wait queue. The `limit` is the [`Limiter`]'s: the fixed `concurrency`, or the
//! adaptive controller's, read with one atomic load; it changes only when a request completes.
//!
//! Invariants (the fixed-limit ones checked by the stress and model tests, the adaptive ones by
//! `tests/adaptive.rs`):
//! - `waiting <= capacity`;
//! - admission never takes `in_flight` above `limit`; a shrinking limit cancels nobody, so
//!   `in_flight` may exceed it until enough requests finish (released slots are retired, not
//!   handed on, while `in_flight > limit`). With a fixed limit, `in_flight <= concurrency`;
//! - whenever the queue lock is free, `waiting > 0` implies `in_flight >= limit`: a released
//!   slot goes straight to the oldest waiter (unless it is retired), and a growing limit admits
//!   waiters under the lock at once, so nobody waits while a slot is free and late arrivals never
//!   overtake waiters. With a fixed limit this is `in_flight == concurrency`. Every decision that
//!   queues a request or hands a slot on reads the limit under the lock, after the grower's
//!   change, so no growth is missed;
//! - `waiting` changes only under the queue lock, so under it `waiting == queue.len()`.
//!
//! No decision depends on a pending poll (unlike `LoadShed` over `Buffer`, where tokio's coop
//! budget can make `poll_ready` pending and shed a request while the buffer is nearly empty).

use std::hash::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use tokio::sync::Notify;

use crate::adaptive::{Change, Limiter, Sample};
use crate::config::Config;
use crate::error::{OverloadReason, Overloaded};
use crate::metrics::{Metrics, Observed, Reason};
use crate::slot::{DROPPED, EVICTED, GRANTED, Slot, WAITING, lock};
use crate::status::QueueStatus;
use crate::trace;
use crate::waiting::{Place, Waiting};

const IN_FLIGHT_MASK: u64 = 0xFFFF_FFFF;
const WAITING_SHIFT: u32 = 32;
const WAITING_ONE: u64 = 1 << WAITING_SHIFT;
const WAITING_MASK: u64 = 0x7FFF_FFFF << WAITING_SHIFT;
const CLOSED: u64 = 1 << 63;

fn in_flight_of(state: u64) -> usize {
    (state & IN_FLIGHT_MASK) as usize
}

fn waiting_of(state: u64) -> usize {
    ((state & WAITING_MASK) >> WAITING_SHIFT) as usize
}

/// The state shared by every clone of a queue's services, its layer and its handles.
pub(crate) struct Shared {
    state: AtomicU64,
    queue: Mutex<Waiting>,
    /// Seeds fair-share keys ([`crate::fair`]), so that a client cannot choose colliding keys.
    pub(crate) keys: RandomState,
    idle: Notify,
    limiter: Limiter,
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.config.name)
            .field("in_flight", &self.in_flight())
            .field("concurrency_limit", &self.concurrency_limit())
            .field("depth", &self.depth())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A request the queue answered itself: counted, and logged when a subscriber listens.
    pub(crate) fn rejected(&self, reason: Reason) {
        self.metrics.rejected(reason);
        trace::rejected(
            &self.config.name,
            reason.as_str(),
            self.depth(),
            self.config.capacity,
        );
    }

    /// A request that got a slot after waiting `waited`.
    pub(crate) fn admitted_after_wait(&self, waited: Duration) {
        self.metrics.waited(waited.as_secs_f64());
        trace::admitted_after_wait(&self.config.name, waited, self.depth());
    }

    /// A request completed inside the inner service; it still holds its slot.
    fn observe(&self, sample: Sample, failed: bool) {
        let change = self.limiter.finish(sample, failed);
        self.changed(change);
    }

    /// A request was dropped inside the inner service; it still holds its slot.
    fn observe_cancelled(&self, sample: Sample) {
        let change = self.limiter.cancelled(sample);
        self.changed(change);
    }

    fn changed(&self, change: Option<Change>) {
        let Some(change) = change else { return };
        trace::limit_changed(
            &self.config.name,
            change.from,
            change.to,
            change.cause.as_str(),
        );
        if change.to > change.from {
            self.fill();
        }
    }
}

impl Observed for Shared {
    fn depth(&self) -> usize {
        Shared::depth(self)
    }

    fn in_flight(&self) -> usize {
        Shared::in_flight(self)
    }

    fn status(&self) -> QueueStatus {
        Shared::status(self)
    }

    fn concurrency_limit(&self) -> usize {
        Shared::concurrency_limit(self)
    }
}

/// How a request that could not take a free slot at once was handled.
pub(crate) enum Slow {
    Admitted(Permit),
    Queued(Waiter),
    Rejected(Overloaded),
}

impl Shared {
    pub(crate) fn new(config: Config) -> Arc<Self> {
        Arc::new_cyclic(|weak| {
            let metrics = Metrics::new(&config, weak.clone());
            Shared {
                state: AtomicU64::new(0),
                queue: Mutex::new(Waiting::new(config.fair.then_some(config.max_fair_keys))),
                keys: RandomState::new(),
                idle: Notify::new(),
                limiter: Limiter::new(config.concurrency, config.adaptive.as_ref()),
                config,
                metrics,
            }
        })
    }

    pub(crate) fn in_flight(&self) -> usize {
        in_flight_of(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn depth(&self) -> usize {
        waiting_of(self.state.load(Ordering::Acquire))
    }

    /// The concurrency limit now: fixed, or the adaptive controller's.
    pub(crate) fn concurrency_limit(&self) -> usize {
        self.limiter.get()
    }

    /// The adaptive settings (clamped), if the limit is adaptive.
    pub(crate) fn adaptive(&self) -> Option<&crate::adaptive::Adaptive> {
        self.limiter.settings()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    pub(crate) fn status(&self) -> QueueStatus {
        let state = self.state.load(Ordering::Acquire);
        self.config.thresholds.status(
            waiting_of(state),
            self.config.capacity,
            in_flight_of(state),
            self.concurrency_limit(),
        )
    }

    /// The success path: takes a free slot if one is free and nobody waits. One load of the
    /// limit, one CAS.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let limit = self.limiter.get() as u64;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            if current & (CLOSED | WAITING_MASK) != 0 || current & IN_FLIGHT_MASK >= limit {
                return None;
            }
            match self.state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Permit::new(Arc::clone(self))),
                Err(actual) => current = actual,
            }
        }
    }

    /// The slow path, under the queue lock: admit, queue, drop the oldest waiter (or, under fair
    /// share, the newest of the key furthest over its share), or reject. `key` is the request's
    /// fair-share key, if it has one.
    pub(crate) fn admit_or_queue(self: &Arc<Self>, key: Option<u64>) -> Slow {
        let capacity = self.config.capacity;
        if let Some(rejection) = self.reject_early() {
            return Slow::Rejected(rejection);
        }
        let mut victim = None;
        let mut evicted = false;
        let outcome = {
            let mut queue = lock(&self.queue);
            let key = queue.key_of(key);
            // Read under the lock: a limit that grew before it was taken is seen here, and one
            // that grows after fills the queue under the lock (`fill`).
            let limit = self.limiter.get() as u64;
            let mut current = self.state.load(Ordering::Acquire);
            loop {
                let waiting = waiting_of(current);
                if current & CLOSED != 0 {
                    break Slow::Rejected(Overloaded::new(
                        capacity,
                        waiting,
                        OverloadReason::Closed,
                        self.config.retry_after,
                    ));
                }
                let place = if waiting == 0 && current & IN_FLIGHT_MASK < limit {
                    None
                } else {
                    Some(queue.place(key, capacity))
                };
                let next = match place {
                    None => current + 1,
                    Some(Place::Join) => current + WAITING_ONE,
                    Some(Place::OverShare) => {
                        break Slow::Rejected(Overloaded::new(
                            capacity,
                            waiting,
                            OverloadReason::FairShare,
                            self.config.retry_after,
                        ));
                    }
                    Some(place @ (Place::Evict | Place::Full))
                        if matches!(place, Place::Evict)
                            || (self.config.drop_oldest && capacity > 0) =>
                    {
                        // Counts stay the same: one waiter leaves, one joins.
                        let out = if matches!(place, Place::Evict) {
                            evicted = true;
                            queue.pop_fattest_newest()
                        } else {
                            queue.pop_oldest()
                        };
                        let out = out.expect("waiting == queue.len() under the lock");
                        let status = if evicted { EVICTED } else { DROPPED };
                        out.status.store(status, Ordering::Release);
                        victim = Some(out);
                        let slot = Arc::new(Slot::new(key));
                        queue.push(Arc::clone(&slot));
                        break Slow::Queued(Waiter {
                            shared: Arc::clone(self),
                            slot: Some(slot),
                        });
                    }
                    Some(_) => {
                        break Slow::Rejected(Overloaded::new(
                            capacity,
                            waiting,
                            OverloadReason::Full,
                            self.config.retry_after,
                        ));
                    }
                };
                match self.state.compare_exchange(
                    current,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) if next == current + 1 => {
                        break Slow::Admitted(Permit::new(Arc::clone(self)));
                    }
                    Ok(_) => {
                        let slot = Arc::new(Slot::new(key));
                        queue.push(Arc::clone(&slot));
                        break Slow::Queued(Waiter {
                            shared: Arc::clone(self),
                            slot: Some(slot),
                        });
                    }
                    Err(actual) => current = actual,
                }
            }
        };
        if let Some(victim) = victim {
            self.rejected(if evicted {
                Reason::FairShare
            } else {
                Reason::DroppedOldest
            });
            victim.wake();
        }
        if let Slow::Rejected(e) = &outcome {
            self.rejected(match e.reason() {
                OverloadReason::Closed => Reason::Closed,
                OverloadReason::FairShare => Reason::FairShare,
                _ => Reason::Full,
            });
        }
        outcome
    }

    /// Rejections that need no lock: the queue is closed, or (rejecting the newest) every slot is
    /// busy and the queue full. Keeps the cost of saying no low when it matters most.
    fn reject_early(&self) -> Option<Overloaded> {
        let state = self.state.load(Ordering::Acquire);
        let waiting = waiting_of(state);
        let capacity = self.config.capacity;
        let reason = if state & CLOSED != 0 {
            OverloadReason::Closed
        } else if !self.config.drop_oldest
            // Under fair share a full queue may still take a request (see `Place::Evict`).
            && !self.config.fair
            && waiting >= capacity
            && in_flight_of(state) >= self.limiter.get()
        {
            OverloadReason::Full
        } else {
            return None;
        };
        self.rejected(match reason {
            OverloadReason::Closed => Reason::Closed,
            _ => Reason::Full,
        });
        Some(Overloaded::new(
            capacity,
            waiting,
            reason,
            self.config.retry_after,
        ))
    }

    /// Frees a slot: hands it to the oldest waiter, or gives it back if nobody waits or the limit
    /// shrank below the requests in flight.
    fn release(&self) {
        let mut current = self.state.load(Ordering::Acquire);
        while current & WAITING_MASK == 0 {
            match self.state.compare_exchange_weak(
                current,
                current - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.notify_if_idle(current - 1);
                    return;
                }
                Err(actual) => current = actual,
            }
        }
        let next = {
            let mut queue = lock(&self.queue);
            // The limit shrank below the requests in flight: the slot is retired, waiters stay.
            let retire = in_flight_of(self.state.load(Ordering::Acquire)) > self.limiter.get();
            let next = if retire { None } else { queue.pop_next() };
            match next {
                Some(slot) => {
                    // The slot passes on: in_flight stays, one fewer waits.
                    self.state.fetch_sub(WAITING_ONE, Ordering::AcqRel);
                    slot.status.store(GRANTED, Ordering::Release);
                    Some(slot)
                }
                None => {
                    let previous = self.state.fetch_sub(1, Ordering::AcqRel);
                    self.notify_if_idle(previous - 1);
                    None
                }
            }
        };
        if let Some(slot) = next {
            slot.wake();
        }
    }

    /// After the limit grew: admits waiters, oldest first, while slots are free. Under the lock,
    /// always: a request queued by a decision that read the old limit is seen here.
    fn fill(&self) {
        loop {
            let slot = {
                let mut queue = lock(&self.queue);
                let state = self.state.load(Ordering::Acquire);
                if waiting_of(state) == 0 || in_flight_of(state) >= self.limiter.get() {
                    return;
                }
                let slot = queue
                    .pop_next()
                    .expect("waiting == queue.len() under the lock");
                // One more in flight, one fewer waits.
                self.state.fetch_sub(WAITING_ONE - 1, Ordering::AcqRel);
                slot.status.store(GRANTED, Ordering::Release);
                slot
            };
            slot.wake();
        }
    }

    /// Stops admitting. Returns whether this call closed the queue.
    pub(crate) fn close(&self) -> bool {
        let previous = self.state.fetch_or(CLOSED, Ordering::AcqRel);
        self.notify_if_idle(previous | CLOSED);
        previous & CLOSED == 0
    }

    /// Waits until nothing is in flight or queued; only meaningful once closed.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state.load(Ordering::Acquire) & !CLOSED == 0 {
                return;
            }
            notified.await;
        }
    }

    fn notify_if_idle(&self, state: u64) {
        if state == CLOSED {
            self.idle.notify_waiters();
        }
    }
}

/// One concurrency slot, held while a request is inside the inner service. Dropping it (also
/// while unwinding from a panic) frees the slot.
///
/// With an adaptive limit, the holder takes a [`Sample`] as the request enters the inner
/// service ([`start`](Self::start)) and reports it, while still holding the permit, when the
/// request completes ([`finish`](Self::finish)) or is dropped ([`cancelled`](Self::cancelled)):
/// a change of the limit then applies to this very release. The sample is kept by the holder,
/// not here, so that a permit stays one pointer on the fixed-limit success path (a permit
/// carrying it measured 5 to 11 ns more per request, `benches/queue.rs`).
#[derive(Debug)]
pub(crate) struct Permit {
    shared: Arc<Shared>,
}

impl Permit {
    fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The request enters the inner service: its sample if the limit is adaptive.
    #[inline]
    pub(crate) fn start(&self) -> Option<Sample> {
        self.shared.limiter.start(|| self.shared.in_flight())
    }

    /// The request completed, `failed` or not.
    pub(crate) fn finish(&self, sample: Sample, failed: bool) {
        self.shared.observe(sample, failed);
    }

    /// The request was dropped inside the inner service.
    pub(crate) fn cancelled(&self, sample: Sample) {
        self.shared.observe_cancelled(sample);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.release();
    }
}

/// How a wait ended.
pub(crate) enum WaitOutcome {
    /// A slot was handed over.
    Granted(Permit),
    /// A newer request pushed this one out (drop-oldest mode).
    Dropped,
    /// A request of a key under its fair share took this one's place.
    Evicted,
    /// Still waiting.
    Pending,
    /// Left the queue without a slot ([`Waiter::leave`]).
    Left,
}

/// A request waiting for a slot. Dropping it leaves the queue at once (or, if a slot was handed
/// over in the meantime, passes that slot on).
pub(crate) struct Waiter {
    shared: Arc<Shared>,
    slot: Option<Arc<Slot>>,
}

impl Waiter {
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> WaitOutcome {
        let Some(slot) = &self.slot else {
            return WaitOutcome::Dropped;
        };
        match slot.poll_status(cx) {
            GRANTED => {
                self.slot = None;
                WaitOutcome::Granted(Permit::new(Arc::clone(&self.shared)))
            }
            DROPPED => {
                self.slot = None;
                WaitOutcome::Dropped
            }
            EVICTED => {
                self.slot = None;
                WaitOutcome::Evicted
            }
            _ => WaitOutcome::Pending,
        }
    }

    /// Leaves the queue (a timeout fired). If a slot was handed over just before, it is returned
    /// instead: the request was admitted first.
    pub(crate) fn leave(&mut self) -> WaitOutcome {
        let Some(slot) = self.slot.take() else {
            return WaitOutcome::Dropped;
        };
        let status = {
            let mut queue = lock(&self.shared.queue);
            let status = slot.status.load(Ordering::Acquire);
            if status == WAITING {
                queue.remove(&slot);
                let previous = self.shared.state.fetch_sub(WAITING_ONE, Ordering::AcqRel);
                self.shared.notify_if_idle(previous - WAITING_ONE);
            }
            status
        };
        match status {
            WAITING => WaitOutcome::Left,
            GRANTED => WaitOutcome::Granted(Permit::new(Arc::clone(&self.shared))),
            EVICTED => WaitOutcome::Evicted,
            _ => WaitOutcome::Dropped,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.slot.is_some() {
            // A granted slot becomes a permit here and is released (passed on) as it drops.
            drop(self.leave());
        }
    }
}
