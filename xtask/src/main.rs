//! Project automation, run as `cargo xtask <command>`.
//!
//! `ci` is the single test command: the README and `.ci/run` both call it, so what a developer
//! runs locally is exactly what CI runs.

use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench;
mod cardinality;
mod ci;
mod circles;
mod demo;
mod demo_setup;
mod exposition;
mod http1;
mod nats_client;
mod rust_paths;
mod soak;
mod worker_demo;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("package") => ci::package(),
        Some("demo") => demo_setup::parse(&args[1..]).and_then(|options| {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .ok_or("xtask has no parent directory")?;
            if options.worker {
                worker_demo::run(&options, root)
            } else {
                demo::run(&options)
            }
        }),
        Some("bench") => bench::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("cardinality") => cardinality::run(&args[1..]),
        Some("circles") => circles::run(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print_help();
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         ci        import circles, fmt, clippy, tests (doctests included), docs and packaging; stops at the first failure\n\
         demo      the example gateway under load, summarised from its /metrics (--duration SECS, --no-wait, --release)\n\
         demo --worker  the Worker example fed jobs over a nats-server it starts, summarised the same way\n\
         bench     whole-system benchmark + criterion; --quick for CI's smoke run\n\
         soak      10x overload for --secs N (default 300): memory, fds and tasks must stay flat\n\
         cardinality URL [--max-series N] [--max-values-per-label N]: series per metric and values per label\n\
         circles   fails when a crate's modules import each other in a circle, listing each one\n\
         package   cargo package for every publishable crate\n"
    );
}

/// The cargo that runs us, so nested builds use the same toolchain.
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Runs one named step, printing a one-line summary with its duration.
pub(crate) fn step(
    name: &str,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(), String> {
    let started = Instant::now();
    let mut command = Command::new(program);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let status = command
        .status()
        .map_err(|e| format!("{name}: could not start `{program}`: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if status.success() {
        println!("xtask: ok     {name} ({seconds:.1} s)");
        Ok(())
    } else {
        println!("xtask: FAILED {name} ({seconds:.1} s)");
        Err(format!(
            "step `{name}` failed: {program} {}",
            args.join(" ")
        ))
    }
}
