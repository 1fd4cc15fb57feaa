//! `cargo xtask ci`: every check a submission must pass, in the order that fails fastest.

use crate::{cargo, step};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(unknown) = args.first() {
        return Err(format!("`ci` takes no arguments, got `{unknown}`"));
    }
    // Reads sources only, so it runs in milliseconds: first.
    crate::circles::run(&[])?;
    let cargo = cargo();
    step("fmt", &cargo, &["fmt", "--all", "--check"], &[])?;
    step(
        "clippy",
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    features()?;
    step(
        "test",
        &cargo,
        &["test", "--workspace", "--all-features"],
        &[],
    )?;
    step(
        "doc",
        &cargo,
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    package()?;
    // The benchmark's smoke run, so it never rots.
    crate::bench::run(&["--quick".to_string()])?;
    println!("xtask: ci passed");
    Ok(())
}

/// The library crates, published to crates.io.
const LIBRARIES: [&str; 5] = [
    "tower-reliability-core",
    "tower-deadline",
    "tower-retry-classified",
    "tower-bounded-queue",
    "tower-metrics-layer",
];

/// Every library crate linted with each feature alone and with none (cargo-hack's
/// `--each-feature`), without dev-dependencies: clippy and the tests build `--all-features`
/// only, so a `cfg` that needs another feature would otherwise first break on a user's machine.
/// cargo-hack is installed into cargo's own bin folder when missing.
fn features() -> Result<(), String> {
    let cargo = cargo();
    let installed = std::process::Command::new(&cargo)
        .args(["hack", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        step(
            "install cargo-hack",
            &cargo,
            &["install", "cargo-hack", "--locked", "--version", "0.6.46"],
            &[],
        )?;
    }
    // clippy rather than check: `-D warnings` then reaches our crates only, so a feature set
    // that leaves code unused fails too, without rebuilding the dependencies.
    let mut args = vec!["hack", "clippy", "--each-feature", "--no-dev-deps"];
    for library in LIBRARIES {
        args.extend(["-p", library]);
    }
    args.extend(["--", "-D", "warnings"]);
    step("features", &cargo, &args, &[])
}

/// Packages (and verifies by building) every publishable crate; cargo orders dependent crates.
/// Every `publish = false` member is excluded: examples, xtask and test support are never
/// published, and their path-only dependencies cannot be packaged.
pub(crate) fn package() -> Result<(), String> {
    step(
        "package",
        &cargo(),
        &[
            "package",
            "--workspace",
            "--exclude",
            "xtask",
            "--exclude",
            "xtask-bench",
            "--exclude",
            "gateway",
            "--exclude",
            "grpc-example",
            "--exclude",
            "worker",
            "--exclude",
            "alloc-meter",
            "--exclude",
            "event-log",
            "--allow-dirty",
        ],
        &[],
    )
}
