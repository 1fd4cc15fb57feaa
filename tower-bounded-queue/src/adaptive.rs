//! Adaptive concurrency: [`Adaptive`] settings and the AIMD controller that moves a queue's
//! concurrency limit between a floor and a ceiling from how its requests complete.
//!
//! The limit and the controller's window counters share one atomic word: admission reads the
//! limit with one load, and a change of the limit is one compare-and-swap. The probe counters and
//! the latency baseline are atomics of their own; nothing here takes a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Adaptive concurrency for [`BoundedQueueLayer`](crate::BoundedQueueLayer): the concurrency
/// limit moves between a floor and a ceiling by **AIMD** (additive increase, multiplicative
/// decrease) on the latency and the failures of completed requests. The queue in front keeps
/// its `capacity` and still **rejects** with [`Overloaded`](crate::Overloaded) when it is full:
/// a shrinking limit makes requests wait (up to `capacity` of them), never pile up without bound.
///
/// Set it with [`BoundedQueueBuilder::adaptive`](crate::BoundedQueueBuilder::adaptive); the limit
/// starts at the layer's `concurrency` (clamped into `[floor, ceiling]`). Read it with
/// [`QueueHandle::concurrency_limit`](crate::QueueHandle::concurrency_limit) or the gauge
/// `tower.queue.concurrency_limit`.
///
/// # The rule
///
/// Each request is observed when it completes (its response future finishes, or is dropped while
/// inside the inner service), timed from when it entered the inner service, so time spent
/// waiting in the queue never counts (in HTTP mode it completes with the response head; the body
/// streams afterwards, outside the limit, as it always has):
///
/// - **Congestion**: the inner service failed (an inner error or a panic; in [HTTP
///   mode](crate::BoundedQueueLayer::http) also a 5xx or 429 answer, or a gRPC answer whose header
///   `grpc-status` is 4, 8 or 14), or the request took longer than the latency threshold
///   (a caller that gave up, e.g. a timeout above dropping the future, counts too once it had
///   waited past the threshold). The limit is multiplied by [`backoff`](Self::backoff) (default
///   0.9, rounded down, at least one less), not below the floor, **once per window**: a
///   congestion signal from a request that started before the last decrease is ignored, so a
///   burst of slow answers caused by one overshoot is one decrease, not many.
/// - **Growth**: a window starts when the limit changes; its first `limit` requests that enter
///   the inner service while the limit is in full use (`limit` requests inside) are its
///   *probes*. Once every probe has completed without congestion, the limit grows by one, up to
///   the ceiling: one step per round trip at full use, and an unused limit never grows. Waiting
///   for every probe (not just for `limit` fast answers) matters when congestion shows late: a
///   request that had to queue upstream holds the window open until its slow answer shrinks
///   the limit, instead of letting its faster peers grow it meanwhile.
///
/// The latency threshold is [`max_latency`](Self::max_latency) if set; otherwise it is relative:
/// [`tolerance`](Self::tolerance) (default 2) times the baseline, the shortest successful
/// latency seen over the last 10 to 20 seconds, and at least 1 ms above it (so a service that
/// answers in microseconds does not see scheduling noise as congestion).
///
/// When the limit shrinks below the requests in flight, none is cancelled: new requests wait
/// (or are rejected when the queue is full) until enough have finished. When it grows, waiting
/// requests are admitted at once.
///
/// # Why AIMD
///
/// AIMD reacts to exactly the two signals the queue observes (a failure, a slow answer) with a
/// rule that fits in a paragraph: no smoothing constants to tune, no filter to warm up. Under
/// tokio's paused clock it is deterministic, so every step of it is tested exactly. Gradient2
/// (Netflix's concurrency-limits) follows the ratio of a long-term to a short-term latency
/// average: smoother when latency is noisy, but its limit depends on averaging constants and
/// sample history, which makes it harder to predict, to explain to an operator and to test. The
/// once-per-window rules keep AIMD's sawtooth small: against an upstream that serves `N` at once
/// (and answers slowly past that) the limit settles between `⌊(N + 1) · backoff⌋` and `N + 1`,
/// 9 to 11 for `N` = 10 (`tests/adaptive.rs`, against a real server).
///
/// # Bad values
///
/// Clamped, never a panic (as the layer's other settings): a floor of 0 is 1; a floor above the
/// ceiling swaps the two; the ceiling is at most 2^30; a backoff outside `[0, 0.99]` is clamped
/// into it and NaN means the default 0.9; a tolerance below 1 is 1 and NaN means the default 2
/// (infinity means latency never counts, only failures).
///
/// ```
/// use tower::{Layer, Service, ServiceExt, service_fn};
/// use tower_bounded_queue::{Adaptive, BoundedQueueBuilder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let layer = BoundedQueueBuilder::new(4) // the limit starts at 4
///     .capacity(100)
///     .adaptive(Adaptive::aimd().floor(2).ceiling(64).backoff(0.5))
///     .build();
/// let handle = layer.handle();
/// assert_eq!(handle.concurrency_limit(), 4);
///
/// let mut svc = layer.layer(service_fn(|fail: bool| async move {
///     if fail { Err("upstream failed") } else { Ok::<_, &str>("ok") }
/// }));
/// assert_eq!(svc.ready().await?.call(false).await?, "ok");
/// assert!(svc.ready().await?.call(true).await.is_err());
/// assert_eq!(handle.concurrency_limit(), 2, "an error halved it (backoff 0.5)");
/// assert!(svc.ready().await?.call(true).await.is_err());
/// assert_eq!(handle.concurrency_limit(), 2, "never below the floor");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Adaptive {
    floor: usize,
    ceiling: usize,
    backoff: f64,
    tolerance: f64,
    max_latency: Option<Duration>,
}

