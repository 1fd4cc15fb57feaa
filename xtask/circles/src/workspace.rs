//! The workspace as the check reads it: its member crates, and each crate's `src/` files with
//! what they import.

use std::path::Path;

use crate::circles::Files;
use crate::imports::imports;

/// The workspace members of `root/Cargo.toml`, as paths relative to `root`; a `*` in a member's
/// last component matches every directory there that holds a `Cargo.toml`.
///
/// Read from the text (the first `[ … ]` after `members`), so no TOML parser is built for it.
pub(crate) fn members(root: &Path) -> Result<Vec<String>, String> {
    let manifest = root.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let start = text
        .lines()
        .find(|line| line.trim_start().starts_with("members"))
        .and_then(|line| text.find(line))
        .and_then(|i| text[i..].find('[').map(|j| i + j + 1))
        .ok_or("Cargo.toml lists no workspace members")?;
    let end = text[start..]
        .find(']')
        .map(|j| start + j)
        .ok_or("Cargo.toml: unterminated members")?;
    let mut crates = Vec::new();
    for member in text[start..end]
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
    {
        let (dir, last) = member.rsplit_once('/').unwrap_or(("", member));
        let Some((prefix, suffix)) = last.split_once('*') else {
            if !member.is_empty() {
                crates.push(member.to_string());
            }
            continue;
        };
        let entries = std::fs::read_dir(root.join(dir)).map_err(|e| format!("{member}: {e}"))?;
        let mut matched: Vec<String> = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with(prefix) && name.ends_with(suffix))
            .filter(|name| root.join(dir).join(name).join("Cargo.toml").is_file())
            .map(|name| {
                if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                }
            })
            .collect();
        matched.sort();
        crates.extend(matched);
    }
    Ok(crates)
}

/// Every `.rs` file under `src`, keyed by its path under `src`, with the paths it names.
pub(crate) fn read_sources(src: &Path) -> Result<Files, String> {
    let mut files = Files::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                // A file rustc would reject fails here too, rather than hide its imports.
                let found = imports(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                let relative = path.strip_prefix(src).expect("under src");
                let key: Vec<_> = relative.iter().map(|c| c.to_string_lossy()).collect();
                files.insert(key.join("/"), found);
            }
        }
    }
    Ok(files)
}
