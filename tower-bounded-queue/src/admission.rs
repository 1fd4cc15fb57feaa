//! The admission state machine: at most `concurrency` requests inside the inner service and at
//! most `capacity` waiting, decided on counts alone.
//!
//! All counts live in one atomic word so the success path (a free slot and nobody waiting) is a
//! single compare-and-swap, with no lock and no allocation. Only requests that must wait take the
//! mutex around the wait queue.
//!
//! Invariants (checked by the stress test):
//! - `in_flight <= concurrency` and `waiting <= capacity`;
//! - `waiting > 0` implies `in_flight == concurrency`: a released slot goes straight to the oldest
//!   waiter, so nobody waits while a slot is free and late arrivals never overtake waiters;
//! - `waiting` changes only under the queue lock, so under it `waiting == queue.len()`.
//!
//! No decision depends on a pending poll (unlike `LoadShed` over `Buffer`, where tokio's coop
//! budget can make `poll_ready` pending and shed a request while the buffer is nearly empty).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::Config;
use crate::error::{OverloadReason, Overloaded};
use crate::metrics::{Metrics, Observed, Reason};
use crate::status::QueueStatus;
use crate::trace;

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

/// A poisoned lock only means another request panicked while holding it; the queue itself stays
/// consistent (every critical section leaves it valid), so keep serving.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state shared by every clone of a queue's services, its layer and its handles.
pub(crate) struct Shared {
    state: AtomicU64,
    queue: Mutex<VecDeque<Arc<Slot>>>,
    idle: Notify,
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.config.name)
            .field("in_flight", &self.in_flight())
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
                queue: Mutex::new(VecDeque::new()),
                idle: Notify::new(),
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

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    pub(crate) fn status(&self) -> QueueStatus {
        let state = self.state.load(Ordering::Acquire);
        self.config.thresholds.status(
            waiting_of(state),
            self.config.capacity,
            in_flight_of(state),
            self.config.concurrency,
        )
    }

    /// The success path: takes a free slot if one is free and nobody waits. One CAS.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let concurrency = self.config.concurrency as u64;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            if current & (CLOSED | WAITING_MASK) != 0 || current & IN_FLIGHT_MASK >= concurrency {
                return None;
            }
            match self.state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Permit {
                        shared: Arc::clone(self),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// The slow path, under the queue lock: admit, queue, drop the oldest waiter, or reject.
    pub(crate) fn admit_or_queue(self: &Arc<Self>) -> Slow {
        let concurrency = self.config.concurrency as u64;
        let capacity = self.config.capacity;
        if let Some(rejection) = self.reject_early() {
            return Slow::Rejected(rejection);
        }
        let mut victim = None;
        let outcome = {
            let mut queue = lock(&self.queue);
            let mut current = self.state.load(Ordering::Acquire);
            loop {
                let waiting = waiting_of(current);
                if current & CLOSED != 0 {
                    break Slow::Rejected(Overloaded::new(
                        capacity,
                        waiting,
                        OverloadReason::Closed,
                    ));
                }
                let next = if waiting == 0 && current & IN_FLIGHT_MASK < concurrency {
                    current + 1
                } else if waiting < capacity {
                    current + WAITING_ONE
                } else if self.config.drop_oldest && capacity > 0 {
                    // Counts stay the same: one waiter leaves, one joins.
                    let oldest = queue
                        .pop_front()
                        .expect("waiting == queue.len() under the lock");
                    oldest.status.store(DROPPED, Ordering::Release);
                    victim = Some(oldest);
                    let slot = Arc::new(Slot::new());
                    queue.push_back(Arc::clone(&slot));
                    break Slow::Queued(Waiter {
                        shared: Arc::clone(self),
                        slot: Some(slot),
                    });
                } else {
                    break Slow::Rejected(Overloaded::new(capacity, waiting, OverloadReason::Full));
                };
                match self.state.compare_exchange(
                    current,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) if next == current + 1 => {
                        break Slow::Admitted(Permit {
                            shared: Arc::clone(self),
                        });
                    }
                    Ok(_) => {
                        let slot = Arc::new(Slot::new());
                        queue.push_back(Arc::clone(&slot));
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
            self.rejected(Reason::DroppedOldest);
            victim.wake();
        }
        if let Slow::Rejected(e) = &outcome {
            self.rejected(match e.reason() {
                OverloadReason::Closed => Reason::Closed,
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
            && waiting >= capacity
            && in_flight_of(state) >= self.config.concurrency
        {
            OverloadReason::Full
        } else {
            return None;
        };
        self.rejected(match reason {
            OverloadReason::Closed => Reason::Closed,
            _ => Reason::Full,
        });
        Some(Overloaded::new(capacity, waiting, reason))
    }

    /// Frees a slot: hands it to the oldest waiter, or gives it back if nobody waits.
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
            match queue.pop_front() {
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
#[derive(Debug)]
pub(crate) struct Permit {
    shared: Arc<Shared>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.release();
    }
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const DROPPED: u8 = 2;

/// A place in the wait queue. Its status changes only under the queue lock.
pub(crate) struct Slot {
    status: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    fn new() -> Self {
        Self {
            status: AtomicU8::new(WAITING),
            waker: Mutex::new(None),
        }
    }

    fn wake(&self) {
        let waker = lock(&self.waker).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Registers the task, then reads the status (in this order, so a grant is never missed).
    fn poll_status(&self, cx: &mut Context<'_>) -> u8 {
        let status = self.status.load(Ordering::Acquire);
        if status != WAITING {
            return status;
        }
        {
            let mut waker = lock(&self.waker);
            match &*waker {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        self.status.load(Ordering::Acquire)
    }
}

/// How a wait ended.
pub(crate) enum WaitOutcome {
    /// A slot was handed over.
    Granted(Permit),
    /// A newer request pushed this one out (drop-oldest mode).
    Dropped,
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
                WaitOutcome::Granted(Permit {
                    shared: Arc::clone(&self.shared),
                })
            }
            DROPPED => {
                self.slot = None;
                WaitOutcome::Dropped
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
                if let Some(i) = queue.iter().position(|s| Arc::ptr_eq(s, &slot)) {
                    queue.remove(i);
                }
                let previous = self.shared.state.fetch_sub(WAITING_ONE, Ordering::AcqRel);
                self.shared.notify_if_idle(previous - WAITING_ONE);
            }
            status
        };
        match status {
            WAITING => WaitOutcome::Left,
            GRANTED => WaitOutcome::Granted(Permit {
                shared: Arc::clone(&self.shared),
            }),
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