/// The default ceiling.
const DEFAULT_CEILING: usize = 1000;
/// The default multiplicative decrease.
const DEFAULT_BACKOFF: f64 = 0.9;
/// The largest backoff: anything closer to 1 decreases by one step at most limits anyway.
const MAX_BACKOFF: f64 = 0.99;
/// The default latency tolerance, relative to the baseline.
const DEFAULT_TOLERANCE: f64 = 2.0;
/// The least a relative latency threshold lies above the baseline.
const MIN_SLACK: Duration = Duration::from_millis(1);
/// The baseline is the shortest latency of the current and the previous window of this length.
const BASELINE_WINDOW: Duration = Duration::from_secs(10);

impl Default for Adaptive {
    fn default() -> Self {
        Self::aimd()
    }
}

impl Adaptive {
    /// The floor the limit never goes below.
    pub(crate) fn floor_value(&self) -> usize {
        self.floor
    }
}

impl Adaptive {
    /// AIMD with the defaults: floor 1, ceiling 1000, backoff 0.9, latency threshold twice the
    /// baseline (at least 1 ms above it).
    pub fn aimd() -> Self {
        Self {
            floor: 1,
            ceiling: DEFAULT_CEILING,
            backoff: DEFAULT_BACKOFF,
            tolerance: DEFAULT_TOLERANCE,
            max_latency: None,
        }
    }

    /// The lowest the limit goes (default 1; 0 is taken as 1).
    pub fn floor(mut self, floor: usize) -> Self {
        self.floor = floor;
        self
    }

    /// The highest the limit goes (default 1000; at most 2^30).
    pub fn ceiling(mut self, ceiling: usize) -> Self {
        self.ceiling = ceiling;
        self
    }

    /// The factor the limit is multiplied by on congestion, rounded down and at least one less
    /// (default 0.9; clamped to `[0, 0.99]`, NaN means the default). 0 drops to the floor.
    pub fn backoff(mut self, backoff: f64) -> Self {
        self.backoff = backoff;
        self
    }

