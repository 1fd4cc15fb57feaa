//! The per-series cache that keeps the hot path free of allocation.
//!
//! A series is one combination of attribute values. Its `[KeyValue]` (and, with the
//! `bound-instruments` feature, its bound instrument handles) are built the first
//! time the combination is seen and reused afterwards.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::UpDownCounter;

use crate::attributes::Outcome;
use crate::instruments::Instruments;
use crate::request_key::RequestKey;
use crate::table::Table;

/// Everything that distinguishes one duration series from another, in compact form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeriesKey {
    pub(crate) method: u8,
    pub(crate) scheme: u8,
    pub(crate) version: u8,
    pub(crate) status: u16,
    pub(crate) port: u16,
    /// Interned `http.route` or `rpc.method`; `NONE_U32` if unknown.
    pub(crate) target: u32,
    /// Interned `server.address` (clients); `NONE_U32` if unknown.
    pub(crate) host: u32,
    /// Interned extra label; `NONE_U32` if absent.
    pub(crate) label: u32,
    pub(crate) outcome: Outcome,
}

/// Hashed as two words rather than field by field: the cache hashes one key per request, and
/// `foldhash` folds a word in one multiply but shifts each field into place on its own.
impl Hash for SeriesKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(
            u128::from(self.target)
                | u128::from(self.host) << 32
                | u128::from(self.label) << 64
                | u128::from(self.status) << 96
                | u128::from(self.port) << 112,
        );
        let (outcome, name) = match self.outcome {
            Outcome::Ok => (0, None),
            Outcome::Status => (1, None),
            Outcome::Error(name) => (2, Some(name)),
            Outcome::Cancelled => (3, None),
        };
        state.write_u64(
            u64::from(self.method)
                | u64::from(self.scheme) << 8
                | u64::from(self.version) << 16
                | outcome << 24,
        );
        if let Some(name) = name {
            name.hash(state);
        }
    }
}

impl SeriesKey {
    /// The series of a finished request: what its request key says, plus how it ended.
    #[inline]
    pub(crate) fn of(key: &RequestKey, status: u16, outcome: Outcome) -> Self {
        Self {
            method: key.method,
            scheme: key.scheme,
            version: key.version,
            status,
            port: key.port,
            target: key.target,
            host: key.host,
            label: key.label,
            outcome,
        }
    }
}

/// One cached series.
pub(crate) struct Series {
    attrs: Box<[KeyValue]>,
    #[cfg(feature = "bound-instruments")]
    bound: Option<Bound>,
}

#[cfg(feature = "bound-instruments")]
struct Bound {
    duration: opentelemetry::metrics::BoundHistogram<f64>,
    response_size: Option<opentelemetry::metrics::BoundHistogram<u64>>,
    request_size: Option<opentelemetry::metrics::BoundHistogram<u64>>,
}

impl Series {
    fn new(attrs: Vec<KeyValue>, instruments: &Instruments, cached: bool) -> Self {
        #[cfg(feature = "bound-instruments")]
        let bound = cached.then(|| Bound {
            duration: instruments.duration.bind(&attrs),
            response_size: instruments.response_size.as_ref().map(|h| h.bind(&attrs)),
            request_size: instruments.request_size.as_ref().map(|h| h.bind(&attrs)),
        });
        #[cfg(not(feature = "bound-instruments"))]
        let _ = (instruments, cached);
        Self {
            attrs: attrs.into_boxed_slice(),
            #[cfg(feature = "bound-instruments")]
            bound,
        }
    }

    #[inline]
    pub(crate) fn record_duration(&self, instruments: &Instruments, seconds: f64) {
        #[cfg(feature = "bound-instruments")]
        if let Some(bound) = &self.bound {
            bound.duration.record(seconds);
            return;
        }
        instruments.duration.record(seconds, &self.attrs);
    }

