//! [`MeteredBody`]: a response body that counts streamed bytes and holds the
//! active-request guard until it ends or is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::attributes::{Outcome, STATUS_NONE};
use crate::grpc;
use crate::recorder::Recorder;
use crate::request_key::RequestKey;
use crate::series::{ActiveGuard, Series};

/// A gRPC call whose status is still to come (in the trailers).
pub(crate) struct PendingCall {
    pub(crate) start: Instant,
    pub(crate) key: RequestKey,
    pub(crate) recorder: Arc<Recorder>,
}

impl PendingCall {
    fn finish(self, status: u16, outcome: Outcome) {
        let elapsed = self.start.elapsed().as_secs_f64();
        self.recorder.record(&self.key, status, outcome, elapsed);
    }

    fn finish_with_code(self, code: u16) {
        let client = self.recorder.mode().is_client();
        let outcome = if grpc::is_error(code, client) {
            Outcome::Status
        } else {
            Outcome::Ok
        };
        self.finish(code, outcome);
    }
}

/// Finishes the request's bookkeeping exactly once: at end of stream, or on drop.
pub(crate) struct BodyGuard {
    active: Option<ActiveGuard>,
    size: Option<(Arc<Series>, Arc<Recorder>)>,
    bytes: u64,
    call: Option<PendingCall>,
}

impl BodyGuard {
    pub(crate) fn new(
        active: Option<ActiveGuard>,
        size: Option<(Arc<Series>, Arc<Recorder>)>,
    ) -> Self {
        Self {
            active,
            size,
            bytes: 0,
            call: None,
        }
    }

    pub(crate) fn pending(call: PendingCall) -> Self {
        Self {
            active: None,
            size: None,
            bytes: 0,
            call: Some(call),
        }
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        if let Some((series, recorder)) = self.size.take() {
            series.record_response_size(&recorder.instruments, self.bytes);
        }
        if let Some(call) = self.call.take() {
            // The body went away before its trailers: the call was abandoned.
            call.finish(STATUS_NONE, Outcome::Cancelled);
        }
        self.active.take();
    }
}

pin_project! {
    /// Response body of [`MetricsService`](crate::MetricsService).
    ///
    /// Behaves exactly like the inner body. When active requests or body sizes are
    /// recorded, it counts data bytes as they are polled and finishes the request
    /// when the stream ends or the body is dropped, whichever comes first.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        guard: Option<BodyGuard>,
    }
}

impl<B> MeteredBody<B> {
    pub(crate) fn new(inner: B, guard: BodyGuard) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }

    /// A body that records nothing.
    pub(crate) fn bare(inner: B) -> Self {
        Self { inner, guard: None }
    }

    /// Unwraps the inner body (finishing its metrics now).
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for MeteredBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let Some(guard) = this.guard.as_mut() else {
            return Poll::Ready(frame);
        };
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    guard.bytes += data.remaining() as u64;
                } else if let Some(trailers) = f.trailers_ref() {
                    if let Some(call) = guard.call.take() {
                        call.finish_with_code(grpc::status(trailers).unwrap_or(grpc::UNKNOWN));
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(call) = guard.call.take() {
                    call.finish(STATUS_NONE, Outcome::Error("stream_error"));
                }
                this.guard.take();
            }
            None => {
                // Ended without trailers: a gRPC call without a status is UNKNOWN.
                if let Some(call) = guard.call.take() {
                    call.finish_with_code(grpc::UNKNOWN);
                }
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