    /// A request slower than `tolerance` times the baseline (the shortest successful latency of
    /// the last 10 to 20 s), and at least 1 ms slower than it, counts as congestion (default 2;
    /// at least 1, NaN means the default, infinity means latency never counts). Ignored when
    /// [`max_latency`](Self::max_latency) is set.
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// A fixed latency threshold instead of the relative one: a request slower than this counts
    /// as congestion. Suits services whose normal latency is known, or varies too much for a
    /// baseline.
    pub fn max_latency(mut self, max_latency: Duration) -> Self {
        self.max_latency = Some(max_latency);
        self
    }

    /// The settings with every value in range, as documented on [`Adaptive`].
    pub(crate) fn clamped(self, max_limit: usize) -> Self {
        let floor = self.floor.clamp(1, max_limit);
        let ceiling = self.ceiling.clamp(1, max_limit);
        let backoff = if self.backoff.is_nan() {
            DEFAULT_BACKOFF
        } else {
            self.backoff.clamp(0.0, MAX_BACKOFF)
        };
        let tolerance = if self.tolerance.is_nan() {
            DEFAULT_TOLERANCE
        } else {
            self.tolerance.max(1.0)
        };
        Self {
            floor: floor.min(ceiling),
            ceiling: floor.max(ceiling),
            backoff,
            tolerance,
            max_latency: self.max_latency,
        }
    }
}

// The control word: the limit in the low 32 bits (it is at most 2^30), then two 16-bit
// counters: changes of the limit, and decreases. A request records both when it enters the
// inner service; they tell whether the limit changed (or shrank) while it ran. They wrap after
// 65536 changes during one request's life, which at worst lets that request make one more
// adjustment.
const LIMIT_MASK: u64 = 0xFFFF_FFFF;
const CHANGE_ONE: u64 = 1 << 32;
const DECREASE_ONE: u64 = 1 << 48;
const COUNTER_MASK: u64 = 0xFFFF;

fn limit_of(word: u64) -> usize {
    (word & LIMIT_MASK) as usize
}

fn changes_of(word: u64) -> u64 {
    (word >> 32) & COUNTER_MASK
}

fn decreases_of(word: u64) -> u64 {
    (word >> 48) & COUNTER_MASK
}

// The probe counters: the changes counter of their window in the top 16 bits, a count below.
const STAMP_SHIFT: u32 = 48;
const COUNT_MASK: u64 = (1 << STAMP_SHIFT) - 1;

/// A request inside the inner service, as the controller needs it when it completes. 16 bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// Nanoseconds since the controller's origin when it entered the inner service.
    start: u64,
    /// The control word's counters then (its high half).
    counters: u32,
    /// One of its window's probes.
    probe: bool,
}

impl Sample {
    /// The control word's bits it recorded (the limit bits are zero).
    fn word(&self) -> u64 {
        u64::from(self.counters) << 32
    }
}

/// Why the limit changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// A window's probes all completed without congestion.
    Fast,
    /// An answer slower than the threshold.
    Slow,
    /// The inner service failed.
    Failed,
    /// A caller gave up after waiting past the threshold.
    Cancelled,
}

impl Cause {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cause::Fast => "fast",
            Cause::Slow => "slow",
            Cause::Failed => "failed",
            Cause::Cancelled => "cancelled",
        }
    }
}

/// A change of the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) cause: Cause,
}

/// The concurrency limit admission reads: fixed, or moved by the AIMD controller.
pub(crate) struct Limiter {
    word: AtomicU64,
    aimd: Option<Aimd>,
}

struct Aimd {
    settings: Adaptive,
    /// Probes handed out in the window stamped on it.
    probes: AtomicU64,
    /// Probes of the window stamped on it that completed without congestion.
    probes_done: AtomicU64,
    origin: Instant,
    baseline: Baseline,
}

impl Limiter {
    /// A fixed limit, or (with settings, already clamped) an adaptive one starting at `initial`
    /// clamped into `[floor, ceiling]`.
    pub(crate) fn new(initial: usize, adaptive: Option<&Adaptive>) -> Self {
        match adaptive {
            None => Self {
                word: AtomicU64::new(initial as u64),
                aimd: None,
            },
            Some(settings) => Self {
                word: AtomicU64::new(initial.clamp(settings.floor, settings.ceiling) as u64),
                aimd: Some(Aimd {
                    settings: settings.clone(),
                    probes: AtomicU64::new(0),
                    probes_done: AtomicU64::new(0),
                    origin: Instant::now(),
                    baseline: Baseline::new(),
                }),
            },
        }
    }

