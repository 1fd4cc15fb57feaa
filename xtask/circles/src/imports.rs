//! The module paths one Rust source file names, read with syn for the import-circle check
//! ([`circles`](crate::circles)): every path of its `use` items, and `crate::`, `super::` and
//! `self::` paths in code, each as written (the caller resolves them).
//!
//! Parsed rather than scanned as text, so comments, strings and a file's formatting cannot
//! hide or invent a path. Two things stay token-level: the bodies of macros and attributes
//! have no syntax of their own, so a `crate::`, `super::` or `self::` path found in their
//! tokens counts as in code (never `$crate::`). Unit tests (`#[cfg(test)] mod … { … }`) are
//! left out: their `use super::*` would otherwise point back up.

use syn::buffer::{Cursor, TokenBuffer};
use syn::ext::IdentExt;
use syn::visit::{self, Visit};
use syn::{Attribute, Ident, ItemMod, ItemUse, Macro, MetaList, Path, PathArguments, UseTree};

/// One path a file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Import {
    /// The inline modules (`mod name { … }`) the path is written in, outermost first: `self`
    /// and `super` are relative to them, not to the file.
    pub(crate) within: Vec<String>,
    /// The path as written, `crate`, `super` and `self` included; a trailing `self` or `*` of a
    /// `use` is dropped, so the path names the module.
    pub(crate) path: Vec<String>,
}

/// The paths `text` names, in source order (see the module docs for which).
pub(crate) fn imports(text: &str) -> syn::Result<Vec<Import>> {
    let file = syn::parse_file(text)?;
    let mut collector = Collector::default();
    collector.visit_file(&file);
    Ok(collector.found)
}

#[derive(Default)]
struct Collector {
    within: Vec<String>,
    found: Vec<Import>,
}

impl Collector {
    fn push(&mut self, path: Vec<String>) {
        self.found.push(Import {
            within: self.within.clone(),
            path,
        });
    }

