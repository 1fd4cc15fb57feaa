//! [`ResponseBody`]: the response body of every layer in [`HttpMode`](crate::HttpMode).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

pin_project_lite::pin_project! {
    /// The response body of a layer in [`HttpMode`](crate::HttpMode): the inner service's body,
    /// or the short text of an answer the layer gave itself ([`answer`](crate::answer)).
    ///
    /// Its error type is the inner body's, so wrapping costs nothing and keeps axum's and
    /// tonic's body contracts. axum users turn it into theirs with
    /// `.map(axum::body::Body::new)` when they need one type.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Text { text: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// The inner service's body, passed through.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A body of `text` alone (no data frame when empty).
    pub fn text(text: impl Into<Bytes>) -> Self {
        let text = text.into();
        let text = (!text.is_empty()).then_some(text);
        Self {
            kind: Kind::Text { text },
        }
    }

    /// Whether this is a layer's own answer rather than the inner service's body.
    pub fn is_answer(&self) -> bool {
        matches!(self.kind, Kind::Text { .. })
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Text { text } => Poll::Ready(text.take().map(|t| Ok(Frame::data(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Text { text } => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Text { text } => {
                SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Text { text } => f.debug_tuple("ResponseBody::Text").field(text).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn text_is_one_frame_and_empty_text_none() {
        let body = ResponseBody::<String>::text("shed\n");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "shed\n");
        let empty = ResponseBody::<String>::text(Bytes::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn inner_bodies_pass_through() {
        let body = ResponseBody::inner(String::from("hello"));
        assert!(!body.is_answer());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
    }
}
