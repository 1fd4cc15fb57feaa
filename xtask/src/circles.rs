//! `cargo xtask circles`: fails when a crate's modules import each other in a circle.
//!
//! The check parses Rust with syn, so it lives in its own crate, `xtask-circles`
//! (`xtask/circles`), and xtask stays free of dependencies: this only runs it. A debug build,
//! since it is built more often than it runs long: it reads the workspace in well under a second.

use std::process::{Command, Stdio};

use crate::cargo;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let output = Command::new(cargo())
        .args(["run", "--quiet", "--package", "xtask-circles", "--"])
        .args(args)
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("circles: could not start `{}`: {e}", cargo()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim_end();
    if output.status.success() {
        if !stderr.is_empty() {
            eprintln!("{stderr}");
        }
        return Ok(());
    }
    // The check printed its report; its last line is `xtask: <reason>`, returned as our error
    // so that `main` prints it once, as for any command.
    let (before, last) = stderr.rsplit_once('\n').unwrap_or(("", stderr));
    match last.strip_prefix("xtask: ") {
        Some(reason) => {
            if !before.is_empty() {
                eprintln!("{before}");
            }
            Err(reason.to_string())
        }
        None => {
            eprintln!("{stderr}");
            Err("circles: `cargo run --package xtask-circles` failed".to_string())
        }
    }
}
