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
