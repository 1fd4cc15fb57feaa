//! End-to-end: the real `gateway` binary against fault-injecting upstreams written here
//! (scripted 503 / 404 / 429 / slow / reset / closed port), in both flag modes.
//!
//! One test binary (so one link) with a file per concern.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/otlp.rs"]
mod otlp;

mod breaker;
mod canary;
mod cardinality;
mod config;
mod deadline;
mod faults;
mod metrics;
mod proxy;
mod queue;
mod retry;
mod shutdown;
mod traces;

// `cargo xtask cardinality`, compiled here from xtask's sources so the check runs against the
// real gateway (`cardinality.rs`).
#[allow(dead_code)]
#[path = "../../../../xtask/src/exposition.rs"]
mod exposition;
#[allow(dead_code)]
#[path = "../../../../xtask/src/http1.rs"]
mod http1;
#[allow(dead_code)]
#[path = "../../../../xtask/src/cardinality.rs"]
mod xtask_cardinality;
