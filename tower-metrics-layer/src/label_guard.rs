//! [`LabelGuard`]: keeps a free-form label (tenant, customer, region) bounded.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::StringValue;

use crate::intern::Interner;

/// The value every refused label value becomes.
pub const OTHER: &str = "other";

/// Default number of distinct values a [`LabelGuard::first_seen`] guard admits.
pub const DEFAULT_MAX_DISTINCT: usize = 20;

/// Id of `other` (the table's ids are slot indices, always below this).
pub(crate) const OTHER_ID: u32 = u32::MAX - 1;

/// Longest label value a guard admits; longer values become [`OTHER`].
pub const MAX_VALUE_LEN: usize = 64;

/// Keeps the number of distinct values of one label bounded.
///
/// A guard admits values from an allowlist and/or the first `N` distinct values it
/// sees (default 20); every other value, and any value longer than
/// [`MAX_VALUE_LEN`] bytes, becomes [`OTHER`] (`"other"`). Clones share state, so
/// one guard can serve many services.
///
/// ```
/// use tower_metrics_layer::LabelGuard;
///
/// let guard = LabelGuard::allowlist(["acme", "globex"]);
/// assert_eq!(guard.label("acme").as_str(), "acme");
/// assert_eq!(guard.label("initech").as_str(), "other");
///
/// let guard = LabelGuard::first_seen(1);
/// assert_eq!(guard.label("t1").as_str(), "t1");
/// assert_eq!(guard.label("t2").as_str(), "other");
/// assert_eq!(guard.refused(), 1);
/// ```
#[derive(Clone)]
pub struct LabelGuard {
    inner: Arc<Inner>,
}

struct Inner {
    table: Interner,
    refused: AtomicU64,
    /// The label's key, for the one event written when the guard first refuses a value: set
    /// by the first layer the guard is given to.
    label: OnceLock<&'static str>,
}

impl LabelGuard {
    /// Admits the first `max_distinct` distinct values seen; the rest become `other`.
    ///
    /// `0` admits nothing (every value becomes `other`); values above 65,536 are
    /// clamped to it.
    pub fn first_seen(max_distinct: usize) -> Self {
        Self::build(Vec::new(), max_distinct)
    }

    /// Admits only the given values; the rest become `other`.
    pub fn allowlist<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::build(values.into_iter().map(Into::into).collect(), 0)
    }

    /// Admits the given values plus the first `max_distinct` other distinct values seen.
    pub fn allowlist_and_first_seen<I, S>(values: I, max_distinct: usize) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::build(values.into_iter().map(Into::into).collect(), max_distinct)
    }

    fn build(mut seed: Vec<String>, max_new: usize) -> Self {
        seed.retain(|v| !v.is_empty() && v.len() <= MAX_VALUE_LEN && v != OTHER);
        Self {
            inner: Arc::new(Inner {
                table: Interner::new(seed, max_new, MAX_VALUE_LEN),
                refused: AtomicU64::new(0),
                label: OnceLock::new(),
            }),
        }
    }

    /// The compact id of the label for `raw` ([`OTHER_ID`] for `other`).
    #[inline]
    pub(crate) fn id(&self, raw: &str) -> u32 {
        if raw == OTHER {
            return OTHER_ID;
        }
        match self.inner.table.lookup(raw) {
            Some(id) => id,
            None => {
                if self.inner.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    let label = self.inner.label.get().copied().unwrap_or("unnamed");
                    crate::trace::guard_overflowed(label, raw, self.inner.table.len());
                }
                OTHER_ID
            }
        }
    }

    pub(crate) fn value(&self, id: u32) -> StringValue {
        if id == OTHER_ID {
            return StringValue::from(OTHER);
        }
        self.inner
            .table
            .value(id)
            .unwrap_or_else(|| StringValue::from(OTHER))
    }

    /// Names the label this guard bounds, for its overflow event (the first name given wins).
    pub(crate) fn name(&self, key: &'static str) {
        let _ = self.inner.label.set(key);
    }

    /// The label value recorded for `raw`: `raw` itself if admitted, else `"other"`.
    pub fn label(&self, raw: &str) -> StringValue {
        self.value(self.id(raw))
    }

    /// How many values were turned into `other` so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// The number of distinct values (including `other`) this guard can still emit.
    pub fn distinct(&self) -> usize {
        self.inner.table.len() + 1
    }
}

impl Default for LabelGuard {
    /// [`LabelGuard::first_seen`] with [`DEFAULT_MAX_DISTINCT`] (20).
    fn default() -> Self {
        Self::first_seen(DEFAULT_MAX_DISTINCT)
    }
}

impl fmt::Debug for LabelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabelGuard")
            .field("distinct", &self.distinct())
            .field("refused", &self.refused())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_at_twenty() {
        let g = LabelGuard::default();
        for i in 0..30 {
            let v = format!("t{i}");
            let expect = if i < 20 { v.as_str() } else { OTHER };
            assert_eq!(g.label(&v).as_str(), expect);
        }
        assert_eq!(g.refused(), 10);
        assert_eq!(g.distinct(), 21);
    }

    #[test]
    fn allowlist_plus_first_seen() {
        let g = LabelGuard::allowlist_and_first_seen(["a"], 1);
        assert_eq!(g.label("a").as_str(), "a");
        assert_eq!(g.label("b").as_str(), "b");
        assert_eq!(g.label("c").as_str(), OTHER);
        assert_eq!(g.label("a").as_str(), "a");
    }

    #[test]
    fn long_values_become_other() {
        let g = LabelGuard::first_seen(5);
        assert_eq!(g.label(&"x".repeat(MAX_VALUE_LEN + 1)).as_str(), OTHER);
        assert_eq!(g.label(OTHER).as_str(), OTHER);
    }
}
