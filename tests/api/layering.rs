//! The layers `docs/ARCHITECTURE.md` draws, kept: read from the doc's "Layers" list, checked against every
//! `crate::` path in `src/` (comments and `#[cfg(test)] mod tests` left out). A module imports only its own
//! layer or those below, and no two modules import each other (neither top-level modules nor the files of
//! one module).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The doc's layers, bottom first: each line of the list after "## Layers" names its modules in backticks.
fn layers() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let section = doc
        .split("\n## Layers")
        .nth(1)
        .expect("docs/ARCHITECTURE.md has a \"## Layers\" section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            let names = l.split(':').next().unwrap();
            names
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// A file's module path under `src/` (`billing/run.rs` is `billing::run`, `billing/mod.rs` `billing`).
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(root().join("src")).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The source without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file names, as `crate::a::b` (`crate::{a, b::c}` groups too), to depth two; a
/// crate-root macro counts as the module that defines it.
fn imports(code: &str) -> BTreeSet<Vec<String>> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let path = |s: &str| -> Vec<String> {
        let first = ident(s);
        let rest = &s[first.len()..];
        let mut p = vec![match first.as_str() {
            "begin_write" | "with_pool" => "db".to_owned(),
            _ => first,
        }];
        if let Some(second) = rest.strip_prefix("::") {
            let second = ident(second);
            if !second.is_empty() && second.starts_with(|c: char| c.is_ascii_lowercase()) {
                p.push(second);
            }
        }
        p
    };
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let after = &code[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.insert(path(group[start..j].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(path(group[start..j].trim()));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(path(after));
        }
    }
    found.retain(|p| !p[0].is_empty());
    found
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The siblings a file of a top-level module names as `super::x`.
fn sibling_imports(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    if module.len() != 2 {
        return BTreeSet::new();
    }
    code.match_indices("super::")
        .filter(|(i, _)| !code[..*i].ends_with("::"))
        .map(|(i, _)| {
            let name: String = code[i + "super::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            vec![module[0].clone(), name]
        })
        .filter(|p| p[1].starts_with(|c: char| c.is_ascii_lowercase()))
        .collect()
}

/// Each file's module and what it imports, crate roots left out.
fn graph() -> Vec<(Vec<String>, BTreeSet<Vec<String>>)> {
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    files.sort();
    files
        .iter()
        .map(|f| (module_of(f), f))
        .filter(|(m, _)| !matches!(m[0].as_str(), "lib" | "main"))
        .map(|(m, f)| {
            let code = code(&std::fs::read_to_string(f).unwrap());
            let mut found = imports(&code);
            found.extend(sibling_imports(&m, &code));
            (m, found)
        })
        .collect()
}

#[test]
fn every_module_has_a_layer_and_imports_none_above_it() {
    let layers = layers();
    assert!(layers.len() > 3, "the layers read from the doc: {layers:?}");
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, names)| names.iter().map(move |n| (n.as_str(), i)))
        .collect();
    let mut wrong = Vec::new();
    for (module, imported) in graph() {
        let Some(&mine) = layer_of.get(module[0].as_str()) else {
            wrong.push(format!(
                "`{}` has no layer in docs/ARCHITECTURE.md",
                module[0]
            ));
            continue;
        };
        for target in imported {
            match layer_of.get(target[0].as_str()) {
                Some(&theirs) if theirs <= mine => {}
                Some(_) => wrong.push(format!(
                    "{} imports {} from a layer above it",
                    module.join("::"),
                    target.join("::")
                )),
                None => wrong.push(format!(
                    "{} imports `{}`, which has no layer",
                    module.join("::"),
                    target[0]
                )),
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_two_modules_import_each_other() {
    let graph = graph();
    let files: BTreeSet<Vec<String>> = graph
        .iter()
        .map(|(m, _)| m[..m.len().min(2)].to_vec())
        .collect();
    let mut edges: BTreeSet<(Vec<String>, Vec<String>)> = BTreeSet::new();
    for (module, imported) in graph {
        for target in imported {
            // Between top-level modules; and between the files of one module (`billing::run` and
            // `billing::ledger`), which name each other by `crate::billing::…`.
            if target[0] != module[0] {
                edges.insert((vec![module[0].clone()], vec![target[0].clone()]));
            } else if module.len() > 1
                && target.len() > 1
                && module[1] != target[1]
                && files.contains(&target)
            {
                edges.insert((module[..2].to_vec(), target.clone()));
            }
        }
    }
    let mutual: Vec<String> = edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .map(|(a, b)| format!("{} <-> {}", a.join("::"), b.join("::")))
        .collect();
    assert!(mutual.is_empty(), "{}", mutual.join("\n"));
}

#[test]
fn imports_are_read_from_use_lines_and_paths() {
    let found = imports(&code(
        "use crate::{db::Db, stripe};\n// crate::http::web is a comment\nlet x = crate::usage::fold::run();\ncrate::with_pool!(p);\n#[cfg(test)]\nmod tests { use crate::cli; }",
    ));
    let names: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(names, ["db", "stripe", "usage::fold"]);
}
