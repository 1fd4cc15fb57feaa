//! Project automation, run as `cargo xtask <command>`.
//!
//! `ci` is the single test command: the README and `.ci/run` both call it, so what a developer
//! runs locally is exactly what CI runs.

use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench;
mod ci;
mod circles;
mod soak;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("package") => ci::package(),
        Some("demo") => demo(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("cardinality") => cardinality(&args[1..]),
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

/// `demo [--worker] [--duration SECS] [--no-wait] [--release]`: builds the gateway (or the
/// worker) and `xtask-demo` (xtask/demo) in one cargo invocation, so their dependencies compile
/// once, then runs `xtask-demo gateway|worker` with the other arguments. The drivers and their
/// HTTP and NATS clients live there, so xtask keeps no dependencies.
fn demo(args: &[String]) -> Result<(), String> {
    let (mut worker, mut release) = (false, false);
    let mut passed = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--worker" => worker = true,
            "--release" => {
                release = true;
                passed.push(arg.clone());
            }
            "--no-wait" => passed.push(arg.clone()),
            "--duration" => {
                passed.push(arg.clone());
                passed.extend(args.next().cloned());
            }
            other => {
                return Err(format!(
                    "demo: unknown argument `{other}` (use --worker, --duration SECS, --no-wait, \
                     --release)"
                ));
            }
        }
    }
    let what = if worker { "worker" } else { "gateway" };
    let mut build = vec!["build", "--quiet", "-p", what, "-p", "xtask-demo"];
    if worker {
        build.extend(["--features", "xtask-demo/worker"]);
    }
    if release {
        build.push("--release");
    }
    step(&format!("build {what}"), &cargo(), &build, &[])?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        std::path::PathBuf::from,
    );
    let binary = target
        .join(if release { "release" } else { "debug" })
        .join(format!("xtask-demo{}", std::env::consts::EXE_SUFFIX));
    let status = Command::new(&binary)
        .arg(what)
        .args(&passed)
        .status()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("the {what} demo failed ({status})"))
}

/// `cardinality URL [--max-series N] [--max-values-per-label N]`: `xtask-demo cardinality`.
fn cardinality(args: &[String]) -> Result<(), String> {
    let status = Command::new(cargo())
        .args(["run", "--quiet", "-p", "xtask-demo", "--", "cardinality"])
        .args(args)
        .status()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("the cardinality check failed ({status})"))
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
