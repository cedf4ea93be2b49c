//! The module map in `host/src/lib.rs` is the layering: each module uses
//! only modules listed above it (`daemon` and `cli`, which assemble the
//! rest, excepted), so there are no import cycles between modules. Read
//! from the sources: `crate::<module>` paths in a module's file and folder,
//! unit tests left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ASSEMBLERS: [&str; 2] = ["daemon", "cli"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Modules in the order the map lists them (`//! - [`name`] — …`).
fn map_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! - [`"))
        .filter_map(|rest| rest.split_once("`]").map(|(name, _)| name.to_string()))
        .collect()
}

/// Declared modules (`pub mod name;`).
fn declared() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|l| l.trim_end_matches(';').to_string()).collect()
}

/// The module's source without unit tests: `NAME.rs` and everything under
/// `NAME/`, minus `tests.rs` files and inline `#[cfg(test)] mod tests`.
fn sources(module: &str) -> Vec<(PathBuf, String)> {
    let mut files = vec![src().join(format!("{module}.rs"))];
    let mut pending = vec![src().join(module)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().unwrap() != "tests.rs" {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            Some((path, code))
        })
        .collect()
}

/// `crate::name` references in `code`, with the line they are on.
fn uses<'a>(code: &'a str, modules: &'a [String]) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    code.lines().flat_map(move |line| {
        line.match_indices("crate::").filter_map(move |(at, _)| {
            let rest = &line[at + "crate::".len()..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            modules.iter().find(|m| **m == rest[..end]).map(|m| (m.as_str(), line.trim()))
        })
    })
}

#[test]
fn the_module_map_lists_every_module_once() {
    let mut listed = map_order();
    let mut declared = declared();
    listed.sort();
    declared.sort();
    assert_eq!(listed, declared, "lib.rs: the module map and the `pub mod` lines differ");
}

#[test]
fn each_module_uses_only_modules_listed_above_it() {
    let order = map_order();
    let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    let mut violations = Vec::new();
    for module in order.iter().filter(|m| !ASSEMBLERS.contains(&m.as_str())) {
        for (path, code) in sources(module) {
            if code.contains("crate::{") {
                violations.push(format!(
                    "src/{}: `use crate::{{…}}` is not read here; one `use crate::<module>` per module",
                    path.display()
                ));
            }
            for (used, line) in uses(&code, &order) {
                if used != module && rank[used] > rank[module.as_str()] {
                    let file = path.strip_prefix(src()).unwrap().display();
                    violations.push(format!("{module} uses {used} (listed below it), src/{file}: {line}"));
                }
            }
        }
    }
    assert!(violations.is_empty(), "reorder lib.rs's map or move the code:\n{}", violations.join("\n"));
}

#[test]
fn the_layering_check_sees_a_use() {
    let order: Vec<String> = ["clock", "decide"].map(String::from).to_vec();
    let found: Vec<_> = uses("use crate::decide::Decider;\nlet c = crate::clock::now();", &order).collect();
    assert_eq!(found.iter().map(|(m, _)| *m).collect::<Vec<_>>(), ["decide", "clock"]);
}
