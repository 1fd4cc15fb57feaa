//! The import-circle check behind `cargo xtask circles`: fails when a crate's modules import
//! each other in a circle.
//!
//! A crate whose files stand in floors, each importing only files below it, reads top to
//! bottom: a file can be understood from the files it names, never from one that needs it
//! back. The check parses every `src/` file of every workspace member, takes the modules it
//! names (`use crate::…`, `use super::…`, `use self::…`, and `crate::…` or `super::…` paths in
//! code), and reports every strongly connected group of files as a circle, file -> file with
//! the names that tie them.
//!
//! Its own crate, not part of xtask, so that xtask stays free of dependencies and quick to
//! build, and syn is built only for this check.

use std::path::Path;
use std::process::ExitCode;

mod circles;
mod imports;
mod workspace;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The same lines and exit as an xtask command: xtask runs this and repeats the reason.
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    if let Some(unknown) = args.first() {
        return Err(format!("`circles` takes no arguments, got `{unknown}`"));
    }
    // This crate is `xtask/circles` in the workspace.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .ok_or("xtask/circles has no workspace directory")?;
    let report = check(root)?;
    if report.found == 0 {
        println!(
            "xtask: ok     circles ({} crates, no import circle)",
            report.crates
        );
        Ok(())
    } else {
        print!("{}", report.text);
        println!("xtask: FAILED circles");
        Err(format!(
            "{} import circle(s): move what the files share into a module below both",
            report.found
        ))
    }
}

/// What the check found in a workspace.
#[derive(Debug)]
struct Report {
    /// The member crates read.
    crates: usize,
    /// The circles found.
    found: usize,
    /// Each circle: its files, then every import inside it, one per line.
    text: String,
}

/// Checks every member crate of the workspace at `root`.
fn check(root: &Path) -> Result<Report, String> {
    let crates = workspace::members(root)?;
    let mut report = Report {
        crates: crates.len(),
        found: 0,
        text: String::new(),
    };
    for member in &crates {
        let files = workspace::read_sources(&root.join(member).join("src"))?;
        for circle in circles::circles(&files) {
            report.found += 1;
            let path = |file: &str| format!("{member}/src/{file}");
            let files: Vec<String> = circle.files.iter().map(|f| path(f)).collect();
            report.text.push_str(&format!(
                "circle {}: {} files: {}\n",
                report.found,
                files.len(),
                files.join(", ")
            ));
            for (from, to, names) in &circle.imports {
                report.text.push_str(&format!(
                    "  {} -> {}: {}\n",
                    path(from),
                    path(to),
                    names.join(", ")
                ));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_has_no_import_circle() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2);
        let report = check(root.expect("a workspace")).expect("readable");
        assert!(report.crates > 1, "{report:?}");
        assert_eq!(report.text, "", "{} circle(s)", report.found);
    }

    #[test]
    fn reports_a_circle_across_two_module_files() {
        let root = std::env::temp_dir().join(format!("xtask-circles-{}", std::process::id()));
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("Cargo.toml", "[workspace]\nmembers = [\"app\"]\n");
        write("app/Cargo.toml", "[package]\nname = \"app\"\n");
        write("app/src/lib.rs", "mod store;\nmod ticket;\n");
        write(
            "app/src/store.rs",
            "use crate::ticket::Ticket;\npub(crate) struct Store(Vec<Ticket>);\n",
        );
        write(
            "app/src/ticket.rs",
            "pub(crate) struct Ticket;\nfn keep(t: Ticket) -> super::store::Store {\n    \
             super::store::Store(vec![t])\n}\n",
        );
        let report = check(&root);
        std::fs::remove_dir_all(&root).expect("clean up");
        let report = report.expect("readable");
        assert_eq!(report.found, 1);
        assert_eq!(
            report.text,
            "circle 1: 2 files: app/src/store.rs, app/src/ticket.rs\n  \
             app/src/store.rs -> app/src/ticket.rs: Ticket\n  \
             app/src/ticket.rs -> app/src/store.rs: Store\n"
        );
    }
}
