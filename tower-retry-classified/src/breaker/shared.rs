//! What every service of one breaker layer shares: the state machine behind a mutex, its
//! instruments, and the handle that reads it.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter, ObservableGauge};
use tokio::time::Instant;

use super::config::BreakerConfig;
use super::state::{CircuitState, Machine, Pass, Transition, Window};
use crate::error::CircuitOpen;
use crate::trace;

pub(crate) struct Shared {
    /// Mirrors "the machine is closed", so that a closed breaker admits a call and counts a
    /// success without its lock: the lock is for failures, probes and transitions.
    closed: AtomicBool,
    window: Window,
    machine: Mutex<Machine>,
    name: Cow<'static, str>,
    transitions: Counter<u64>,
    _state: Option<ObservableGauge<u64>>,
}

impl Shared {
    pub(crate) fn new(config: BreakerConfig, name: Cow<'static, str>, meter: &Meter) -> Arc<Self> {
        Arc::new_cyclic(|weak: &Weak<Shared>| {
            let weak = weak.clone();
            let attributes = [KeyValue::new("tower.circuit.name", name.to_string())];
            let state = meter
                .u64_observable_gauge("tower.circuit.state")
                .with_description("Circuit breaker state: 0 closed, 1 half-open, 2 open")
                .with_callback(move |observer| {
                    if let Some(shared) = weak.upgrade() {
                        observer.observe(shared.state().as_level(), &attributes);
                    }
                })
                .build();
            let transitions = meter
                .u64_counter("tower.circuit.transitions")
                .with_description("Circuit breaker state changes, by from and to")
                .with_unit("{transition}")
                .build();
            // Every transition a breaker can make exists from the first collection, at 0: an
            // alert on `increase(...{to="open"})` then reads 0 before the first trip, not nothing.
            for (from, to) in [
                (CircuitState::Closed, CircuitState::Open),
                (CircuitState::Open, CircuitState::HalfOpen),
                (CircuitState::HalfOpen, CircuitState::Closed),
                (CircuitState::HalfOpen, CircuitState::Open),
            ] {
                transitions.add(
                    0,
                    &[
                        KeyValue::new("tower.circuit.name", name.to_string()),
                        KeyValue::new("from", from.as_str()),
                        KeyValue::new("to", to.as_str()),
                    ],
                );
            }
            Shared {
                closed: AtomicBool::new(true),
                window: Window::new(&config, Instant::now()),
                machine: Mutex::new(Machine::new(config)),
                name,
                transitions,
                _state: Some(state),
            }
        })
    }

    /// The machine; a panic elsewhere while it was held leaves it usable (its updates are
    /// single assignments), never poisoned for good.
    fn machine(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.machine().state()
    }

    pub(crate) fn refuses(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && self.machine().refuses(Instant::now())
    }

    pub(crate) fn admit(&self) -> Result<Pass, CircuitOpen> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(Pass::Normal);
        }
        let (pass, transition) = self.machine().admit(Instant::now());
        self.changed(transition);
        if let Err(open) = &pass {
            trace::circuit_refused(&self.name, open.retry_after());
        }
        pass
    }

    pub(crate) fn record(&self, pass: Pass, failed: bool) {
        let now = Instant::now();
        let transition = match pass {
            Pass::Normal => {
                if !self.closed.load(Ordering::Acquire) {
                    // Let through before the breaker opened: about the past.
                    return;
                }
                self.window.record(now, failed);
                if !failed {
                    return;
                }
                let mut machine = self.machine();
                let transition = machine.closed_failure(self.window.totals(now), now);
                if transition.is_some() {
                    self.closed.store(false, Ordering::Release);
                }
                transition
            }
            Pass::Probe => {
                let mut machine = self.machine();
                let transition = machine.probe_outcome(failed, now);
                if let Some((_, CircuitState::Closed)) = transition {
                    // Closed afresh: the failures that opened it are history.
                    self.window.clear();
                    self.closed.store(true, Ordering::Release);
                }
                transition
            }
        };
        self.changed(transition);
    }

    pub(crate) fn abandon(&self, pass: Pass) {
        self.machine().abandon(pass);
    }

    fn changed(&self, transition: Option<Transition>) {
        let Some((from, to)) = transition else {
            return;
        };
        self.transitions.add(
            1,
            &[
                KeyValue::new("tower.circuit.name", self.name.to_string()),
                KeyValue::new("from", from.as_str()),
                KeyValue::new("to", to.as_str()),
            ],
        );
        trace::circuit_changed(&self.name, from.as_str(), to.as_str());
    }
}

/// Reads a breaker's state from outside the request path: for a router that skips open
/// dependencies, a readiness check, a test. Clones share the breaker.
#[derive(Clone)]
pub struct CircuitHandle {
    pub(crate) shared: Arc<Shared>,
}

impl CircuitHandle {
    /// The state now. An open breaker whose open time is over reads `Open` until the next call
    /// half-opens it; [`refuses`](Self::refuses) tells whether that call would go through.
    pub fn state(&self) -> CircuitState {
        self.shared.state()
    }

    /// Whether a call made now would be refused at once.
    pub fn refuses(&self) -> bool {
        self.shared.refuses()
    }
}

impl std::fmt::Debug for CircuitHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitHandle")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish()
    }
}
