//! Request bodies that can be sent again without being `Clone`.
//!
//! The first attempt streams the caller's body as usual; every chunk it reads is also kept in a
//! shared buffer (cheap: [`Bytes`] clones share memory). A retry gets a new [`ReplayBody`] that
//! first replays the buffered chunks, then continues reading the original body if the earlier
//! attempt had not read all of it (an upstream may answer 503 before reading the whole request).
//!
//! Buffering stops at a cap (64 KiB by default): a body whose size hint already exceeds it is
//! passed through untouched, and one that outgrows it while streaming keeps streaming to the
//! current attempt but can no longer be retried.
//!
//! The idea follows linkerd2-proxy's `ReplayBody`, reduced to what retry decisions on a
//! response head need.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::BoxError;
use crate::error::ReplayError;

/// A request body wrapper that lets the retry layer send the same bytes again.
///
/// The inner service of an HTTP [`Retry`](crate::Retry) receives `http::Request<ReplayBody<B>>`.
/// Its data type is [`Bytes`] and its error a [`BoxError`].
pub struct ReplayBody<B> {
    repr: Repr<B>,
}

enum Repr<B> {
    /// The original body was empty: every attempt sends nothing, no sharing needed.
    Empty,
    /// Too large to buffer by its size hint: sent once, never replayed.
    Once(Pin<Box<B>>),
    /// Buffered while streaming.
    Shared(Cursor<B>),
}

struct Cursor<B> {
    shared: Arc<Mutex<Shared<B>>>,
    id: u32,
    /// Index of the next buffered chunk this copy replays.
    pos: usize,
    /// Data bytes this copy has yielded, for its size hint.
    delivered: u64,
    trailers_sent: bool,
}

struct Shared<B> {
    body: Option<Pin<Box<B>>>,
    hint: SizeHint,
    chunks: Chunks,
    buffered: usize,
    cap: usize,
    /// The original body has ended (data and trailers all read).
    complete: bool,
    trailers: Option<HeaderMap>,
    /// Outgrew the cap; `owner` is the copy that reads on from the original without buffering.
    too_large: bool,
    owner: u32,
    failed: bool,
    next_id: u32,
}

/// The buffered chunks. Most bodies are one chunk (`Full`, small JSON), which is kept inline so
/// buffering it needs no vector.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    rest: Vec<Bytes>,
}

impl Chunks {
    fn get(&self, index: usize) -> Option<&Bytes> {
        match index {
            0 => self.first.as_ref(),
            i => self.rest.get(i - 1),
        }
    }

    fn push(&mut self, chunk: Bytes) {
        if self.first.is_none() {
            self.first = Some(chunk);
        } else {
            self.rest.push(chunk);
        }
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }
}

/// Why a body cannot be replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooLarge,
    Failed,
}

impl<B> ReplayBody<B>
where
    B: Body,
{
    /// Wraps `body`, buffering at most `cap` bytes for replays.
    pub(crate) fn new(body: B, cap: usize) -> Self {
        let repr = if body.is_end_stream() {
            Repr::Empty
        } else if body.size_hint().lower() > cap as u64 {
            Repr::Once(Box::pin(body))
        } else {
            let hint = body.size_hint();
            Repr::Shared(Cursor {
                shared: Arc::new(Mutex::new(Shared {
                    body: Some(Box::pin(body)),
                    hint,
                    chunks: Chunks::default(),
                    buffered: 0,
                    cap,
                    complete: false,
                    trailers: None,
                    too_large: false,
                    owner: u32::MAX,
                    failed: false,
                    next_id: 1,
                })),
                id: 0,
                pos: 0,
                delivered: 0,
                trailers_sent: false,
            })
        };
        Self { repr }
    }
}

impl<B> ReplayBody<B> {
    /// A fresh copy that sends the whole body again from the start, or why it cannot.
    pub(crate) fn replay(&self) -> Result<Self, Refusal> {
        match &self.repr {
            Repr::Empty => Ok(Self { repr: Repr::Empty }),
            Repr::Once(_) => Err(Refusal::TooLarge),
            Repr::Shared(cursor) => {
                let mut shared = lock(&cursor.shared);
                if shared.too_large {
                    return Err(Refusal::TooLarge);
                }
                if shared.failed {
                    return Err(Refusal::Failed);
                }
                let id = shared.next_id;
                shared.next_id = shared.next_id.wrapping_add(1);
                Ok(Self {
                    repr: Repr::Shared(Cursor {
                        shared: cursor.shared.clone(),
                        id,
                        pos: 0,
                        delivered: 0,
                        trailers_sent: false,
                    }),
                })
            }
        }
    }

