//! The module paths a Rust source file names, read from its text for the import-circle check
//! ([`circles`](crate::circles)): every path of its `use` items, and `crate::`, `super::` and
//! `self::` paths in code, each as written (relative paths are resolved by the caller).
//!
//! Text, not a parser: enough for code formatted by rustfmt, and nothing to build or depend on.
//! Comment lines are skipped, and a file is read only up to its unit tests
//! (`#[cfg(test)] mod tests {`), whose `use super::*` would otherwise point back up.

/// The paths `text` names, as written, in order (see the module docs for which).
pub(crate) fn paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut item: Option<String> = None;
    let mut after_cfg_test = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("//") {
            continue;
        }
        if let Some(open) = item.as_mut() {
            open.push(' ');
            open.push_str(trimmed);
        } else if after_cfg_test && trimmed.starts_with("mod ") && trimmed.ends_with('{') {
            break;
        } else if let Some(tree) = use_tree(trimmed) {
            item = Some(tree.to_string());
        } else {
            code_paths(trimmed, &mut paths);
        }
        after_cfg_test = trimmed == "#[cfg(test)]";
        if let Some(end) = item.as_deref().and_then(|tree| tree.find(';')) {
            let tree = item.take().expect("an open item");
            expand(&tree[..end], &[], &mut paths);
        }
    }
    paths
}

/// The tree of a `use` item (`use`, `pub use`, `pub(crate) use`, …), from the line it starts.
fn use_tree(line: &str) -> Option<&str> {
    let rest = match line.strip_prefix("pub") {
        Some(rest) if rest.starts_with('(') => &rest[rest.find(')')? + 1..],
        Some(rest) => rest,
        None => line,
    };
    rest.trim_start().strip_prefix("use ")
}

/// Expands a use tree (`a::{b, c::{d as e, self}}`) into its paths, each after `prefix`; a
/// trailing `self` or `*` names the module itself.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return; // after a trailing comma
    }
    let (head, group) = match tree.find('{') {
        Some(open) => (&tree[..open], Some(&tree[open + 1..])),
        None => (tree.split(" as ").next().unwrap_or_default(), None),
    };
    let mut path = prefix.to_vec();
    path.extend(
        head.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from),
    );
    let Some(group) = group else {
        if path.len() > 1 && path.last().is_some_and(|s| s == "self" || s == "*") {
            path.pop();
        }
        if !path.is_empty() {
            out.push(path);
        }
        return;
    };
    let inner = group.trim_end().trim_end_matches('}');
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&inner[start..i], &path, out);
                start = i + 1;
            }
            _ => {}
        }
    }
    expand(&inner[start..], &path, out);
}

/// Paths starting `crate::`, `super::` or `self::` in a line of code (not `$crate::`).
fn code_paths(line: &str, out: &mut Vec<Vec<String>>) {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    for start in ["crate::", "super::", "self::"] {
        for (i, _) in line.match_indices(start) {
            let before = line[..i].chars().next_back();
            if before.is_some_and(|c| is_ident(c) || c == '$' || c == ':') {
                continue;
            }
            let mut path: Vec<String> = Vec::new();
            for segment in line[i..].split("::") {
                let ident: String = segment.chars().take_while(|&c| is_ident(c)).collect();
                let whole = ident.len() == segment.len();
                if !ident.is_empty() {
                    path.push(ident);
                }
                if !whole || path.is_empty() {
                    break;
                }
            }
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(text: &str) -> Vec<String> {
        paths(text).iter().map(|path| path.join("::")).collect()
    }

    #[test]
    fn expands_use_trees_across_lines() {
        let text = "use std::fmt;\n\
            pub(crate) use crate::a::{\n    self,\n    b::{C as D, E},\n    F,\n};\n\
            use super::*;\n";
        assert_eq!(
            joined(text),
            [
                "std::fmt",
                "crate::a",
                "crate::a::b::C",
                "crate::a::b::E",
                "crate::a::F",
                "super"
            ]
        );
    }

    #[test]
    fn reads_code_paths_but_not_comments_macros_or_unit_tests() {
        let text = "fn f() {\n    crate::budget::SHARDS + super::super::x::y();\n}\n\
            // crate::commented::Out\n\
            macro_rules! m { () => { $crate::hidden::H } }\n\
            #[cfg(test)]\nmod tests {\n    use crate::tested::T;\n}\n";
        assert_eq!(
            joined(text),
            ["crate::budget::SHARDS", "super::super::x::y"]
        );
    }
}
