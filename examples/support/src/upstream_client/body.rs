//! The answer's body, which holds its connection until the end: a connection is ready for the
//! next request only once the previous answer has been read, so it goes back to the pool when
//! the body ends, not when the head arrives. (hyper-util's legacy client spawns a task per
//! request to wait for that moment instead.)

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::Lease;

/// An upstream answer's body: hyper's body, and the connection it arrives on until it ends.
pub struct Body<B: 'static> {
    inner: Incoming,
    /// Back to the pool at the end of the body; closed if the body fails or is dropped before
    /// its end.
    lease: Option<Lease<B>>,
}

/// The answer with its connection attached, or already released when the body is empty.
pub(crate) fn attach<B: 'static>(
    response: Response<Incoming>,
    lease: Lease<B>,
) -> Response<Body<B>> {
    response.map(|inner| {
        let lease = if http_body::Body::is_end_stream(&inner) {
            lease.release();
            None
        } else {
            Some(lease)
        };
        Body { inner, lease }
    })
}

impl<B: 'static> http_body::Body for Body<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            // The last frame: the connection is free as soon as the caller has it, whether or
            // not the caller polls again.
            Some(Ok(_)) if this.inner.is_end_stream() => this.release(),
            Some(Ok(_)) => {}
            None => this.release(),
            Some(Err(_)) => this.lease = None,
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

impl<B: 'static> Body<B> {
    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl<B: 'static> Drop for Body<B> {
    fn drop(&mut self) {
        // Read to its end without a last poll (the caller saw `is_end_stream`): still reusable.
        // Otherwise the rest of the answer is still coming on it: dropped, so closed.
        if http_body::Body::is_end_stream(&self.inner) {
            self.release();
        }
    }
}

impl<B: 'static> std::fmt::Debug for Body<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("inner", &self.inner)
            .field("pooled", &self.lease.is_some())
            .finish()
    }
}