    /// The limit now: one load.
    #[inline]
    pub(crate) fn get(&self) -> usize {
        limit_of(self.word.load(Ordering::Relaxed))
    }

    /// The adaptive settings, if the limit is adaptive.
    pub(crate) fn settings(&self) -> Option<&Adaptive> {
        self.aimd.as_ref().map(|a| &a.settings)
    }

    /// A request enters the inner service with `in_flight` requests (itself included) inside:
    /// its sample, if the limit is adaptive.
    #[inline]
    pub(crate) fn start(&self, in_flight: impl FnOnce() -> usize) -> Option<Sample> {
        let aimd = self.aimd.as_ref()?;
        let start = aimd.now();
        let word = self.word.load(Ordering::Acquire);
        let probe = in_flight() >= limit_of(word) && self.take_probe(aimd, word);
        Some(Sample {
            start,
            counters: (word >> 32) as u32,
            probe,
        })
    }

    /// One of the first `limit` places of the window `word` is in, if one is left.
    fn take_probe(&self, aimd: &Aimd, word: u64) -> bool {
        let stamp = changes_of(word);
        let mut probes = aimd.probes.load(Ordering::Acquire);
        loop {
            let next = if probes >> STAMP_SHIFT == stamp {
                if probes & COUNT_MASK >= limit_of(word) as u64 {
                    return false;
                }
                probes + 1
            } else if changes_of(self.word.load(Ordering::Acquire)) == stamp {
                // The counter is an earlier window's: this window's first probe.
                (stamp << STAMP_SHIFT) | 1
            } else {
                // The limit changed since `word` was read: this request is stale already.
                return false;
            };
            match aimd.probes.compare_exchange_weak(
                probes,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => probes = actual,
            }
        }
    }

    /// A request completed, `failed` or not.
    pub(crate) fn finish(&self, sample: Sample, failed: bool) -> Option<Change> {
        let aimd = self.aimd.as_ref()?;
        let now = aimd.now();
        let latency = now.saturating_sub(sample.start);
        if failed {
            return self.decrease(aimd, sample, Cause::Failed);
        }
        aimd.baseline.record(latency, now);
        if latency > aimd.threshold() {
            return self.decrease(aimd, sample, Cause::Slow);
        }
        self.increase(aimd, sample)
    }

    /// A request was dropped inside the inner service (its caller gave up): congestion if it
    /// had been running longer than the threshold; otherwise a probe done without congestion.
    pub(crate) fn cancelled(&self, sample: Sample) -> Option<Change> {
        let aimd = self.aimd.as_ref()?;
        let latency = aimd.now().saturating_sub(sample.start);
        if latency > aimd.threshold() {
            self.decrease(aimd, sample, Cause::Cancelled)
        } else {
            self.increase(aimd, sample)
        }
    }

