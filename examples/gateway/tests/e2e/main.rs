//! End-to-end: the real `gateway` binary against fault-injecting upstreams written here
//! (scripted 503 / 404 / 429 / slow / reset / closed port), in both flag modes.
//!
//! One test binary (so one link) with a file per concern.

use gateway_harness as common;
use otlp_receiver as otlp;

mod balance;
mod breaker;
mod canary;
mod cardinality;
mod config;
mod deadline;
mod edge;
mod faults;
mod h2;
mod metrics;
mod proxy;
mod queue;
mod retry;
mod shutdown;
mod stale_connections;
mod traces;
