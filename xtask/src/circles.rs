//! `cargo xtask circles`: fails when a crate's modules import each other in a circle.
//!
//! A crate whose files stand in floors, each importing only files below it, reads top to
//! bottom: a file can be understood from the files it names, never from one that needs it
//! back. The check reads every `src/` file of every workspace member, takes the modules it
//! names (`use crate::…`, `use super::…`, `use self::…`, and `crate::…` or `super::…` paths in
//! code), and reports every strongly connected group of files as a circle, file -> file with
//! the names that tie them.
//!
//! It reads text, not the compiler's view (see [`rust_paths`](crate::rust_paths)), and so stays
//! simple: a path names the deepest module file it reaches (`crate::a::b::C` is `a/b.rs`, or
//! `a/b/mod.rs`, or else `a.rs`), and a crate's faces (`lib.rs`, `main.rs`, `mod.rs`), which
//! mostly re-export, are never a target.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::rust_paths::paths;

/// One crate's sources: the path under `src/` (`a/b.rs`, always with `/`) and its text.
pub(crate) type Sources = BTreeMap<String, String>;

/// Files of one crate that import each other, directly or through one another.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Circle {
    /// The files, paths under `src/`, sorted.
    pub(crate) files: Vec<String>,
    /// Every import inside the circle: from, to, the names `from` takes from `to`.
    pub(crate) imports: Vec<(String, String, Vec<String>)>,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(unknown) = args.first() {
        return Err(format!("`circles` takes no arguments, got `{unknown}`"));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .ok_or("xtask has no parent directory")?;
    let mut report = String::new();
    let mut found = 0;
    let crates = members(&root)?;
    for member in &crates {
        let sources = read_sources(&root.join(member).join("src"))?;
        for circle in circles(&sources) {
            found += 1;
            let path = |file: &str| format!("{member}/src/{file}");
            let files: Vec<String> = circle.files.iter().map(|f| path(f)).collect();
            report.push_str(&format!(
                "circle {found}: {} files: {}\n",
                files.len(),
                files.join(", ")
            ));
            for (from, to, names) in &circle.imports {
                report.push_str(&format!(
                    "  {} -> {}: {}\n",
                    path(from),
                    path(to),
                    names.join(", ")
                ));
            }
        }
    }
    if found == 0 {
        println!(
            "xtask: ok     circles ({} crates, no import circle)",
            crates.len()
        );
        Ok(())
    } else {
        print!("{report}");
        println!("xtask: FAILED circles");
        Err(format!(
            "{found} import circle(s): move what the files share into a module below both"
        ))
    }
}

/// The workspace members of `root/Cargo.toml`, as paths relative to `root`; a `*` in a member's
/// last component matches every directory there that holds a `Cargo.toml`.
fn members(root: &Path) -> Result<Vec<String>, String> {
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

/// Every `.rs` file under `src`, keyed by its path under `src`.
fn read_sources(src: &Path) -> Result<Sources, String> {
    let mut sources = Sources::new();
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
                let relative = path.strip_prefix(src).expect("under src");
                let key: Vec<_> = relative.iter().map(|c| c.to_string_lossy()).collect();
                sources.insert(key.join("/"), text);
            }
        }
    }
    Ok(sources)
}

/// The module a file under `src/` defines: `a/b.rs` and `a/b/mod.rs` are `a::b`, the crate
/// roots `lib.rs` and `main.rs` are the crate itself.
fn module_of(file: &str) -> Vec<String> {
    let mut segments: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if segments.last().is_some_and(|s| s == "mod")
        || (segments.len() == 1 && (segments[0] == "lib" || segments[0] == "main"))
    {
        segments.pop();
    }
    segments
}

/// A file that mostly re-exports, never the target of an import (see the module docs).
fn is_face(file: &str) -> bool {
    file == "lib.rs" || file == "main.rs" || file == "mod.rs" || file.ends_with("/mod.rs")
}

/// The circles among one crate's files, in the order of their first file.
pub(crate) fn circles(sources: &Sources) -> Vec<Circle> {
    let files: Vec<&String> = sources.keys().collect();
    let modules: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, file)| (module_of(file), i))
        .collect();
    // edges[from][to] = the names `from` takes from `to`
    let mut edges: Vec<BTreeMap<usize, BTreeSet<String>>> = vec![BTreeMap::new(); files.len()];
    for (from, file) in files.iter().enumerate() {
        let module = module_of(file);
        for path in paths(&sources[*file]) {
            let Some(absolute) = absolute(&module, &path, &modules) else {
                continue;
            };
            let Some((to, name)) = target(&absolute, &modules) else {
                continue;
            };
            if to != from && !is_face(files[to]) {
                edges[from].entry(to).or_default().insert(name);
            }
        }
    }
    strongly_connected(&edges)
        .into_iter()
        .filter(|group| group.len() > 1)
        .map(|group| {
            let mut imports = Vec::new();
            for &from in &group {
                for (to, names) in &edges[from] {
                    if group.contains(to) {
                        let names = names.iter().cloned().collect();
                        imports.push((files[from].clone(), files[*to].clone(), names));
                    }
                }
            }
            imports.sort();
            let mut files: Vec<String> = group.iter().map(|&i| files[i].clone()).collect();
            files.sort();
            Circle { files, imports }
        })
        .collect()
}

