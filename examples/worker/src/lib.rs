//! The Worker example's caller side, as a library: the job and reply format ([`protocol`]) and
//! a job client that retries `overloaded` answers ([`client`]).
//!
//! The `worker` binary of this package reads its wire format from here; the tests and
//! `cargo xtask demo --worker` send their jobs through the client. Everything else the worker
//! does (pools, steps, dispatch) stays private to the binary.

pub mod client;
pub mod protocol;
