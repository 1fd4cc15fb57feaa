//! [`Recorder`]: the last step of the request path, and the state one layer's services share.
//!
//! It holds the configuration, the instruments and the caches, and records: a request key
//! (from [`request_key`](crate::request_key)) plus how the request ended make a series key;
//! the series cache (from [`series`](crate::series)) turns that into a prepared series, and
//! the series records into the instruments.

use std::any::Any;
use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::Value;

use crate::attributes::{self as attr, NONE_U32, Outcome, STATUS_NONE};
use crate::config::{Config, Mode};
use crate::head::RequestHead;
use crate::instruments::Instruments;
use crate::request_key::{Dimensions, NO_PORT, RequestKey};
use crate::series::{ActiveGuard, ActiveSeries, Series, SeriesCache, SeriesKey};
use crate::table::Table;

/// State shared by all services of one layer.
pub(crate) struct Recorder {
    config: Config,
    pub(crate) instruments: Instruments,
    dimensions: Dimensions,
    series: SeriesCache<SeriesKey>,
    /// `active_requests` series by method, scheme and (clients) server address and port.
    active: Table<(u8, u8, u32, u16), Arc<ActiveSeries>>,
}

impl Recorder {
    pub(crate) fn new(config: Config) -> Self {
        let instruments = Instruments::new(&config);
        // Series are bound lazily: binding every combination up front would export
        // a zero series for each.
        let active = Table::new(if instruments.active.is_some() {
            config.max_series
        } else {
            0
        });
        Self {
            dimensions: Dimensions::new(&config, instruments.overflow.clone()),
            series: SeriesCache::new(config.max_series),
            active,
            instruments,
            config,
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        self.config.mode
    }

    pub(crate) fn body_size(&self) -> bool {
        self.instruments.response_size.is_some()
    }

    pub(crate) fn request_body_size(&self) -> bool {
        self.instruments.request_size.is_some()
    }

    /// Reduces the request to compact ids. No allocation once values have been seen.
    #[inline]
    pub(crate) fn request_key(&self, head: &RequestHead<'_>) -> RequestKey {
        self.dimensions.key(&self.config, head)
    }

    /// Enters the request into `active_requests`, if recorded.
    #[inline]
    pub(crate) fn enter_active(&self, key: &RequestKey) -> Option<ActiveGuard> {
        let counter = self.instruments.active.as_ref()?;
        let akey = (key.method, key.scheme, key.host, key.port);
        let make = || {
            let mut attrs = vec![
                KeyValue::new(
                    attr::HTTP_REQUEST_METHOD,
                    self.config.methods.value(key.method),
                ),
                KeyValue::new(attr::URL_SCHEME, attr::scheme_value(key.scheme)),
            ];
            if self.config.mode.is_client() {
                self.push_server(&mut attrs, key.host, key.port);
            }
            Arc::new(ActiveSeries::new(counter.clone(), attrs))
        };
        if let Some((_, series)) = self.active.get(&akey) {
            return Some(ActiveGuard::enter(series));
        }
        let mut make = Some(make);
        let found = self.active.get_or_insert(&akey, || {
            (akey, make.take().map(|f| f()).expect("called once"))
        });
        Some(match found {
            Some((_, series)) => ActiveGuard::enter(series),
            // Table full: an uncached series is still correct.
            None => ActiveGuard::enter(&make.take().map(|f| f()).expect("not called")),
        })
    }

    pub(crate) fn classify_error(&self, err: &dyn Any) -> &'static str {
        self.config
            .error_type
            .as_ref()
            .and_then(|f| f(err))
            .or_else(|| crate::error_type::builtin(err))
            .unwrap_or("_OTHER")
    }

    /// The series for a finished request, kept alive by the caller (body size).
    pub(crate) fn series(&self, key: &RequestKey, status: u16, outcome: Outcome) -> Arc<Series> {
        let skey = SeriesKey::of(key, status, outcome);
        self.series
            .get(skey, &self.instruments, || self.attributes(&skey))
    }

    /// Records the duration of a finished request or call.
    #[inline]
    pub(crate) fn record(&self, key: &RequestKey, status: u16, outcome: Outcome, seconds: f64) {
        let skey = SeriesKey::of(key, status, outcome);
        self.series.with(
            skey,
            &self.instruments,
            || self.attributes(&skey),
            |series| series.record_duration(&self.instruments, seconds),
        );
    }

    /// Builds the attribute list of a series (once per series).
    fn attributes(&self, k: &SeriesKey) -> Vec<KeyValue> {
        let c = &self.config;
        let mut attrs = Vec::with_capacity(9);
        let status = (k.status != STATUS_NONE).then_some(k.status);
        if c.mode.is_grpc() {
            attrs.push(KeyValue::new(attr::RPC_SYSTEM_NAME, "grpc"));
            let method = self
                .dimensions
                .target(k.target)
                .map(Value::String)
                .unwrap_or(Value::from("_OTHER"));
            attrs.push(KeyValue::new(attr::RPC_METHOD, method));
            if let Some(code) = status {
                attrs.push(KeyValue::new(
                    attr::RPC_STATUS_CODE,
                    crate::grpc::name(code),
                ));
            }
        } else {
            attrs.push(KeyValue::new(
                attr::HTTP_REQUEST_METHOD,
                c.methods.value(k.method),
            ));
            attrs.push(KeyValue::new(
                attr::URL_SCHEME,
                attr::scheme_value(k.scheme),
            ));
            if let Some(code) = status {
                attrs.push(KeyValue::new(
                    attr::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(code),
                ));
            }
            if let Some(v) = attr::version_value(k.version) {
                attrs.push(KeyValue::new(attr::NETWORK_PROTOCOL_VERSION, v));
            }
            if let Some(v) = self.dimensions.target(k.target) {
                attrs.push(KeyValue::new(attr::HTTP_ROUTE, v));
            }
        }
        if let Some(v) = k.outcome.error_type(c.mode, k.status) {
            attrs.push(KeyValue::new(attr::ERROR_TYPE, v));
        }
        if c.mode.is_client() {
            self.push_server(&mut attrs, k.host, k.port);
        }
        if let (Some(extra), true) = (&c.label, k.label != NONE_U32) {
            attrs.push(KeyValue::new(extra.key.clone(), extra.guard.value(k.label)));
        }
        if let Some(p) = &c.provider {
            attrs.push(KeyValue::new("provider.name", p.clone()));
        }
        attrs
    }

    /// `server.address` and `server.port`, both or neither.
    fn push_server(&self, attrs: &mut Vec<KeyValue>, host: u32, port: u16) {
        if let (Some(address), true) = (self.dimensions.host(host), port != NO_PORT) {
            attrs.push(KeyValue::new(attr::SERVER_ADDRESS, address));
            attrs.push(KeyValue::new(attr::SERVER_PORT, i64::from(port)));
        }
    }

    #[cfg(test)]
    pub(crate) fn cached_series(&self) -> usize {
        self.series.len()
    }
}