/// `path` as written in `module`, made absolute (without the leading `crate`); `None` for a
/// path into another crate.
fn absolute(
    module: &[String],
    path: &[String],
    modules: &BTreeMap<Vec<String>, usize>,
) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "self" => Some([module, rest].concat()),
        "super" => {
            let mut base = module.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            Some([&base[..], rest].concat())
        }
        // A bare path starting with a child module of this one (2018 paths); else another crate.
        _ => {
            let child = [module, &path[..1]].concat();
            modules
                .contains_key(&child)
                .then(|| [module, path].concat())
        }
    }
}

/// The deepest module file `absolute` reaches and the name taken from it (the next segment,
/// or the module's own name when the path stops at it).
fn target(absolute: &[String], modules: &BTreeMap<Vec<String>, usize>) -> Option<(usize, String)> {
    (1..=absolute.len()).rev().find_map(|len| {
        let file = modules.get(&absolute[..len])?;
        let name = absolute.get(len).unwrap_or(&absolute[len - 1]);
        Some((*file, name.clone()))
    })
}

/// Tarjan's strongly connected components of a graph given as adjacency maps.
fn strongly_connected<T>(edges: &[BTreeMap<usize, T>]) -> Vec<Vec<usize>> {
    struct State {
        next: usize,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        groups: Vec<Vec<usize>>,
    }
    fn visit<T>(v: usize, edges: &[BTreeMap<usize, T>], s: &mut State) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in edges[v].keys() {
            match s.index[w] {
                None => {
                    visit(w, edges, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(index) if s.on_stack[w] => s.low[v] = s.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                group.push(w);
                if w == v {
                    break;
                }
            }
            s.groups.push(group);
        }
    }
    let n = edges.len();
    let mut state = State {
        next: 0,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        groups: Vec::new(),
    };
    for v in 0..n {
        if state.index[v].is_none() {
            visit(v, edges, &mut state);
        }
    }
    state
        .groups
        .sort_by_key(|group| group.iter().min().copied());
    state.groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_of(files: &[(&str, &str)]) -> Sources {
        files
            .iter()
            .map(|(path, text)| (path.to_string(), text.to_string()))
            .collect()
    }

    #[test]
    fn finds_a_circle_through_use_items_and_code_paths() {
        let sources = crate_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\npub use crate::a::A;\n"),
            (
                "a.rs",
                "use crate::{b::B, c::{self, C as Sea}};\npub struct A;\n",
            ),
            ("b.rs", "pub struct B;\nfn f() { crate::a::make(); }\n"),
            ("c.rs", "// use crate::a::A;\npub struct C;\n"),
        ]);
        assert_eq!(
            circles(&sources),
            [Circle {
                files: vec!["a.rs".into(), "b.rs".into()],
                imports: vec![
                    ("a.rs".into(), "b.rs".into(), vec!["B".into()]),
                    ("b.rs".into(), "a.rs".into(), vec!["make".into()]),
                ],
            }]
        );
    }

    #[test]
    fn follows_super_and_skips_faces_and_unit_tests() {
        let sources = crate_of(&[
            ("lib.rs", "mod server;\npub use server::Mode;\n"),
            (
                "server/mod.rs",
                "mod future;\nmod response;\npub struct Mode;\n",
            ),
            (
                "server/future.rs",
                "use super::response::answer;\nuse super::Mode;\nuse crate::Mode as M;\n",
            ),
            (
                "server/response.rs",
                "pub(crate) fn answer() {}\n\n#[cfg(test)]\nmod tests {\n    use super::super::future::*;\n}\n",
            ),
        ]);
        assert_eq!(circles(&sources), []);

        let mut tangled = sources;
        tangled.insert(
            "server/response.rs".into(),
            "use super::future::{\n    Rejection,\n};\n".into(),
        );
        let found = circles(&tangled);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].files, ["server/future.rs", "server/response.rs"]);
        assert_eq!(found[0].imports[1].2, ["Rejection"]);
    }
}