    /// Whether the body turned out too large to replay (by size hint or while streaming).
    #[cfg(test)]
    pub(crate) fn is_too_large(&self) -> bool {
        match &self.repr {
            Repr::Empty => false,
            Repr::Once(_) => true,
            Repr::Shared(cursor) => lock(&cursor.shared).too_large,
        }
    }
}

fn lock<B>(m: &Mutex<Shared<B>>) -> MutexGuard<'_, Shared<B>> {
    // Only a panicking body implementation can poison it; the buffer is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().repr {
            Repr::Empty => Poll::Ready(None),
            Repr::Once(body) => body
                .as_mut()
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map(to_bytes_frame).map_err(Into::into))),
            Repr::Shared(cursor) => cursor.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.repr {
            Repr::Empty => true,
            Repr::Once(body) => body.is_end_stream(),
            Repr::Shared(cursor) => {
                let shared = lock(&cursor.shared);
                cursor.pos >= shared.chunks.len()
                    && shared.complete
                    && !(shared.too_large && shared.owner != cursor.id)
                    && (shared.trailers.is_none() || cursor.trailers_sent)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.repr {
            Repr::Empty => SizeHint::with_exact(0),
            Repr::Once(body) => body.size_hint(),
            Repr::Shared(cursor) => {
                let hint = lock(&cursor.shared).hint;
                let mut out = SizeHint::new();
                out.set_lower(hint.lower().saturating_sub(cursor.delivered));
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper.saturating_sub(cursor.delivered));
                }
                out
            }
        }
    }
}

fn to_bytes_frame<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
}

impl<B> Cursor<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut guard = lock(&self.shared);
        let shared = &mut *guard;
        if let Some(chunk) = shared.chunks.get(self.pos) {
            let chunk = chunk.clone();
            self.pos += 1;
            self.delivered += chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        // Checked before `complete`: once the buffer was dropped, only the copy that read on from
        // the original has the rest; any other copy must fail rather than end early.
        if shared.too_large && shared.owner != self.id {
            return Poll::Ready(Some(Err(ReplayError {
                kind: "it outgrew the replay buffer",
            }
            .into())));
        }
        if shared.complete {
            if !self.trailers_sent {
                self.trailers_sent = true;
                if let Some(trailers) = &shared.trailers {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
                }
            }
            return Poll::Ready(None);
        }
        if shared.failed {
            return Poll::Ready(Some(Err(ReplayError {
                kind: "the original body failed",
            }
            .into())));
        }
        let Some(body) = shared.body.as_mut() else {
            return Poll::Ready(None);
        };
        match body.as_mut().poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.complete = true;
                shared.body = None;
                self.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                shared.failed = true;
                shared.body = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = to_bytes_frame(frame);
                match frame.into_data() {
                    Ok(data) => {
                        self.delivered += data.len() as u64;
                        if !shared.too_large {
                            if shared.buffered + data.len() > shared.cap {
                                shared.too_large = true;
                                shared.owner = self.id;
                                // Nobody can replay any more: free the buffer.
                                shared.chunks = Chunks::default();
                                self.pos = 0;
                            } else {
                                shared.buffered += data.len();
                                shared.chunks.push(data.clone());
                                self.pos += 1;
                            }
                        }
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Err(frame) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            shared.trailers = Some(trailers.clone());
                            shared.complete = true;
                            shared.body = None;
                            self.trailers_sent = true;
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                }
            }
        }
    }
}

/// Lets a client typed for `Either<ReplayBody<B>, R>` sit under the retry layer directly (see
/// [`RetryLayer::attempt_body`](crate::RetryLayer::attempt_body)): the replayable body is the
/// left side, whatever body the same client sends on the right.
impl<B, R> From<ReplayBody<B>> for http_body_util::Either<ReplayBody<B>, R> {
    fn from(body: ReplayBody<B>) -> Self {
        http_body_util::Either::Left(body)
    }
}

