//! A gRPC example: a client calling an edge service that calls a backend service, with the
//! four tower-reliability layers on each hop (see `stack`).

pub mod backend;
pub mod edge;
pub mod serve;
pub mod stack;

/// The generated code of `proto/echo.proto`.
pub mod pb {
    tonic::include_proto!("reliability.echo.v1");
}
