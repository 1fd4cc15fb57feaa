//! Which files of one crate import which, and the circles among them.
//!
//! A path names the deepest module file it reaches (`crate::a::b::C` is `a/b.rs`, or
//! `a/b/mod.rs`, or else `a.rs`), taking the next segment from it as the name. A crate's faces
//! (`lib.rs`, `main.rs`, `mod.rs`), which mostly re-export, are never a target. Every strongly
//! connected group of two or more files is a circle.

use std::collections::{BTreeMap, BTreeSet};

use crate::imports::Import;

/// One crate's files: the path under `src/` (`a/b.rs`, always with `/`) and what it imports.
pub(crate) type Files = BTreeMap<String, Vec<Import>>;

/// Files of one crate that import each other, directly or through one another.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Circle {
    /// The files, paths under `src/`, sorted.
    pub(crate) files: Vec<String>,
    /// Every import inside the circle: from, to, the names `from` takes from `to`.
    pub(crate) imports: Vec<(String, String, Vec<String>)>,
}

/// The circles among one crate's files, in the order of their first file.
pub(crate) fn circles(crate_files: &Files) -> Vec<Circle> {
    let files: Vec<&String> = crate_files.keys().collect();
    let edges = edges(crate_files);
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

/// `edges[from][to]`: the names file `from` takes from file `to`, files in key order.
fn edges(crate_files: &Files) -> Vec<BTreeMap<usize, BTreeSet<String>>> {
    let files: Vec<&String> = crate_files.keys().collect();
    let modules: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, file)| (module_of(file), i))
        .collect();
    let mut edges = vec![BTreeMap::new(); files.len()];
    for (from, file) in files.iter().enumerate() {
        for import in &crate_files[*file] {
            let module = [module_of(file), import.within.clone()].concat();
            let Some(absolute) = absolute(&module, &import.path, &modules) else {
                continue;
            };
            let Some((to, name)) = target(&absolute, &modules) else {
                continue;
            };
            if to != from && !is_face(files[to]) {
                edges[from]
                    .entry(to)
                    .or_insert_with(BTreeSet::new)
                    .insert(name);
            }
        }
    }
    edges
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
    use crate::imports::imports;

    fn crate_of(files: &[(&str, &str)]) -> Files {
        files
            .iter()
            .map(|(path, text)| (path.to_string(), imports(text).expect("parses")))
            .collect()
    }

    #[test]
    fn finds_a_circle_through_use_items_and_code_paths() {
        let files = crate_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\npub use crate::a::A;\n"),
            (
                "a.rs",
                "use crate::{b::B, c::{self, C as Sea}};\npub struct A;\n",
            ),
            ("b.rs", "pub struct B;\nfn f() { crate::a::make(); }\n"),
            ("c.rs", "// use crate::a::A;\npub struct C;\n"),
        ]);
        assert_eq!(
            circles(&files),
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
        let files = crate_of(&[
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
        assert_eq!(circles(&files), []);

        let mut tangled = files;
        tangled.insert(
            "server/response.rs".into(),
            imports("use super::future::{\n    Rejection,\n};\n").expect("parses"),
        );
        let found = circles(&tangled);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].files, ["server/future.rs", "server/response.rs"]);
        assert_eq!(found[0].imports[1].2, ["Rejection"]);
    }

    #[test]
    fn resolves_super_from_an_inline_module_not_the_file() {
        // `super::Single` in `keys.rs`'s inline `mod sealed` is `keys::Single`: no import of
        // `breaker.rs`, so no circle with it.
        let files = crate_of(&[
            ("lib.rs", "mod breaker;\n"),
            ("breaker.rs", "mod keys;\nuse keys::Single;\n"),
            (
                "breaker/keys.rs",
                "pub struct Single;\nmod sealed {\n    impl Sealed for super::Single {}\n}\n",
            ),
        ]);
        assert_eq!(circles(&files), []);
    }
}
