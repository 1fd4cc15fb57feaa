//! The client layer: writes the remaining budget on outgoing requests and enforces it locally.

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::PropagateDeadlineLayer;
pub use service::PropagateDeadline;