    #[inline]
    pub(crate) fn record_response_size(&self, instruments: &Instruments, bytes: u64) {
        #[cfg(feature = "bound-instruments")]
        if let Some(bound) = &self.bound {
            if let Some(h) = &bound.response_size {
                h.record(bytes);
            }
            return;
        }
        if let Some(h) = &instruments.response_size {
            h.record(bytes, &self.attrs);
        }
    }

    #[inline]
    pub(crate) fn record_request_size(&self, instruments: &Instruments, bytes: u64) {
        #[cfg(feature = "bound-instruments")]
        if let Some(bound) = &self.bound {
            if let Some(h) = &bound.request_size {
                h.record(bytes);
            }
            return;
        }
        if let Some(h) = &instruments.request_size {
            h.record(bytes, &self.attrs);
        }
    }
}

/// Bounded map from [`SeriesKey`] to [`Series`].
pub(crate) struct SeriesCache<K> {
    table: Table<K, Arc<Series>>,
}

impl<K: Hash + Eq + Copy> SeriesCache<K> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            table: Table::new(max),
        }
    }

    /// Runs `f` on the series for `key` without taking a reference count, building
    /// the series on first sight.
    #[inline]
    pub(crate) fn with<R>(
        &self,
        key: K,
        instruments: &Instruments,
        attrs: impl FnOnce() -> Vec<KeyValue>,
        f: impl FnOnce(&Series) -> R,
    ) -> R {
        if let Some((_, series)) = self.table.get(&key) {
            return f(series);
        }
        f(&self.get(key, instruments, attrs))
    }

    /// The series for `key`, building its attributes with `attrs` on first sight.
    ///
    /// When the cache is full the series is built but not kept (correct, only slower),
    /// and the overflow is counted.
    pub(crate) fn get(
        &self,
        key: K,
        instruments: &Instruments,
        attrs: impl FnOnce() -> Vec<KeyValue>,
    ) -> Arc<Series> {
        let mut attrs = Some(attrs);
        let found = self.table.get_or_insert(&key, || {
            let attrs = attrs.take().map(|f| f()).unwrap_or_default();
            (key, Arc::new(Series::new(attrs, instruments, true)))
        });
        match found {
            Some((_, series)) => Arc::clone(series),
            None => {
                instruments
                    .overflow
                    .add(1, &[KeyValue::new("dimension", "series")]);
                let attrs = attrs.take().map(|f| f()).unwrap_or_default();
                Arc::new(Series::new(attrs, instruments, false))
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

/// The `http.server.active_requests` series for one method and scheme.
pub(crate) struct ActiveSeries {
    attrs: Box<[KeyValue]>,
    counter: UpDownCounter<i64>,
    #[cfg(feature = "bound-instruments")]
    bound: opentelemetry::metrics::BoundUpDownCounter<i64>,
}

impl ActiveSeries {
    pub(crate) fn new(counter: UpDownCounter<i64>, attrs: Vec<KeyValue>) -> Self {
        Self {
            #[cfg(feature = "bound-instruments")]
            bound: counter.bind(&attrs),
            attrs: attrs.into_boxed_slice(),
            counter,
        }
    }

    #[inline]
    fn add(&self, delta: i64) {
        #[cfg(feature = "bound-instruments")]
        {
            let _ = &self.counter;
            let _ = &self.attrs;
            self.bound.add(delta);
        }
        #[cfg(not(feature = "bound-instruments"))]
        self.counter.add(delta, &self.attrs);
    }
}

/// Counts one active request; decrements when dropped, wherever that happens
/// (future dropped, body finished, body dropped), so cancellation never leaks.
pub(crate) struct ActiveGuard {
    series: Arc<ActiveSeries>,
}

impl ActiveGuard {
    #[inline]
    pub(crate) fn enter(series: &Arc<ActiveSeries>) -> Self {
        series.add(1);
        Self {
            series: Arc::clone(series),
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.series.add(-1);
    }
}
