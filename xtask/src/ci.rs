//! `cargo xtask ci`: every check a submission must pass, in the order that fails fastest.

use crate::{cargo, step};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(unknown) = args.first() {
        return Err(format!("`ci` takes no arguments, got `{unknown}`"));
    }
    // Read sources only, so they fail fastest: first.
    crate::circles::run(&[])?;
    links()?;
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

/// mdlinkcheck's version: a kept, offline checker of relative Markdown links and `#anchors`
/// (GitHub's heading-anchor rules), from PyPI. External URLs are not fetched: CI has no network
/// but the registries, and a site that is down is no reason to fail a build.
const MDLINKCHECK: &str = "mdlinkcheck==0.2.0";

/// Fails on any Markdown link to a file or anchor that does not exist in the repository
/// (rustdoc's own lints check the links in doc comments, in the `doc` step). The checker is
/// installed once into a virtual environment under `target/`.
fn links() -> Result<(), String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("xtask has no parent directory")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let venv = target.join("tools/mdlinkcheck");
    let checker = venv.join("bin/mdlinkcheck");
    if !checker.exists() {
        let venv_arg = venv.display().to_string();
        step(
            "mdlinkcheck: virtual environment",
            "python3",
            &["-m", "venv", &venv_arg],
            &[],
        )?;
        let pip = venv.join("bin/pip").display().to_string();
        step(
            "install mdlinkcheck",
            &pip,
            &[
                "install",
                "--quiet",
                "--disable-pip-version-check",
                MDLINKCHECK,
            ],
            &[],
        )?;
    }
    let checker = checker.display().to_string();
    let root = root.display().to_string();
    step("links", &checker, &[&root], &[])
}

/// Packages (and verifies by building) every publishable crate: the libraries, named one by
/// one, so that no `publish = false` member (examples, xtask, test support, whose path-only
/// dependencies cannot be packaged) is ever tried. Cargo orders dependent crates.
pub(crate) fn package() -> Result<(), String> {
    let mut args = vec!["package", "--allow-dirty"];
    for library in LIBRARIES {
        args.extend(["-p", library]);
    }
    step("package", &cargo(), &args, &[])
}