    /// Multiplicative decrease, unless the limit already shrank since the sample started.
    fn decrease(&self, aimd: &Aimd, sample: Sample, cause: Cause) -> Option<Change> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            if decreases_of(word) != decreases_of(sample.word()) {
                return None;
            }
            let from = limit_of(word);
            let scaled = (from as f64 * aimd.settings.backoff) as usize;
            let to = scaled.min(from - 1).max(aimd.settings.floor);
            if to >= from {
                return None;
            }
            let next = next_word(word, to, DECREASE_ONE);
            match self
                .word
                .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Change { from, to, cause }),
                Err(actual) => word = actual,
            }
        }
    }

    /// A probe completed without congestion: additive increase once all of its window's have.
    fn increase(&self, aimd: &Aimd, sample: Sample) -> Option<Change> {
        if !sample.probe {
            return None;
        }
        let word = self.word.load(Ordering::Acquire);
        let stamp = changes_of(sample.word());
        let from = limit_of(word);
        if changes_of(word) != stamp || from >= aimd.settings.ceiling {
            return None;
        }
        let mut done = aimd.probes_done.load(Ordering::Acquire);
        let counted = loop {
            let next = if done >> STAMP_SHIFT == stamp {
                done + 1
            } else if changes_of(self.word.load(Ordering::Acquire)) == stamp {
                (stamp << STAMP_SHIFT) | 1
            } else {
                return None;
            };
            match aimd.probes_done.compare_exchange_weak(
                done,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break next & COUNT_MASK,
                Err(actual) => done = actual,
            }
        };
        if counted < from as u64 {
            return None;
        }
        let to = from + 1;
        // Fails if the limit changed meanwhile: then this window is over anyway.
        self.word
            .compare_exchange(
                word,
                next_word(word, to, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()?;
        Some(Change {
            from,
            to,
            cause: Cause::Fast,
        })
    }
}

/// The word with limit `to`, one more change, and `extra` added (one more decrease, or 0).
fn next_word(word: u64, to: usize, extra: u64) -> u64 {
    let counters = word & !LIMIT_MASK;
    let changes = counters.wrapping_add(CHANGE_ONE) & (COUNTER_MASK << 32);
    let decreases = counters.wrapping_add(extra) & (COUNTER_MASK << 48);
    decreases | changes | to as u64
}

impl Aimd {
    /// Nanoseconds since the origin on tokio's clock (paused in tests).
    fn now(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The latency above which a request counts as congestion, in nanoseconds.
    fn threshold(&self) -> u64 {
        if let Some(max) = self.settings.max_latency {
            return u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        }
        let baseline = self.baseline.get();
        if baseline == u64::MAX {
            return u64::MAX;
        }
        let scaled = baseline as f64 * self.settings.tolerance;
        // 0 × infinity is NaN: infinite tolerance means latency never counts.
        let scaled = if scaled.is_finite() {
            scaled as u64
        } else {
            u64::MAX
        };
        scaled.max(baseline.saturating_add(MIN_SLACK.as_nanos() as u64))
    }
}

/// The shortest successful latency of the current and the previous window, lock-free.
struct Baseline {
    window_start: AtomicU64,
    current: AtomicU64,
    previous: AtomicU64,
}

impl Baseline {
    fn new() -> Self {
        Self {
            window_start: AtomicU64::new(0),
            current: AtomicU64::new(u64::MAX),
            previous: AtomicU64::new(u64::MAX),
        }
    }

    fn record(&self, latency: u64, now: u64) {
        let window = BASELINE_WINDOW.as_nanos() as u64;
        let start = self.window_start.load(Ordering::Relaxed);
        let age = now.saturating_sub(start);
        if age >= window
            && self
                .window_start
                .compare_exchange(start, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // A new window: the current one becomes the previous (or, after a silence longer
            // than a window, nothing does).
            let ended = self.current.swap(latency, Ordering::Relaxed);
            let previous = if age < 2 * window { ended } else { u64::MAX };
            self.previous.store(previous, Ordering::Relaxed);
            return;
        }
        if latency < self.current.load(Ordering::Relaxed) {
            self.current.fetch_min(latency, Ordering::Relaxed);
        }
    }

    /// Nanoseconds, or `u64::MAX` before any success.
    fn get(&self) -> u64 {
        self.current
            .load(Ordering::Relaxed)
            .min(self.previous.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(initial: usize, settings: Adaptive) -> Limiter {
        Limiter::new(initial, Some(&settings.clamped(1 << 30)))
    }

    #[test]
    fn the_counters_wrap_without_touching_the_limit() {
        let word = (COUNTER_MASK << 32) | (COUNTER_MASK << 48) | 7;
        let next = next_word(word, 6, DECREASE_ONE);
        assert_eq!(limit_of(next), 6);
        assert_eq!((changes_of(next), decreases_of(next)), (0, 0));
        let next = next_word(word, 8, 0);
        assert_eq!(limit_of(next), 8);
        assert_eq!((changes_of(next), decreases_of(next)), (0, COUNTER_MASK));
    }

    #[tokio::test(start_paused = true)]
    async fn one_decrease_per_window_and_growth_once_every_probe_is_back() {
        let l = limiter(4, Adaptive::aimd().backoff(0.5));
        // Two requests start together; both fail: one decrease.
        let (a, b) = (l.start(|| 1).unwrap(), l.start(|| 2).unwrap());
        assert_eq!(l.finish(a, true).map(|c| c.to), Some(2));
        assert_eq!(l.finish(b, true), None, "same window");
        // Not at full use (1 of 2 inside): no probe. Then two probes and a third request.
        let idle = l.start(|| 1).unwrap();
        let (p, q, r) = (
            l.start(|| 2).unwrap(),
            l.start(|| 2).unwrap(),
            l.start(|| 2).unwrap(),
        );
        assert!(!idle.probe && p.probe && q.probe && !r.probe);
        assert_eq!(l.finish(idle, false), None);
        assert_eq!(l.finish(r, false), None, "not a probe");
        assert_eq!(l.finish(p, false), None, "one probe of two");
        assert_eq!(l.finish(q, false).map(|c| c.to), Some(3));
        // A new window: fresh probes; a cancellation before the threshold counts as done.
        let (s, t, u) = (
            l.start(|| 3).unwrap(),
            l.start(|| 3).unwrap(),
            l.start(|| 3).unwrap(),
        );
        assert_eq!(l.finish(s, false), None);
        assert_eq!(l.cancelled(t), None);
        assert_eq!(l.finish(u, false).map(|c| c.to), Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn the_relative_threshold_follows_the_baseline_with_a_minimum_slack() {
        let l = limiter(10, Adaptive::aimd());
        let aimd = l.aimd.as_ref().unwrap();
        assert_eq!(aimd.threshold(), u64::MAX, "no baseline yet");
        let s = l.start(|| 1).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(l.finish(s, false), None);
        assert_eq!(aimd.threshold(), 20_000_000);
        // A slow one shrinks the limit.
        let s = l.start(|| 1).unwrap();
        tokio::time::advance(Duration::from_millis(21)).await;
        assert_eq!(
            l.finish(s, false).map(|c| (c.to, c.cause)),
            Some((9, Cause::Slow))
        );
        // Microsecond answers: the threshold stays 1 ms above the baseline.
        let l = limiter(10, Adaptive::aimd());
        let s = l.start(|| 1).unwrap();
        tokio::time::advance(Duration::from_micros(5)).await;
        l.finish(s, false);
        assert_eq!(l.aimd.as_ref().unwrap().threshold(), 1_005_000);
    }

    #[test]
    fn the_baseline_forgets_after_two_windows() {
        let b = Baseline::new();
        let w = BASELINE_WINDOW.as_nanos() as u64;
        b.record(5, 1);
        b.record(9, w + 1); // a new window: 5 is the previous one's
        assert_eq!(b.get(), 5);
        b.record(20, 2 * w + 2); // 9 is the previous window's, 5 forgotten
        assert_eq!(b.get(), 9);
        b.record(30, 5 * w); // after a silence, nothing of before counts
        assert_eq!(b.get(), 30);
    }

    #[test]
    fn bad_settings_are_clamped() {
        let s = Adaptive::aimd()
            .floor(9)
            .ceiling(0)
            .backoff(f64::NAN)
            .tolerance(0.5)
            .clamped(1 << 30);
        assert_eq!((s.floor, s.ceiling), (1, 9));
        assert_eq!((s.backoff, s.tolerance), (DEFAULT_BACKOFF, 1.0));
        let s = Adaptive::aimd()
            .ceiling(usize::MAX)
            .backoff(7.0)
            .tolerance(f64::NAN)
            .clamped(1 << 30);
        assert_eq!(s.ceiling, 1 << 30);
        assert_eq!((s.backoff, s.tolerance), (MAX_BACKOFF, DEFAULT_TOLERANCE));
    }
}
