//! Request body sizes counted from the bytes actually streamed.
//!
//! Wrapping the request body changes its type, which a plain tower stack accepts
//! ([`Metered`]) but axum's `Router::layer` does not; [`AxumMetered`] (feature `axum`)
//! wraps it back into an `axum::body::Body`. The default, [`Unchanged`], leaves the
//! request alone and records no request sizes.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::recorder::Recorder;
use crate::series::Series;

mod sealed {
    pub trait Sealed {}
}

/// How [`MetricsService`](crate::MetricsService) treats request bodies; see the
/// module docs. Implemented by [`Unchanged`], [`Metered`] and [`AxumMetered`].
pub trait WrapRequestBody<B>: sealed::Sealed {
    /// The body type the inner service receives.
    type Output;

    #[doc(hidden)]
    fn wrap(body: B, tracker: Option<Arc<RequestBodyTracker>>) -> Self::Output;
}

/// Leave request bodies alone (default): no request sizes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unchanged;

/// Wrap request bodies in [`MeteredRequestBody`] and record their streamed size.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metered;

/// Like [`Metered`], re-boxed as `axum::body::Body` so the layer still fits
/// `Router::layer` (one extra allocation per request).
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy, Default)]
pub struct AxumMetered;

impl sealed::Sealed for Unchanged {}
impl sealed::Sealed for Metered {}
#[cfg(feature = "axum")]
impl sealed::Sealed for AxumMetered {}

impl<B> WrapRequestBody<B> for Unchanged {
    type Output = B;

    #[inline]
    fn wrap(body: B, _tracker: Option<Arc<RequestBodyTracker>>) -> B {
        body
    }
}

impl<B> WrapRequestBody<B> for Metered {
    type Output = MeteredRequestBody<B>;

    fn wrap(body: B, tracker: Option<Arc<RequestBodyTracker>>) -> Self::Output {
        MeteredRequestBody::new(body, tracker)
    }
}

#[cfg(feature = "axum")]
impl WrapRequestBody<axum::body::Body> for AxumMetered {
    type Output = axum::body::Body;

    fn wrap(body: axum::body::Body, tracker: Option<Arc<RequestBodyTracker>>) -> Self::Output {
        match tracker {
            Some(t) => axum::body::Body::new(MeteredRequestBody::new(body, Some(t))),
            None => body,
        }
    }
}

/// Joins the two ends of a request: its body (bytes) and its response (the series,
/// which needs the status). Whichever finishes last records, exactly once.
#[doc(hidden)]
pub struct RequestBodyTracker {
    recorder: Arc<Recorder>,
    bytes: AtomicU64,
    body_done: AtomicBool,
    recorded: AtomicBool,
    series: OnceLock<Arc<Series>>,
}

impl std::fmt::Debug for RequestBodyTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBodyTracker")
            .field("bytes", &self.bytes)
            .field("body_done", &self.body_done)
            .finish_non_exhaustive()
    }
}

impl RequestBodyTracker {
    pub(crate) fn new(recorder: Arc<Recorder>) -> Self {
        Self {
            recorder,
            bytes: AtomicU64::new(0),
            body_done: AtomicBool::new(false),
            recorded: AtomicBool::new(false),
            series: OnceLock::new(),
        }
    }

    fn body_finished(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::SeqCst);
        self.body_done.store(true, Ordering::SeqCst);
        if let Some(series) = self.series.get() {
            self.record_once(series);
        }
    }

    /// The response (or failure, or cancellation) is known.
    pub(crate) fn response_finished(&self, series: Arc<Series>) {
        let series = self.series.get_or_init(|| series);
        if self.body_done.load(Ordering::SeqCst) {
            self.record_once(series);
        }
    }

    fn record_once(&self, series: &Series) {
        if !self.recorded.swap(true, Ordering::SeqCst) {
            series.record_request_size(
                &self.recorder.instruments,
                self.bytes.load(Ordering::SeqCst),
            );
        }
    }
}

struct RequestBodyGuard {
    tracker: Arc<RequestBodyTracker>,
    bytes: u64,
}

impl Drop for RequestBodyGuard {
    fn drop(&mut self) {
        self.tracker.body_finished(self.bytes);
    }
}

pin_project! {
    /// A request body that counts the data bytes read from it; its size is recorded
    /// when it ends or is dropped, with the attributes of the request's response.
    pub struct MeteredRequestBody<B> {
        #[pin]
        inner: B,
        guard: Option<RequestBodyGuard>,
    }
}

impl<B> MeteredRequestBody<B> {
    fn new(inner: B, tracker: Option<Arc<RequestBodyTracker>>) -> Self {
        Self {
            inner,
            guard: tracker.map(|tracker| RequestBodyGuard { tracker, bytes: 0 }),
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for MeteredRequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredRequestBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for MeteredRequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(guard), Some(data)) = (this.guard.as_mut(), f.data_ref()) {
                    guard.bytes += data.remaining() as u64;
                }
            }
            Some(Err(_)) | None => {
                this.guard.take();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
