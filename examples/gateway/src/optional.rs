//! [`optional`]: a layer that is present only when its feature flag is on, for HTTP services.
//!
//! tower's `ServiceBuilder::option_layer` needs both branches (layer on, layer off) to answer
//! the same response type, but HTTP layers usually wrap the response body in a type of their
//! own. Boxing each branch's body into `axum::body::Body` makes them agree at the price of one
//! allocation per response per layer; here the two body types go into
//! `http_body_util::Either` instead, which costs nothing at run time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// `layer` when `Some`, nothing when `None`; response bodies become `Either<on, off>`.
pub fn optional<L>(layer: Option<L>) -> Optional<L> {
    Optional(layer)
}

/// The layer returned by [`optional`].
#[derive(Clone, Debug)]
pub struct Optional<L>(Option<L>);

impl<L: Layer<S>, S> Layer<S> for Optional<L> {
    type Service = OptionalService<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => OptionalService::On(layer.layer(inner)),
            None => OptionalService::Off(inner),
        }
    }
}

/// The inner service with the layer applied (`On`) or as it is (`Off`).
#[derive(Clone, Debug)]
pub enum OptionalService<On, Off> {
    On(On),
    Off(Off),
}

impl<On, Off, Request, OnBody, OffBody> Service<Request> for OptionalService<On, Off>
where
    On: Service<Request, Response = Response<OnBody>>,
    Off: Service<Request, Response = Response<OffBody>, Error = On::Error>,
{
    type Response = Response<Either<OnBody, OffBody>>;
    type Error = On::Error;
    type Future = OptionalFuture<On::Future, Off::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            OptionalService::On(service) => service.poll_ready(cx),
            OptionalService::Off(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self {
            OptionalService::On(service) => OptionalFuture::On {
                future: service.call(request),
            },
            OptionalService::Off(service) => OptionalFuture::Off {
                future: service.call(request),
            },
        }
    }
}

pin_project! {
    /// Response future of [`OptionalService`].
    #[project = OptionalFutureProj]
    pub enum OptionalFuture<On, Off> {
        On { #[pin] future: On },
        Off { #[pin] future: Off },
    }
}

impl<On, Off, OnBody, OffBody, E> Future for OptionalFuture<On, Off>
where
    On: Future<Output = Result<Response<OnBody>, E>>,
    Off: Future<Output = Result<Response<OffBody>, E>>,
{
    type Output = Result<Response<Either<OnBody, OffBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match self.project() {
            OptionalFutureProj::On { future } => Ok(ready!(future.poll(cx))?.map(Either::Left)),
            OptionalFutureProj::Off { future } => Ok(ready!(future.poll(cx))?.map(Either::Right)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::Request;
    use http_body_util::{BodyExt, Full};
    use tower::ServiceExt;
    use tower::util::MapResponseLayer;

    use super::*;

    fn mark(response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
        response.map(|_| Full::new(Bytes::from_static(b"layered")))
    }

    async fn answer(on: bool) -> (Bytes, bool) {
        let layer = on.then(|| MapResponseLayer::new(mark as fn(_) -> _));
        let service = optional(layer).layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
        }));
        let response = service.oneshot(Request::new(())).await.unwrap();
        let left = matches!(response.body(), Either::Left(_));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (body, left)
    }

    #[tokio::test]
    async fn on_applies_the_layer_and_off_leaves_the_service_as_it_is() {
        assert_eq!(answer(true).await, (Bytes::from_static(b"layered"), true));
        assert_eq!(answer(false).await, (Bytes::from_static(b"inner"), false));
    }
}
