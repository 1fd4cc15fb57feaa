//! The gateway as a library: its binary (`main.rs`), its tests and its fuzz target build on
//! these modules, compiled once.

pub mod balance;
pub mod canary;
mod clock;
pub mod config;
pub mod demo_provider;
pub mod dispatch;
pub mod edge;
mod error_chain;
pub mod fault;
pub mod proxy;
pub mod routes;
pub mod routing;
pub mod serve;
pub mod stack;
pub mod traces;

/// Unit tests measure what the settings parsers allocate (`config`'s property test).
#[cfg(test)]
#[global_allocator]
static METER: alloc_meter::Meter = alloc_meter::Meter;
