//! The queue's settings, validated (clamped) once when the layer is built.

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::metrics::Meter;

use crate::adaptive::Adaptive;
use crate::status::Thresholds;

/// The largest accepted `concurrency` and `capacity`; larger values are clamped. It fits the
/// admission word, which counts in-flight requests in 32 bits and waiting ones in 31.
pub(crate) const MAX_LIMIT: usize = 1 << 30;

/// The default number of requests that may wait: about a second of work for a service doing
/// 1000 requests a second.
pub(crate) const DEFAULT_CAPACITY: usize = 1000;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// At least 1, at most [`MAX_LIMIT`]: the limit, or where an adaptive limit starts.
    pub(crate) concurrency: usize,
    /// At most [`MAX_LIMIT`]; 0 means no waiting at all (pure load shedding).
    pub(crate) capacity: usize,
    pub(crate) drop_oldest: bool,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) thresholds: Thresholds,
    pub(crate) name: Cow<'static, str>,
    pub(crate) meter: Option<Meter>,
    /// Clamped when set.
    pub(crate) adaptive: Option<Adaptive>,
    /// Carried by every rejection; `None` (a zero setting) leaves `Retry-After` out.
    pub(crate) retry_after: Option<Duration>,
    /// Fair share on ([`crate::fair`]).
    pub(crate) fair: bool,
    /// How many keys get a share of their own under fair share (1..=4096).
    pub(crate) max_fair_keys: usize,
}

/// The default `Retry-After` of a rejection: long enough to let a burst pass, short enough that
/// a caller does not wait longer than the burst.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Config {
    pub(crate) fn new(concurrency: usize) -> Self {
        Self {
            concurrency: concurrency.clamp(1, MAX_LIMIT),
            capacity: DEFAULT_CAPACITY,
            drop_oldest: false,
            max_wait: None,
            thresholds: Thresholds::default(),
            name: Cow::Borrowed("default"),
            meter: None,
            adaptive: None,
            retry_after: Some(DEFAULT_RETRY_AFTER),
            fair: false,
            max_fair_keys: crate::fair::DEFAULT_MAX_KEYS,
        }
    }
}
