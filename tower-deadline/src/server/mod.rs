//! The server layer: reads the incoming deadline, caps it, hands it to the inner service and
//! enforces it.

mod future;
mod layer;
mod response;
mod service;

pub use future::ResponseFuture;
pub use layer::{DEFAULT_MAX, DeadlineLayer, MIN_MAX};
pub use service::DeadlineService;
