//! Traces for the examples: OTLP/HTTP export through the program's own hyper client, W3C trace
//! context in and out of HTTP headers, a client span per upstream attempt, and the future that
//! ends a span with the answer.

mod client;
mod context;
mod export;
mod future;

pub use client::{ClientSpan, ClientSpanLayer};
pub use context::{HeaderExtractor, HeaderInjector, propagator};
pub use export::Traces;
pub use future::SpanFuture;