    /// Expands a use tree (`a::{b, c::{d as e, self}}`) into its paths, each after `prefix`.
    fn use_tree(&mut self, tree: &UseTree, prefix: &mut Vec<String>) {
        match tree {
            UseTree::Path(path) => {
                prefix.push(name(&path.ident));
                self.use_tree(&path.tree, prefix);
                prefix.pop();
            }
            UseTree::Name(leaf) => self.use_leaf(prefix, name(&leaf.ident)),
            UseTree::Rename(leaf) => self.use_leaf(prefix, name(&leaf.ident)),
            UseTree::Glob(_) => self.use_leaf(prefix, "*".to_string()),
            UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(tree, prefix);
                }
            }
        }
    }

    /// `prefix::last`, where a trailing `self` or `*` stands for the module `prefix` itself.
    fn use_leaf(&mut self, prefix: &[String], last: String) {
        let mut path = prefix.to_vec();
        if prefix.is_empty() || (last != "self" && last != "*") {
            path.push(last);
        }
        self.push(path);
    }

    /// Paths in tokens that have no syntax of their own (macro and attribute arguments).
    fn tokens(&mut self, mut cursor: Cursor<'_>) {
        // The previous two tokens were `$` (for `$crate`) or `::` (a path's inner segment).
        let mut after_dollar = false;
        let mut after_colons = false;
        let mut after_colon = false;
        while !cursor.eof() {
            if let Some((inside, _, _, next)) = cursor.any_group() {
                self.tokens(inside);
                (after_dollar, after_colons, after_colon) = (false, false, false);
                cursor = next;
            } else if let Some((punct, next)) = cursor.punct() {
                let colon = punct.as_char() == ':';
                after_colons = colon && after_colon;
                after_colon = colon;
                after_dollar = punct.as_char() == '$';
                cursor = next;
            } else if let Some((ident, next)) = cursor.ident() {
                let root = ident == "crate" || ident == "super" || ident == "self";
                if root && !after_dollar && !after_colons {
                    let path = path_in_tokens(cursor);
                    if path.len() > 1 {
                        self.push(path);
                    }
                }
                (after_dollar, after_colons, after_colon) = (false, false, false);
                cursor = next;
            } else if let Some((_, next)) = cursor.token_tree() {
                (after_dollar, after_colons, after_colon) = (false, false, false);
                cursor = next;
            } else {
                break;
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_use(&mut self, item: &'ast ItemUse) {
        self.use_tree(&item.tree, &mut Vec::new());
    }

    fn visit_item_mod(&mut self, item: &'ast ItemMod) {
        if item.content.is_none() {
            visit::visit_item_mod(self, item);
        } else if !is_cfg_test(&item.attrs) {
            self.within.push(name(&item.ident));
            visit::visit_item_mod(self, item);
            self.within.pop();
        }
    }

    /// A path in code: only those from `crate`, `super` or `self` name a module of this crate
    /// (`pub(super)` and `self.x` are one segment and name nothing).
    fn visit_path(&mut self, path: &'ast Path) {
        let first = path.segments.first().map(|s| &s.ident);
        let rooted = first.is_some_and(|i| i == "crate" || i == "super" || i == "self");
        if path.leading_colon.is_none() && rooted && path.segments.len() > 1 {
            // Up to the first generic arguments (`crate::a::B<T>::new` names `a::B`): what
            // follows is inside a type, not a module.
            let mut segments = Vec::new();
            for segment in &path.segments {
                segments.push(name(&segment.ident));
                if !matches!(segment.arguments, PathArguments::None) {
                    break;
                }
            }
            self.push(segments);
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        visit::visit_macro(self, mac);
        self.tokens(TokenBuffer::new2(mac.tokens.clone()).begin());
    }

    fn visit_meta_list(&mut self, list: &'ast MetaList) {
        visit::visit_meta_list(self, list);
        self.tokens(TokenBuffer::new2(list.tokens.clone()).begin());
    }
}

/// The path starting at `cursor`: its identifiers as long as `::` joins another.
fn path_in_tokens(mut cursor: Cursor<'_>) -> Vec<String> {
    let mut path = Vec::new();
    while let Some((ident, next)) = cursor.ident() {
        path.push(name(&ident));
        let joined = next
            .punct()
            .filter(|(p, _)| p.as_char() == ':')
            .and_then(|(_, next)| next.punct())
            .filter(|(p, _)| p.as_char() == ':');
        match joined {
            Some((_, next)) => cursor = next,
            None => break,
        }
    }
    path
}

/// `#[cfg(test)]` among `attrs`.
fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .meta
                .require_list()
                .is_ok_and(|list| list.tokens.to_string() == "test")
    })
}

/// An identifier as a module or file is named: `r#type` is `type`.
fn name(ident: &Ident) -> String {
    ident.unraw().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(text: &str) -> Vec<String> {
        imports(text)
            .expect("parses")
            .iter()
            .map(|import| [&import.within[..], &import.path[..]].concat().join("::"))
            .collect()
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

    #[test]
    fn reads_macro_arguments_types_and_visibility_but_not_strings() {
        let text = "pub(in crate::vis) fn f(x: crate::ty::T<crate::arg::A>) {\n\
            \x20   let s = \"crate::quoted::Q\";\n\
            \x20   format!(\"{}\", self::helper::h(x, s));\n\
            \x20   /* crate::block::Comment */\n\
            \x20   <crate::q::Q as crate::tr::Tr>::go();\n\
            }\n";
        assert_eq!(
            joined(text),
            [
                "crate::vis",
                "crate::ty::T",
                "crate::arg::A",
                "self::helper::h",
                "crate::q::Q",
                "crate::tr::Tr::go"
            ]
        );
    }

    #[test]
    fn paths_in_inline_modules_carry_the_module() {
        let text = "mod sealed {\n    impl Sealed for super::Single {}\n}\n\
            #[cfg(test)]\n#[allow(unused)]\nmod tests {\n    use super::*;\n}\n";
        let found = imports(text).expect("parses");
        assert_eq!(
            found,
            [Import {
                within: vec!["sealed".into()],
                path: vec!["super".into(), "Single".into()],
            }]
        );
    }
}
