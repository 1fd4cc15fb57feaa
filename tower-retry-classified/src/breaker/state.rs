//! The breaker's state machine: closed, open, half-open, with time passed in so that every
//! transition is exact under test.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerConfig;
use crate::error::CircuitOpen;

/// The breaker's state, as the `tower.circuit.state` gauge reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// A few probe calls go through; their outcomes decide.
    HalfOpen,
    /// Calls are refused at once with [`CircuitOpen`].
    Open,
}

impl CircuitState {
    /// The stable lower-case name, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }

    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub fn as_level(self) -> u64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

/// What a call was let through as: its outcome is counted differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// A call while closed, counted in the window.
    Normal,
    /// One of the half-open probes.
    Probe,
}

/// A change of state, for the transitions counter and the log.
pub(crate) type Transition = (CircuitState, CircuitState);

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

/// Outcomes of calls in the last `window`, in `buckets` slices so old ones fall out. Atomic, so
/// that a call in the closed state counts its outcome without taking the breaker's lock.
#[derive(Debug)]
pub(crate) struct Window {
    /// Per slice: which slice of time since `origin` it holds (high 32 bits) and its calls
    /// (low 32 bits).
    slices: Box<[AtomicU64]>,
    /// Per slice: failures, reset when the slice moves on.
    failures: Box<[AtomicU32]>,
    slice_len: Duration,
    origin: Instant,
}

impl Window {
    pub(crate) fn new(config: &BreakerConfig, origin: Instant) -> Self {
        let n = config.buckets as usize;
        Self {
            slices: (0..n).map(|_| AtomicU64::new(0)).collect(),
            failures: (0..n).map(|_| AtomicU32::new(0)).collect(),
            slice_len: config.window / config.buckets,
            origin,
        }
    }

    fn index_at(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        // Slice 0 is "empty": indexes start at 1.
        (since / self.slice_len.as_nanos().max(1)) as u64 % (1 << 31) + 1
    }

    pub(crate) fn record(&self, now: Instant, failed: bool) {
        let index = self.index_at(now);
        let i = (index % self.slices.len() as u64) as usize;
        let slot = &self.slices[i];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let next = if current >> 32 == index {
                current + 1
            } else {
                (index << 32) | 1
            };
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    if current >> 32 != index {
                        // This call moved the slice on: its old failures are out of the window.
                        // (A failure counted at the same instant may be lost: the window is a
                        // sample, not an audit.)
                        self.failures[i].store(0, Ordering::Relaxed);
                    }
                    break;
                }
                Err(actual) => current = actual,
            }
        }
        if failed {
            self.failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls and failures in the window ending at `now`.
    pub(crate) fn totals(&self, now: Instant) -> (u64, u64) {
        let index = self.index_at(now);
        let n = self.slices.len() as u64;
        let mut totals = (0, 0);
        for (slot, failures) in self.slices.iter().zip(self.failures.iter()) {
            let word = slot.load(Ordering::Acquire);
            let slice = word >> 32;
            if slice != 0 && slice + n > index && slice <= index {
                totals.0 += word & u64::from(u32::MAX);
                totals.1 += u64::from(failures.load(Ordering::Relaxed));
            }
        }
        totals
    }

    pub(crate) fn clear(&self) {
        for slot in self.slices.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        for failures in self.failures.iter() {
            failures.store(0, Ordering::Relaxed);
        }
    }
}

/// One breaker's state.
#[derive(Debug)]
pub(crate) struct Machine {
    config: BreakerConfig,
    phase: Phase,
    /// Consecutive trips without a successful recovery: each makes the next open time longer.
    trips: u32,
}

