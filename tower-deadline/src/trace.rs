//! `tracing` events for deadlines read, malformed headers and deadlines exceeded (cargo feature
//! `tracing`, on by default).
//!
//! Each is one `debug` event with target `tower_deadline`; exceeded deadlines are also counted
//! into a `warn` summary written at most once per
//! [`SUMMARY_EVERY`](tower_reliability_core::SUMMARY_EVERY), so a slow dependency shows at
//! `warn` without one line per request. Nothing is written at `info` or above on the success
//! path. With no subscriber listening (or none for this level), each call is tracing's check of
//! a static level: nothing is formatted.

use std::time::Duration;

use crate::Stage;

#[cfg(feature = "tracing")]
mod enabled {
    use super::*;
    use tower_reliability_core::{SUMMARY_EVERY, Summary};

    const TARGET: &str = "tower_deadline";

    /// A malformed value is logged up to this many bytes: a client must not be able to make
    /// the log line as long as its header.
    const VALUE_SHOWN: usize = 64;

    /// The budget a request got: from header `source` (none when no header had a well-formed
    /// one), which `announced`; `capped` when the layer's maximum was tighter.
    pub(crate) fn read(
        source: Option<&str>,
        announced: Option<Duration>,
        budget: Duration,
        capped: bool,
    ) {
        tracing::debug!(
            target: TARGET,
            source = source.unwrap_or("none"),
            announced_ms = announced.map(|d| d.as_millis() as u64),
            budget_ms = budget.as_millis() as u64,
            capped,
            "deadline read"
        );
    }

    /// Header `header` had a value that is not a deadline; it was ignored (or, strict, the
    /// request rejected).
    pub(crate) fn malformed(header: &str, value: &[u8], rejected: bool) {
        tracing::debug!(
            target: TARGET,
            header,
            value = %String::from_utf8_lossy(&value[..value.len().min(VALUE_SHOWN)]).escape_debug(),
            rejected,
            "malformed deadline header"
        );
    }

    /// Work stopped at `stage` because its deadline passed.
    pub(crate) fn exceeded(stage: Stage) {
        let at = stage.as_str();
        tracing::debug!(target: TARGET, r#where = at, "deadline exceeded");
        if tracing::enabled!(target: TARGET, tracing::Level::WARN) {
            if let Some(count) = EXCEEDED.count() {
                tracing::warn!(
                    target: TARGET,
                    count,
                    last_where = at,
                    "deadlines exceeded (summary, at most one per {} s)",
                    SUMMARY_EVERY.as_secs()
                );
            }
        }
    }

    static EXCEEDED: Summary = Summary::new();
}

#[cfg(feature = "tracing")]
pub(crate) use enabled::{exceeded, malformed, read};

#[cfg(not(feature = "tracing"))]
pub(crate) fn read(_: Option<&str>, _: Option<Duration>, _: Duration, _: bool) {}

#[cfg(not(feature = "tracing"))]
pub(crate) fn malformed(_: &str, _: &[u8], _: bool) {}

#[cfg(not(feature = "tracing"))]
pub(crate) fn exceeded(_: Stage) {}
