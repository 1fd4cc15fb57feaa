//! Starting the two servers of the example on a listener, with or without the layers.
//!
//! The tonic services are served by axum (`Routes::into_axum_router`) rather than by tonic's
//! own `transport::Server`: that server enforces `grpc-timeout` itself, outside any layer a user
//! adds, and answers an expired call with CANCELLED ("Timeout expired"), racing the
//! `DeadlineLayer`'s DEADLINE_EXCEEDED at the very same instant. Served by axum, the deadline
//! layer is the only one enforcing, and callers get status 4 as gRPC specifies.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};
use opentelemetry::metrics::Meter;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::Channel;
use tower::Service;

use crate::backend::{Backend, Observed};
use crate::edge::Edge;
use crate::pb::echo_server::EchoServer;
use crate::stack::{self, HopSettings};

/// A running server: its address and its task (aborted on drop).
pub struct Running {
    pub addr: std::net::SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `routes` on `listener` (HTTP/2 without TLS, as gRPC clients speak it), through the
/// server layers when `meter` is given.
fn spawn(
    listener: TcpListener,
    routes: Routes,
    settings: &HopSettings,
    meter: Option<&Meter>,
) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let router = routes.prepare().into_axum_router();
    let task = match meter {
        Some(meter) => serve_with(
            listener,
            stack::server_layers(settings, meter).service(router),
        ),
        None => serve_with(listener, router),
    };
    Ok(Running { addr, task })
}

fn serve_with<S, B>(listener: TcpListener, service: S) -> JoinHandle<std::io::Result<()>>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let service =
        tower::ServiceExt::map_response(service, |response: Response<B>| response.map(Body::new));
    tokio::spawn(async move { axum::serve(listener, tower::make::Shared::new(service)).await })
}

/// The backend with every server layer (`meter: Some`) or none.
pub fn backend(
    listener: TcpListener,
    settings: &HopSettings,
    meter: Option<&Meter>,
) -> std::io::Result<(Running, Arc<Observed>)> {
    let backend = Backend::new();
    let observed = backend.observed();
    let running = spawn(
        listener,
        Routes::new(EchoServer::new(backend)),
        settings,
        meter,
    )?;
    Ok((running, observed))
}

/// The edge, calling the backend at `backend`, with every layer on both its sides
/// (`meter: Some`) or none.
pub fn edge(
    listener: TcpListener,
    backend: std::net::SocketAddr,
    settings: &HopSettings,
    meter: Option<&Meter>,
) -> std::io::Result<Running> {
    let origin: http::Uri = format!("http://{backend}")
        .parse()
        .map_err(std::io::Error::other)?;
    let channel = Channel::builder(origin.clone()).connect_lazy();
    let upstream = match meter {
        Some(meter) => stack::client_stack(channel, settings, meter),
        None => stack::bare_client(channel),
    };
    let routes = Routes::new(EchoServer::new(Edge::new(upstream, origin)));
    spawn(listener, routes, settings, meter)
}