impl Machine {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            phase: Phase::Closed,
            trips: 0,
        }
    }

    pub(crate) fn state(&self) -> CircuitState {
        match self.phase {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { .. } => CircuitState::Open,
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Whether a call arriving at `now` would be refused (without taking a probe slot).
    pub(crate) fn refuses(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Closed => false,
            Phase::Open { until } => now < until,
            Phase::HalfOpen {
                in_flight,
                succeeded,
            } => in_flight + succeeded >= self.config.probes,
        }
    }

    /// Lets a call through, or says why not. An open breaker whose time is up half-opens here.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
    ) -> (Result<Pass, CircuitOpen>, Option<Transition>) {
        match &mut self.phase {
            Phase::Closed => (Ok(Pass::Normal), None),
            Phase::Open { until } if now < *until => (Err(CircuitOpen::new(*until - now)), None),
            Phase::Open { .. } => {
                self.phase = Phase::HalfOpen {
                    in_flight: 1,
                    succeeded: 0,
                };
                (
                    Ok(Pass::Probe),
                    Some((CircuitState::Open, CircuitState::HalfOpen)),
                )
            }
            Phase::HalfOpen {
                in_flight,
                succeeded,
            } => {
                if *in_flight + *succeeded < self.config.probes {
                    *in_flight += 1;
                    (Ok(Pass::Probe), None)
                } else {
                    // Probes are out; their outcome decides shortly.
                    (Err(CircuitOpen::new(Duration::ZERO)), None)
                }
            }
        }
    }

    /// A failure in the closed state, with the window's `(calls, failures)` now: opens the
    /// breaker once the volume and the ratio are reached.
    pub(crate) fn closed_failure(
        &mut self,
        totals: (u64, u64),
        now: Instant,
    ) -> Option<Transition> {
        let (calls, failures) = totals;
        let tripped = matches!(self.phase, Phase::Closed)
            && calls >= u64::from(self.config.min_volume)
            && failures as f64 >= self.config.failure_ratio * calls as f64;
        tripped.then(|| self.open(now, CircuitState::Closed))
    }

    /// The outcome of a half-open probe. Closing clears nothing here: the caller clears the
    /// window.
    pub(crate) fn probe_outcome(&mut self, failed: bool, now: Instant) -> Option<Transition> {
        let Phase::HalfOpen {
            in_flight,
            succeeded,
        } = &mut self.phase
        else {
            // A probe let through before the state changed: its outcome is about the past.
            return None;
        };
        *in_flight = in_flight.saturating_sub(1);
        if failed {
            return Some(self.open(now, CircuitState::HalfOpen));
        }
        *succeeded += 1;
        if *succeeded >= self.config.probes {
            self.phase = Phase::Closed;
            self.trips = 0;
            return Some((CircuitState::HalfOpen, CircuitState::Closed));
        }
        None
    }

    /// A probe that ended without an outcome (its future was dropped): its slot is free again.
    pub(crate) fn abandon(&mut self, pass: Pass) {
        if let (Phase::HalfOpen { in_flight, .. }, Pass::Probe) = (&mut self.phase, pass) {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Opens for the base time, doubled for each trip since the last recovery, at most the
    /// maximum.
    fn open(&mut self, now: Instant, from: CircuitState) -> Transition {
        let factor = 1u32.checked_shl(self.trips.min(31)).unwrap_or(u32::MAX);
        let open_for = self
            .config
            .open_base
            .saturating_mul(factor)
            .min(self.config.open_max);
        self.trips = self.trips.saturating_add(1);
        self.phase = Phase::Open {
            until: now + open_for,
        };
        (from, CircuitState::Open)
    }

    /// How long the breaker stays open from now (zero unless open).
    #[cfg(test)]
    pub(crate) fn open_for(&self, now: Instant) -> Duration {
        match self.phase {
            Phase::Open { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_ratio: 0.5,
            min_volume: 4,
            window: Duration::from_secs(10),
            buckets: 10,
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(60),
            probes: 2,
        }
    }

    /// What `Shared` does with a closed-state outcome.
    fn closed(m: &mut Machine, w: &Window, failed: bool, now: Instant) -> Option<Transition> {
        w.record(now, failed);
        if failed {
            m.closed_failure(w.totals(now), now)
        } else {
            None
        }
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let start = Instant::now();
        let (mut m, w) = (Machine::new(config()), Window::new(&config(), start));
        for _ in 0..3 {
            assert_eq!(closed(&mut m, &w, true, start), None, "below the volume");
        }
        // 10 s later the three failures are out of the window: three more do not trip it.
        let later = start + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(closed(&mut m, &w, true, later), None);
        }
        assert_eq!(w.totals(later), (3, 3));
        assert_eq!(
            closed(&mut m, &w, true, later),
            Some((CircuitState::Closed, CircuitState::Open))
        );
    }

    #[test]
    fn successes_dilute_failures_below_the_ratio() {
        let now = Instant::now();
        let (mut m, w) = (Machine::new(config()), Window::new(&config(), now));
        for _ in 0..3 {
            closed(&mut m, &w, false, now);
        }
        for _ in 0..2 {
            assert_eq!(closed(&mut m, &w, true, now), None, "2 of 5 is below 0.5");
        }
        assert_eq!(
            closed(&mut m, &w, true, now),
            Some((CircuitState::Closed, CircuitState::Open)),
            "3 of 6"
        );
    }

    #[test]
    fn open_time_doubles_per_trip_up_to_the_maximum() {
        let mut now = Instant::now();
        let (mut m, w) = (Machine::new(config()), Window::new(&config(), now));
        for _ in 0..4 {
            closed(&mut m, &w, true, now);
        }
        let mut expected = Duration::from_secs(5);
        for _ in 0..6 {
            assert_eq!(m.open_for(now), expected);
            now += expected;
            let (pass, _) = m.admit(now);
            assert_eq!(pass, Ok(Pass::Probe));
            m.probe_outcome(true, now);
            expected = (expected * 2).min(Duration::from_secs(60));
        }
        assert_eq!(m.open_for(now), Duration::from_secs(60));
    }

    #[test]
    fn a_dropped_probe_frees_its_slot() {
        let now = Instant::now();
        let (mut m, w) = (Machine::new(config()), Window::new(&config(), now));
        for _ in 0..4 {
            closed(&mut m, &w, true, now);
        }
        let later = now + Duration::from_secs(5);
        assert_eq!(m.admit(later).0, Ok(Pass::Probe));
        assert_eq!(m.admit(later).0, Ok(Pass::Probe));
        assert!(m.admit(later).0.is_err(), "two probes at most");
        m.abandon(Pass::Probe);
        assert_eq!(m.admit(later).0, Ok(Pass::Probe));
    }
}
