//! A retry budget in the style of Finagle's `RetryBudget` (also Envoy's retry budgets): retries
//! may add at most a fraction of the request load, plus a small floor so that low-traffic
//! clients can still retry.
//!
//! Counting is lock-free: requests and retries land in per-second slots of a ring of atomics
//! (one `load` plus one `fetch_add` per request), so concurrent callers do not serialise on a
//! lock the way tower's `TpsBudget` does. Request counts are further sharded per thread onto
//! separate cache lines, so cores do not fight over one counter on every call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Maximum number of one-second slots (Finagle allows windows of 1 to 60 s).
const MAX_SLOTS: usize = 60;

/// The default window: long enough to smooth a burst, short enough to follow a recovery.
const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// The default share of retries per request (20%): a full outage adds at most a fifth more load.
const DEFAULT_RATIO: f64 = 0.2;

/// The largest ratio accepted.
const MAX_RATIO: f64 = 1000.0;

/// Shards of the request counter per slot (and of the retry service's configuration); each
/// thread sticks to one.
pub(crate) const SHARDS: usize = 8;

/// A counter on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

std::thread_local! {
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// This thread's shard, in `0..SHARDS`.
pub(crate) fn shard() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    SHARD
        .try_with(|cell| {
            let mut shard = cell.get();
            if shard == usize::MAX {
                shard = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
                cell.set(shard);
            }
            shard
        })
        .unwrap_or(0)
}

/// A retry budget, shared by every clone of the layer (and by any layer it is given to).
///
/// Over a sliding `window` (default 10 s), the retries allowed are
/// `min_per_sec × window + ratio × requests` (default floor 10/s, ratio 0.2). Cloning shares the
/// same counters.
///
/// ```
/// use std::time::Duration;
/// use tower_retry_classified::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.5);
/// budget.deposit();
/// budget.deposit();
/// assert!(budget.withdraw()); // 2 requests × 0.5 = 1 retry
/// assert!(!budget.withdraw());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    start: Instant,
    slots: usize,
    reserve: f64,
    ratio: f64,
    /// Per-second slot: epoch (seconds since `start`, plus one) in the high 32 bits, count below.
    /// Requests: `SHARDS` padded counters per slot. Retries (rare): one counter per slot.
    deposits: Box<[Padded]>,
    withdrawals: Box<[AtomicU64]>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW, 10, DEFAULT_RATIO)
    }
}

impl RetryBudget {
    /// A budget over `window` allowing `min_per_sec` retries per second regardless of load plus
    /// `ratio` retries per request (0.2 means 20%).
    ///
    /// Clamped like every setting of the family: `window` to 1..=60 s in whole seconds
    /// (sub-second parts rounded up), `ratio` to 0.0..=1000.0 (NaN means the default 0.2).
    pub fn new(window: Duration, min_per_sec: u32, ratio: f64) -> Self {
        // Saturating: `Duration::MAX` has `u64::MAX` whole seconds and a fraction.
        let secs = window
            .as_secs()
            .saturating_add(u64::from(window.subsec_nanos() > 0))
            .clamp(1, MAX_SLOTS as u64);
        let ratio = if ratio.is_nan() {
            DEFAULT_RATIO
        } else {
            ratio.clamp(0.0, MAX_RATIO)
        };
        let slots = secs as usize;
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                slots,
                reserve: f64::from(min_per_sec) * secs as f64,
                ratio,
                deposits: (0..slots * SHARDS).map(|_| Padded::default()).collect(),
                withdrawals: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            }),
        }
    }

    /// Records one request (not a retry). Called once per call by the retry service.
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    pub(crate) fn deposit_at(&self, now: Instant) {
        let inner = &*self.inner;
        let epoch = inner.epoch_at(now);
        let slot = (epoch % inner.slots as u64) as usize;
        add(&inner.deposits[slot * SHARDS + shard()].0, epoch);
    }

    /// Asks for one retry: `true` (and counted) if the budget allows it.
    ///
    /// Under concurrency the check and the count are not one atomic step, so simultaneous
    /// callers may overshoot the budget by at most their number.
    pub fn withdraw(&self) -> bool {
        let inner = &*self.inner;
        let epoch = inner.epoch();
        let deposits = inner.deposits_in_window(epoch) as f64;
        let withdrawals = sum(inner.withdrawals.iter(), inner.slots, epoch) as f64;
        if inner.reserve + inner.ratio * deposits - withdrawals >= 1.0 {
            let slot = (epoch % inner.slots as u64) as usize;
            add(&inner.withdrawals[slot], epoch);
            true
        } else {
            false
        }
    }

    /// Retries still allowed right now (rounded down).
    pub fn balance(&self) -> u64 {
        balance(&self.inner)
    }

    /// A reference that does not keep the budget alive (for a gauge's callback).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }
}

