//! `cargo xtask soak [--secs N]`: the gateway at 10x overload for N seconds (default 300) in a
//! release build, memory, file descriptors and tasks sampled every 5 s; fails unless they stay
//! flat, and puts the table in `BENCHMARKS.md` (section 7, which `cargo xtask bench` keeps).

use crate::step;

/// The heading `BENCHMARKS.md`'s soak section starts with.
pub(crate) const HEADING: &str = "## 7. Soak";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let secs = match args {
        [] => 300,
        [flag, value] if flag == "--secs" => value
            .parse::<u64>()
            .ok()
            .filter(|s| *s >= 10)
            .ok_or("--secs takes a number of seconds, at least 10")?,
        _ => return Err("`soak` takes only --secs N".to_string()),
    };
    let cargo = crate::cargo();
    step(
        "soak: build",
        &cargo,
        &["build", "--release", "-p", "gateway", "-p", "xtask-bench"],
        &[],
    )?;
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_string());
    let out = format!("{target}/soak.md");
    let secs = secs.to_string();
    let result = step(
        "soak",
        &format!("{target}/release/xtask-bench"),
        &[
            "soak",
            "--secs",
            &secs,
            "--gateway",
            &format!("{target}/release/gateway"),
            "--out",
            &out,
        ],
        &[],
    );
    // The table goes in even when the run failed: it shows what grew.
    if let Ok(section) = std::fs::read_to_string(&out) {
        let current = std::fs::read_to_string("BENCHMARKS.md").unwrap_or_default();
        std::fs::write("BENCHMARKS.md", with_section(&current, &section))
            .map_err(|e| format!("BENCHMARKS.md: {e}"))?;
        println!("xtask: soak table written to BENCHMARKS.md");
    }
    result
}

/// `document` with its soak section replaced by `section` (or `section` appended).
pub(crate) fn with_section(document: &str, section: &str) -> String {
    let mut out = without_section(document).trim_end().to_string();
    out.push_str("\n\n");
    out.push_str(section.trim_end());
    out.push('\n');
    out
}

/// `document` without its soak section.
pub(crate) fn without_section(document: &str) -> String {
    match document.find(HEADING) {
        None => document.to_string(),
        Some(start) => {
            let rest = &document[start + HEADING.len()..];
            let end = rest
                .find("\n## ")
                .map_or(document.len(), |i| start + HEADING.len() + i + 1);
            format!("{}{}", &document[..start], &document[end..])
        }
    }
}

/// The section of `document` under `heading`, up to the next `## ` heading.
pub(crate) fn section_of(document: &str, heading: &str) -> Option<String> {
    let start = document.find(heading)?;
    let rest = &document[start..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| heading.len() + i + 1);
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soak_section_is_replaced_kept_or_appended() {
        let doc = "# B\n\n## 6. gRPC\n\nx\n\n## 7. Soak\n\nold\n";
        assert_eq!(section_of(doc, HEADING).unwrap(), "## 7. Soak\n\nold\n");
        let new = with_section(doc, "## 7. Soak\n\nnew\n");
        assert_eq!(new, "# B\n\n## 6. gRPC\n\nx\n\n## 7. Soak\n\nnew\n");
        let appended = with_section("# B\n", "## 7. Soak\n\nnew\n");
        assert_eq!(appended, "# B\n\n## 7. Soak\n\nnew\n");
        assert!(section_of("# B\n", HEADING).is_none());
    }
}
