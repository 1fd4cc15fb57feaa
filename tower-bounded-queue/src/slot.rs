//! A place in the wait queue, and the lock every queue structure is taken with: below both the
//! admission state machine (`admission`) and the lines of waiters (`waiting`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Waker};

/// A poisoned lock only means another request panicked while holding it; the queue itself stays
/// consistent (every critical section leaves it valid), so keep serving.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A slot's status: waiting, handed a slot, or pushed out (drop-oldest, or fair share).
pub(crate) const WAITING: u8 = 0;
pub(crate) const GRANTED: u8 = 1;
pub(crate) const DROPPED: u8 = 2;
/// Pushed out by a request of a key under its fair share.
pub(crate) const EVICTED: u8 = 3;

/// A place in the wait queue. Its status changes only under the queue lock.
pub(crate) struct Slot {
    pub(crate) status: AtomicU8,
    waker: Mutex<Option<Waker>>,
    /// The fair-share key it waits under ([`crate::waiting::SHARED_KEY`] without fair share).
    pub(crate) key: u64,
}

impl Slot {
    pub(crate) fn new(key: u64) -> Self {
        Self {
            status: AtomicU8::new(WAITING),
            waker: Mutex::new(None),
            key,
        }
    }

    pub(crate) fn wake(&self) {
        let waker = lock(&self.waker).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Registers the task, then reads the status (in this order, so a grant is never missed).
    pub(crate) fn poll_status(&self, cx: &mut Context<'_>) -> u8 {
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
