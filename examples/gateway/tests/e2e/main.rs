//! End-to-end: the real `gateway` binary against fault-injecting upstreams written here
//! (scripted 503 / 404 / 429 / slow / reset / closed port), in both flag modes.
//!
//! One test binary (so one link) with a file per concern.

#[path = "../common/mod.rs"]
mod common;

mod canary;
mod config;
mod deadline;
mod faults;
mod metrics;
mod proxy;
mod queue;
mod retry;
mod shutdown;
