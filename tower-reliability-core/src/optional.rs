//! [`optional`]: an HTTP layer that is present only when a setting says so, keeping one
//! response type either way.
//!
//! tower's `ServiceBuilder::option_layer` needs both branches (layer on, layer off) to answer
//! the same response type, but HTTP layers wrap the response body in a type of their own
//! ([`ResponseBody`](crate::ResponseBody), `tower_metrics_layer::MeteredBody`, ...). Boxing each
//! branch's body into one type makes them agree at the price of one allocation per response
//! per layer; [`optional`] puts the two body types in `http_body_util::Either` instead, which
//! costs nothing at run time and works for any layer, ours or not.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response};
//! use tower::util::MapResponseLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_reliability_core::optional;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let shout = std::env::var_os("SHOUT").is_some();
//! // A layer that changes the body type: `String` in, `Vec<u8>` out.
//! let layer = shout.then(|| MapResponseLayer::new(|r: Response<String>| r.map(String::into_bytes)));
//! let service = ServiceBuilder::new()
//!     .layer(optional(layer))
//!     .service(tower::service_fn(|_: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("hello")))
//!     }));
//! // One response type, `Response<Either<Vec<u8>, String>>`, either way.
//! let response = service.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// `layer` when `Some`, nothing when `None`; either way the service answers
/// `Response<Either<OnBody, OffBody>>`, so a layer switched by configuration keeps one service
/// type without boxing: either setting fits the same variable or field.
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

/// The inner service with the layer applied (`On`) or as it is (`Off`); made by [`optional`].
#[derive(Clone, Debug)]
pub enum OptionalService<On, Off> {
    /// The layer is present.
    On(On),
    /// The layer is absent: the inner service as it is.
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
            OptionalService::On(service) => OptionalFuture {
                branch: Branch::On {
                    future: service.call(request),
                },
            },
            OptionalService::Off(service) => OptionalFuture {
                branch: Branch::Off {
                    future: service.call(request),
                },
            },
        }
    }
}

pin_project! {
    /// Response future of [`OptionalService`].
    pub struct OptionalFuture<On, Off> {
        #[pin]
        branch: Branch<On, Off>,
    }
}

pin_project! {
    #[project = BranchProj]
    enum Branch<On, Off> {
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
        Poll::Ready(match self.project().branch.project() {
            BranchProj::On { future } => Ok(ready!(future.poll(cx))?.map(Either::Left)),
            BranchProj::Off { future } => Ok(ready!(future.poll(cx))?.map(Either::Right)),
        })
    }
}
