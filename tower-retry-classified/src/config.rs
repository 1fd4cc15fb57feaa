//! The settings every [`Retry`](crate::Retry) service and its futures consult, with their
//! defaults.
//!
//! Apart from the builder, [`RetryLayer`](crate::RetryLayer), so that the service and its
//! future read their settings from a module below them rather than from the layer that builds
//! the service.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::budget::RetryBudget;
use crate::metrics::Instruments;

/// Default total retry time.
pub const DEFAULT_MAX_TOTAL: Duration = Duration::from_secs(30);
/// Default maximum for a server's retry hint.
pub const DEFAULT_MAX_HINT: Duration = Duration::from_secs(300);
/// Default replay buffer for request bodies.
pub const DEFAULT_REPLAY_CAP: usize = 64 * 1024;
/// Default number of retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 4;

/// Everything a [`Retry`](crate::Retry) service consults; shared by its clones through an `Arc`.
#[derive(Clone, Debug)]
pub(crate) struct Config<C> {
    pub(crate) classifier: C,
    pub(crate) backoff: Backoff,
    pub(crate) max_retries: u32,
    pub(crate) max_total: Duration,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) max_hint: Duration,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) retry_any_method: bool,
    pub(crate) replay_cap: usize,
    pub(crate) instruments: Instruments,
}

impl<C> Config<C> {
    /// The defaults around `classifier`, recording on the global meter `tower-retry-classified`.
    pub(crate) fn new(classifier: C) -> Self {
        Self {
            classifier,
            backoff: Backoff::default(),
            max_retries: DEFAULT_MAX_RETRIES,
            max_total: DEFAULT_MAX_TOTAL,
            attempt_timeout: None,
            max_hint: DEFAULT_MAX_HINT,
            budget: Some(RetryBudget::default()),
            retry_any_method: false,
            replay_cap: DEFAULT_REPLAY_CAP,
            instruments: Instruments::new(&opentelemetry::global::meter("tower-retry-classified")),
        }
    }

    /// The same settings around another classifier.
    pub(crate) fn with_classifier<C2>(self, classifier: C2) -> Config<C2> {
        Config {
            classifier,
            backoff: self.backoff,
            max_retries: self.max_retries,
            max_total: self.max_total,
            attempt_timeout: self.attempt_timeout,
            max_hint: self.max_hint,
            budget: self.budget,
            retry_any_method: self.retry_any_method,
            replay_cap: self.replay_cap,
            instruments: self.instruments,
        }
    }
}
