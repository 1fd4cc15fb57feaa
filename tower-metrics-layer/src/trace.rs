//! `tracing` events (cargo feature `tracing`, on by default): one `warn` when a label guard
//! first turns a value into `other`, so an operator learns that a label hit its bound without a
//! line per request. With no subscriber listening, the call is tracing's check of a static
//! level.

/// A refused value is logged up to this many bytes.
#[cfg(feature = "tracing")]
const VALUE_SHOWN: usize = 64;

/// Guard of label `label` refused `value`, the first value it refused: from now on every value
/// it has not admitted (it admitted `admitted`) is recorded as `other`.
#[cfg(feature = "tracing")]
pub(crate) fn guard_overflowed(label: &str, value: &str, admitted: usize) {
    let shown = value
        .char_indices()
        .take_while(|(i, _)| *i < VALUE_SHOWN)
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    tracing::warn!(
        target: "tower_metrics_layer",
        label,
        first_refused = %value[..shown].escape_debug(),
        admitted,
        "label guard full: values it has not admitted are recorded as \"other\" from now on \
         (logged once per guard)"
    );
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn guard_overflowed(_: &str, _: &str, _: usize) {}
