//! The breaker's state machine: closed, open, half-open, with time passed in so that every
//! transition is exact under test.

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

/// Outcomes of calls in the last `window`, in `buckets` slices so old ones fall out.
#[derive(Debug)]
struct Window {
    slices: Vec<Slice>,
    slice_len: Duration,
    origin: Instant,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slice {
    /// Which slice of time since `origin` this one holds.
    index: u64,
    calls: u32,
    failures: u32,
}

impl Window {
    fn new(config: &BreakerConfig, origin: Instant) -> Self {
        Self {
            slices: vec![Slice::default(); config.buckets as usize],
            slice_len: config.window / config.buckets,
            origin,
        }
    }

    fn index_at(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        (since / self.slice_len.as_nanos().max(1)) as u64
    }

    fn record(&mut self, now: Instant, failed: bool) {
        let index = self.index_at(now);
        let n = self.slices.len() as u64;
        let slice = &mut self.slices[(index % n) as usize];
        if slice.index != index {
            *slice = Slice {
                index,
                ..Slice::default()
            };
        }
        slice.calls = slice.calls.saturating_add(1);
        slice.failures = slice.failures.saturating_add(u32::from(failed));
    }

    /// Calls and failures in the window ending at `now`.
    fn totals(&self, now: Instant) -> (u64, u64) {
        let index = self.index_at(now);
        let n = self.slices.len() as u64;
        self.slices
            .iter()
            .filter(|s| s.index + n > index && s.index <= index)
            .fold((0, 0), |(c, f), s| {
                (c + u64::from(s.calls), f + u64::from(s.failures))
            })
    }

    fn clear(&mut self) {
        self.slices.fill(Slice::default());
    }
}

/// One breaker's state.
#[derive(Debug)]
pub(crate) struct Machine {
    config: BreakerConfig,
    phase: Phase,
    /// Consecutive trips without a successful recovery: each makes the next open time longer.
    trips: u32,
    window: Window,
}

impl Machine {
    pub(crate) fn new(config: BreakerConfig, now: Instant) -> Self {
        Self {
            window: Window::new(&config, now),
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

    /// Counts the outcome of a call let through as `pass`.
    pub(crate) fn record(&mut self, pass: Pass, failed: bool, now: Instant) -> Option<Transition> {
        match (&mut self.phase, pass) {
            (Phase::Closed, Pass::Normal) => {
                self.window.record(now, failed);
                let (calls, failures) = self.window.totals(now);
                let tripped = failed
                    && calls >= u64::from(self.config.min_volume)
                    && failures as f64 >= self.config.failure_ratio * calls as f64;
                tripped.then(|| self.open(now, CircuitState::Closed))
            }
            (
                Phase::HalfOpen {
                    in_flight,
                    succeeded,
                },
                Pass::Probe,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                if failed {
                    return Some(self.open(now, CircuitState::HalfOpen));
                }
                *succeeded += 1;
                if *succeeded >= self.config.probes {
                    self.phase = Phase::Closed;
                    self.trips = 0;
                    self.window.clear();
                    return Some((CircuitState::HalfOpen, CircuitState::Closed));
                }
                None
            }
            // A call let through before the state changed: its outcome is about the past.
            _ => None,
        }
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

    #[test]
    fn old_outcomes_leave_the_window() {
        let start = Instant::now();
        let mut m = Machine::new(config(), start);
        for _ in 0..3 {
            assert_eq!(
                m.record(Pass::Normal, true, start),
                None,
                "below the volume"
            );
        }
        // 10 s later the three failures are out of the window: three more do not trip it.
        let later = start + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(m.record(Pass::Normal, true, later), None);
        }
        assert_eq!(
            m.record(Pass::Normal, true, later),
            Some((CircuitState::Closed, CircuitState::Open))
        );
    }

    #[test]
    fn open_time_doubles_per_trip_up_to_the_maximum() {
        let mut now = Instant::now();
        let mut m = Machine::new(config(), now);
        for _ in 0..4 {
            m.record(Pass::Normal, true, now);
        }
        let mut expected = Duration::from_secs(5);
        for _ in 0..6 {
            assert_eq!(m.open_for(now), expected);
            now += expected;
            let (pass, _) = m.admit(now);
            assert_eq!(pass, Ok(Pass::Probe));
            m.record(Pass::Probe, true, now);
            expected = (expected * 2).min(Duration::from_secs(60));
        }
        assert_eq!(m.open_for(now), Duration::from_secs(60));
    }

    #[test]
    fn a_dropped_probe_frees_its_slot() {
        let now = Instant::now();
        let mut m = Machine::new(config(), now);
        for _ in 0..4 {
            m.record(Pass::Normal, true, now);
        }
        let later = now + Duration::from_secs(5);
        assert_eq!(m.admit(later).0, Ok(Pass::Probe));
        assert_eq!(m.admit(later).0, Ok(Pass::Probe));
        assert!(m.admit(later).0.is_err(), "two probes at most");
        m.abandon(Pass::Probe);
        assert_eq!(m.admit(later).0, Ok(Pass::Probe));
    }
}
