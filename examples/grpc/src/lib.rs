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

// The repository's front page: its axum, client and tonic stacks compile (and are type-checked
// against this example's generated service) as doctests of this crate, which has every layer.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct FrontPageDoctests;
