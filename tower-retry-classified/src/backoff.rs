//! Exponential backoff with jitter (AWS Architecture Blog, "Exponential Backoff and Jitter").

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a backoff delay is randomised, so that clients that failed together do not retry together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jitter {
    /// The exact exponential delay.
    None,
    /// Uniform in `[0, delay]` (the default: fewest collisions, least total work).
    #[default]
    Full,
    /// Half the delay plus uniform in `[0, delay / 2]`: never retries immediately.
    Equal,
    /// Uniform in `[base, 3 × previous delay]`, capped: spreads retries without a fixed
    /// schedule.
    Decorrelated,
}

/// Exponential backoff: `base × factor^n` before the `n`-th retry (counting from 0), capped per
/// delay, then jittered.
///
/// The default is base 100 ms, factor 2, cap 10 s, full jitter: 100, 200, 400, 800 ms before
/// jitter.
///
/// ```
/// use std::time::Duration;
/// use tower_retry_classified::{Backoff, Jitter};
///
/// let backoff = Backoff::default().jitter(Jitter::None);
/// let delays: Vec<_> = (0..4).map(|n| backoff.base_delay(n)).collect();
/// assert_eq!(delays, [100, 200, 400, 800].map(Duration::from_millis));
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    factor: u32,
    max_delay: Duration,
    jitter: Jitter,
    rng: Option<Arc<Mutex<fastrand::Rng>>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Exponential backoff from `base`, factor 2, cap 10 s, full jitter.
    pub fn exponential(base: Duration) -> Self {
        Self {
            base,
            factor: 2,
            max_delay: Duration::from_secs(10),
            jitter: Jitter::Full,
            rng: None,
        }
    }

    /// Sets the growth factor. A factor of 0 is treated as 1 (constant delay).
    pub fn factor(mut self, factor: u32) -> Self {
        self.factor = factor.max(1);
        self
    }

    /// Caps each single delay (before jitter). Default 10 s.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// Sets the jitter. Default [`Jitter::Full`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Draws jitter from a deterministic generator seeded with `seed`, shared by all clones, for
    /// reproducible tests. Without it, fastrand's thread-local generator is used.
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = Some(Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))));
        self
    }

    /// The configured jitter.
    pub fn jitter_kind(&self) -> Jitter {
        self.jitter
    }

    /// The delay before retry `n` (0 for the first retry) before jitter:
    /// `min(base × factor^n, max_delay)`, saturating instead of overflowing.
    pub fn base_delay(&self, n: u32) -> Duration {
        let mult = self.factor.checked_pow(n).unwrap_or(u32::MAX);
        self.base
            .checked_mul(mult)
            .unwrap_or(Duration::MAX)
            .min(self.max_delay)
    }

    /// The jittered delay before retry `n`, given the previous jittered delay (used by
    /// [`Jitter::Decorrelated`]; pass zero for the first retry).
    pub fn delay(&self, n: u32, previous: Duration) -> Duration {
        let cap = self.base_delay(n);
        match self.jitter {
            Jitter::None => cap,
            Jitter::Full => self.uniform(Duration::ZERO, cap),
            Jitter::Equal => {
                let half = cap / 2;
                half + self.uniform(Duration::ZERO, cap - half)
            }
            Jitter::Decorrelated => {
                let lo = self.base.min(self.max_delay);
                let prev = if previous.is_zero() { lo } else { previous };
                let hi = prev.saturating_mul(3).min(self.max_delay).max(lo);
                self.uniform(lo, hi)
            }
        }
    }

    fn uniform(&self, lo: Duration, hi: Duration) -> Duration {
        let lo_n = u64::try_from(lo.as_nanos()).unwrap_or(u64::MAX);
        let hi_n = u64::try_from(hi.as_nanos()).unwrap_or(u64::MAX).max(lo_n);
        let n = match &self.rng {
            Some(rng) => {
                // A poisoned lock only means another thread panicked mid-draw; the generator
                // state is still valid.
                let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
                rng.u64(lo_n..=hi_n)
            }
            None => fastrand::u64(lo_n..=hi_n),
        };
        Duration::from_nanos(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn exponential_schedule_and_cap() {
        let b = Backoff::default().jitter(Jitter::None);
        assert_eq!(
            (0..6)
                .map(|n| b.delay(n, Duration::ZERO))
                .collect::<Vec<_>>(),
            [100, 200, 400, 800, 1600, 3200].map(MS)
        );
        let capped = b.clone().max_delay(MS(500));
        assert_eq!(capped.base_delay(3), MS(500));
        assert_eq!(b.base_delay(1000), Duration::from_secs(10));
        assert_eq!(
            Backoff::exponential(Duration::MAX).base_delay(5),
            Duration::from_secs(10)
        );
        assert_eq!(b.clone().factor(0).base_delay(7), MS(100));
    }

    #[test]
    fn full_jitter_within_zero_and_cap() {
        let b = Backoff::default().seed(7);
        let mut seen_low = false;
        for n in 0..4 {
            for _ in 0..500 {
                let d = b.delay(n, Duration::ZERO);
                assert!(d <= b.base_delay(n));
                seen_low |= d < b.base_delay(n) / 2;
            }
        }
        assert!(seen_low);
    }

    #[test]
    fn equal_jitter_at_least_half() {
        let b = Backoff::default().jitter(Jitter::Equal).seed(1);
        for _ in 0..500 {
            let d = b.delay(2, Duration::ZERO);
            assert!(d >= MS(200) && d <= MS(400), "{d:?}");
        }
    }

    #[test]
    fn decorrelated_between_base_and_three_times_previous() {
        let b = Backoff::default().jitter(Jitter::Decorrelated).seed(3);
        let mut prev = Duration::ZERO;
        for n in 0..50 {
            let d = b.delay(n, prev);
            let upper = if prev.is_zero() { MS(300) } else { prev * 3 };
            assert!(d >= MS(100) && d <= upper.min(Duration::from_secs(10)));
            prev = d;
        }
    }

    #[test]
    fn seeded_is_reproducible() {
        let a = Backoff::default().seed(42);
        let b = Backoff::default().seed(42);
        for n in 0..4 {
            assert_eq!(a.delay(n, Duration::ZERO), b.delay(n, Duration::ZERO));
        }
    }
}
