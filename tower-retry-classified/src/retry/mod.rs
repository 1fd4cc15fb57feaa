//! [`RetryLayer`]: classified, budgeted, deadline-aware retries with body replay.
//!
//! ```
//! use std::time::Duration;
//! use tower_retry_classified::retry::RetryLayer;
//!
//! let layer = RetryLayer::for_http()
//!     .max_retries(2)
//!     .max_total_time(Duration::from_secs(5))
//!     .attempt_timeout(Duration::from_secs(1));
//! # let _ = layer;
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::{MAX_RETRIES_LIMIT, RetryLayer};
pub use service::Retry;
