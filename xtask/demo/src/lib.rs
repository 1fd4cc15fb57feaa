//! What `cargo xtask demo`, `cargo xtask demo --worker` and `cargo xtask cardinality` run: the
//! demo drivers and the label cardinality check, with the HTTP client (hyper-util's) and the
//! NATS client (async-nats, feature `worker`) the workspace already builds. xtask builds this
//! crate's binary and runs it, so xtask itself keeps no dependencies.

pub mod cardinality;
pub mod exposition;
pub mod gateway;
pub mod setup;
#[cfg(feature = "worker")]
pub mod worker;
