//! A coarse clock for timestamps kept in atomics (the edge's head start, the balancer's
//! ejections), where an `Instant` does not fit.

use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since the first call, plus one: never 0, so that 0 can mean "none" or "never".
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}