/// Retries `inner` still allows right now (rounded down).
pub(crate) fn balance(inner: &Inner) -> u64 {
    let epoch = inner.epoch();
    let deposits = inner.deposits_in_window(epoch) as f64;
    let withdrawals = sum(inner.withdrawals.iter(), inner.slots, epoch) as f64;
    (inner.reserve + inner.ratio * deposits - withdrawals).max(0.0) as u64
}

impl Inner {
    fn epoch(&self) -> u64 {
        self.epoch_at(Instant::now())
    }

    fn epoch_at(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs() + 1
    }

    fn deposits_in_window(&self, epoch: u64) -> u64 {
        sum(self.deposits.iter().map(|p| &p.0), self.slots, epoch)
    }
}

fn add(slot: &AtomicU64, epoch: u64) {
    let mut cur = slot.load(Ordering::Relaxed);
    loop {
        if cur >> 32 == epoch {
            // Fast path: same second, just count. (The count lives in the low bits and cannot
            // reach 2^32 within one second.)
            slot.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if cur >> 32 > epoch {
            // Another thread already moved this slot a full window ahead; our second is gone.
            return;
        }
        match slot.compare_exchange_weak(
            cur,
            (epoch << 32) | 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

fn sum<'a>(counters: impl Iterator<Item = &'a AtomicU64>, slots: usize, epoch: u64) -> u64 {
    counters
        .map(|slot| slot.load(Ordering::Relaxed))
        .filter(|v| {
            let e = v >> 32;
            e != 0 && e <= epoch && epoch - e < slots as u64
        })
        .map(|v| v & 0xFFFF_FFFF)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn windows_are_whole_seconds_within_bounds() {
        // The floor fills the whole window: its length in seconds is the balance at 1/s.
        assert_eq!(RetryBudget::new(Duration::ZERO, 1, 0.2).balance(), 1);
        assert_eq!(
            RetryBudget::new(Duration::from_millis(1500), 1, 0.2).balance(),
            2
        );
        assert_eq!(
            RetryBudget::new(Duration::from_secs(61), 1, 0.2).balance(),
            60
        );
    }

    #[tokio::test(start_paused = true)]
    async fn floor_then_ratio() {
        let budget = RetryBudget::new(Duration::from_secs(10), 1, 0.1);
        // Floor: 1/s × 10 s.
        let mut allowed = 0;
        while budget.withdraw() {
            allowed += 1;
        }
        assert_eq!(allowed, 10);
        for _ in 0..100 {
            budget.deposit();
        }
        // 100 requests × 0.1 = 10 more.
        let mut more = 0;
        while budget.withdraw() {
            more += 1;
        }
        assert_eq!(more, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn window_slides() {
        let budget = RetryBudget::new(Duration::from_secs(2), 0, 1.0);
        budget.deposit();
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        tokio::time::advance(Duration::from_secs(1)).await;
        budget.deposit();
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        // The first second's request and retry have left the window; the second's remain.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(budget.balance(), 0);
        budget.deposit();
        assert_eq!(budget.balance(), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(budget.balance(), 0);
        budget.deposit();
        budget.deposit();
        assert_eq!(budget.balance(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share() {
        let a = RetryBudget::new(Duration::from_secs(1), 0, 1.0);
        let b = a.clone();
        a.deposit();
        assert!(b.withdraw());
        assert!(!a.withdraw());
    }
}
