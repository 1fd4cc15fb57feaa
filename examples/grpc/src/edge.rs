//! The edge: a tonic service that forwards each call to the backend through the client stack.

use tonic::{Request, Response, Status};

use crate::pb::echo_client::EchoClient;
use crate::pb::echo_server::Echo;
use crate::pb::{EchoReply, EchoRequest};
use crate::stack::Upstream;

/// The `Echo` edge, forwarding to a backend through a client stack.
#[derive(Clone, Debug)]
pub struct Edge {
    backend: EchoClient<Upstream>,
}

impl Edge {
    /// Calls go to `origin` (the backend's `http://host:port`) through `backend`. tonic writes
    /// the origin into each request's URI, so the client metrics below it can record
    /// `server.address` and `server.port`.
    pub fn new(backend: Upstream, origin: http::Uri) -> Self {
        Self {
            backend: EchoClient::with_origin(backend, origin),
        }
    }
}

#[tonic::async_trait]
impl Echo for Edge {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        // Only the message goes on: the deadline reaches the client stack through the scope
        // the edge's DeadlineLayer runs this handler in, and the propagation layer writes
        // what is left of it as the backend call's `grpc-timeout`.
        self.backend
            .clone()
            .unary(Request::new(request.into_inner()))
            .await
    }

    type StreamStream = tonic::codec::Streaming<EchoReply>;

    async fn stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        self.backend
            .clone()
            .stream(Request::new(request.into_inner()))
            .await
    }
}
