//! File operations bounded by their own budgets (read 5 s, write 10 s,
//! delete 5 s) and by the current request deadline, whichever is tighter.
//!
//! A timeout is an [`io::Error`] of kind [`TimedOut`](io::ErrorKind::TimedOut) whose inner
//! error is the [`DeadlineExceeded`](crate::DeadlineExceeded), so `?` works in I/O code and the
//! typed error can still be downcast. tokio runs file operations on its blocking pool: a timed-out
//! operation frees its caller at once, while the blocking call itself finishes in the background.
//!
//! ```
//! use std::time::Duration;
//! use tower_deadline::{Deadline, fs};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! let dir = std::env::temp_dir().join(format!("tower-deadline-doc-{}", std::process::id()));
//! let path = dir.with_extension("txt");
//! Deadline::after(Duration::from_secs(2))
//!     .scope(async {
//!         fs::write(&path, b"hello").await?;
//!         assert_eq!(fs::read(&path).await?, b"hello");
//!         fs::remove_file(&path).await
//!     })
//!     .await
//! # }
//! ```

use std::io;
use std::path::Path;
use std::time::Duration;

use crate::enforce_within;

/// Budget of [`read`] and [`read_to_string`].
pub const READ_BUDGET: Duration = Duration::from_secs(5);
/// Budget of [`write()`].
pub const WRITE_BUDGET: Duration = Duration::from_secs(10);
/// Budget of [`remove_file`].
pub const DELETE_BUDGET: Duration = Duration::from_secs(5);

async fn bounded<T>(
    budget: Duration,
    operation: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    enforce_within(budget, operation)
        .await
        .map_err(|exceeded| io::Error::new(io::ErrorKind::TimedOut, exceeded))?
}

/// [`tokio::fs::read`] within [`READ_BUDGET`] and the current deadline.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    bounded(READ_BUDGET, tokio::fs::read(path.as_ref())).await
}

/// [`tokio::fs::read_to_string`] within [`READ_BUDGET`] and the current deadline.
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    bounded(READ_BUDGET, tokio::fs::read_to_string(path.as_ref())).await
}

/// [`tokio::fs::write`] within [`WRITE_BUDGET`] and the current deadline.
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    bounded(
        WRITE_BUDGET,
        tokio::fs::write(path.as_ref(), contents.as_ref()),
    )
    .await
}

/// [`tokio::fs::remove_file`] within [`DELETE_BUDGET`] and the current deadline.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    bounded(DELETE_BUDGET, tokio::fs::remove_file(path.as_ref())).await
}
