//! `xtask-demo gateway|worker [--duration SECS] [--no-wait] [--release]` and
//! `xtask-demo cardinality URL [--max-series N] [--max-values-per-label N]`: run by
//! `cargo xtask demo [--worker]` and `cargo xtask cardinality`, which build it (beside the
//! gateway or worker it starts) and pass their arguments on.

use std::process::ExitCode;

const USAGE: &str = "usage: xtask-demo gateway|worker [--duration SECS] [--no-wait] [--release]
       xtask-demo cardinality URL [--max-series N] [--max-values-per-label N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gateway") => {
            xtask_demo::setup::parse(&args[1..]).and_then(|o| xtask_demo::gateway::run(&o))
        }
        Some("worker") => worker(&args[1..]),
        Some("cardinality") => xtask_demo::cardinality::run(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask-demo: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "worker")]
fn worker(args: &[String]) -> Result<(), String> {
    xtask_demo::setup::parse(args).and_then(|options| xtask_demo::worker::run(&options))
}

#[cfg(not(feature = "worker"))]
fn worker(_: &[String]) -> Result<(), String> {
    Err("built without the `worker` feature: use `cargo xtask demo --worker`".to_string())
}