impl<B> std::fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.repr {
            Repr::Empty => "empty",
            Repr::Once(_) => "once",
            Repr::Shared(_) => "buffered",
        };
        f.debug_struct("ReplayBody").field("kind", &kind).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn stream(chunks: Vec<&'static [u8]>) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        StreamBody::new(futures_iter(chunks))
    }

    fn futures_iter(
        chunks: Vec<&'static [u8]>,
    ) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, BoxError>> + Unpin {
        struct It(std::vec::IntoIter<&'static [u8]>);
        impl futures_core::Stream for It {
            type Item = Result<Frame<Bytes>, BoxError>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                Poll::Ready(
                    self.0
                        .next()
                        .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
                )
            }
        }
        It(chunks.into_iter())
    }

    async fn collect<B: Body<Data = Bytes, Error = BoxError> + Unpin>(
        b: B,
    ) -> Result<Bytes, BoxError> {
        Ok(b.collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn replays_identical_bytes() {
        let first = ReplayBody::new(stream(vec![b"ab", b"cd", b"ef"]), 1024);
        let second = first.replay().unwrap();
        assert_eq!(collect(first).await.unwrap(), "abcdef");
        assert_eq!(collect(second).await.unwrap(), "abcdef");
    }

    #[tokio::test]
    async fn retry_continues_a_partly_read_original() {
        let mut first = ReplayBody::new(stream(vec![b"ab", b"cd", b"ef"]), 1024);
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "ab");
        let second = first.replay().unwrap();
        drop(first);
        assert_eq!(collect(second).await.unwrap(), "abcdef");
    }

    #[tokio::test]
    async fn too_large_while_streaming_is_sent_once() {
        let first = ReplayBody::new(stream(vec![b"abcd", b"efgh", b"ijkl"]), 6);
        let saved = first.replay().unwrap();
        assert_eq!(collect(first).await.unwrap(), "abcdefghijkl");
        assert!(saved.is_too_large());
        assert_eq!(saved.replay().unwrap_err(), Refusal::TooLarge);
    }

    #[tokio::test]
    async fn a_copy_behind_an_outgrown_buffer_fails_instead_of_truncating() {
        let first = ReplayBody::new(stream(vec![b"abcd", b"efgh", b"ijkl"]), 6);
        let mut lagging = first.replay().unwrap();
        assert_eq!(collect(first).await.unwrap(), "abcdefghijkl");
        assert!(!lagging.is_end_stream());
        let err = lagging.frame().await.unwrap().unwrap_err();
        assert!(err.is::<ReplayError>(), "{err}");
    }

    #[tokio::test]
    async fn too_large_by_hint_is_passed_through() {
        let body = ReplayBody::new(Full::new(Bytes::from(vec![7u8; 100])), 10);
        assert!(body.is_too_large());
        assert_eq!(body.size_hint().exact(), Some(100));
        assert_eq!(collect(body).await.unwrap().len(), 100);
    }

    #[tokio::test]
    async fn empty_and_exact_hints() {
        let empty = ReplayBody::new(Full::new(Bytes::new()), 10);
        assert!(empty.is_end_stream());
        assert_eq!(empty.replay().unwrap().size_hint().exact(), Some(0));
        let full = ReplayBody::new(Full::new(Bytes::from_static(b"hello")), 10);
        let again = full.replay().unwrap();
        assert_eq!(full.size_hint().exact(), Some(5));
        assert_eq!(collect(full).await.unwrap(), "hello");
        assert_eq!(again.size_hint().exact(), Some(5));
        assert_eq!(collect(again).await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn trailers_are_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = http_body_util::Full::new(Bytes::from_static(b"x"))
            .with_trailers(std::future::ready(Some(Ok::<_, std::convert::Infallible>(
                trailers.clone(),
            ))))
            .map_err(|e| -> BoxError { match e {} });
        let first = ReplayBody::new(body, 10);
        let second = first.replay().unwrap();
        let c1 = first.collect().await.unwrap();
        assert_eq!(c1.trailers(), Some(&trailers));
        let c2 = second.collect().await.unwrap();
        assert_eq!(c2.trailers(), Some(&trailers));
        assert_eq!(c2.to_bytes(), "x");
    }
}
