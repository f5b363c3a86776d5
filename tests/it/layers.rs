//! The layering rule of docs/ARCHITECTURE.md, checked: every top-level module of the library
//! sits in one layer, and a module imports only from layers below its own (or from itself).
//! The binary's command tree (`src/cli`, `src/main.rs`) uses the library as `warden::` and
//! nothing in the library names it. A new top-level module fails here until it is placed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may import from any layer below its own; modules in one
/// layer do not import each other.
const LAYERS: &[(&str, &[&str])] = &[
    ("vocabulary", &["base"]),
    ("model", &["model"]),
    ("config", &["config"]),
    ("store", &["store"]),
    ("directory", &["directory"]),
    ("clients", &["outbound", "auth"]),
    ("decide", &["decide"]),
    ("metrics", &["metrics"]),
    ("events", &["events"]),
    ("runtime", &["runtime"]),
    ("sync", &["sync"]),
    ("operations", &["operations"]),
    ("services", &["services"]),
    ("front kit", &["front"]),
    ("gate", &["gate", "mysql"]),
    ("front ends", &["http"]),
    ("server", &["server"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/store/audit.rs` → `store`).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of a line, without its `//` comment (doc comments included).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Every top-level module a piece of code names as `crate::<module>`, also inside a
/// `use crate::{a, b}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            found.extend(group[..end].split(',').filter_map(|item| {
                let name = item.trim().split("::").next()?.trim();
                (!name.is_empty()).then(|| name.to_owned())
            }));
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
        rest = after;
    }
    found
}

#[test]
fn imports_only_point_down() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut violations = Vec::new();
    let mut unplaced = BTreeSet::new();
    for file in &files {
        let module = module_of(file);
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        if module == "cli" || module == "main" {
            for (n, line) in text.lines().enumerate() {
                if !crate_paths(code(line)).is_empty() {
                    violations.push(format!(
                        "{}:{}: the binary uses the library as `warden::`, not `crate::`",
                        file.display(),
                        n + 1
                    ));
                }
            }
            continue;
        }
        let Some(own) = layer_of(&module) else {
            unplaced.insert(module);
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            for target in crate_paths(code(line)) {
                if target == module {
                    continue;
                }
                match layer_of(&target) {
                    Some(l) if l < own => {}
                    Some(l) => violations.push(format!(
                        "{}:{}: {module} ({}) imports {target} ({}), which is not below it",
                        file.display(),
                        n + 1,
                        LAYERS[own].0,
                        LAYERS[l].0,
                    )),
                    None if target == "cli" => violations.push(format!(
                        "{}:{}: the library must not name the binary's cli",
                        file.display(),
                        n + 1
                    )),
                    None => {
                        unplaced.insert(target);
                    }
                }
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer (place them in LAYERS and docs/ARCHITECTURE.md): {unplaced:?}"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// lib.rs declares exactly the modules placed in layers, so the table cannot go stale.
#[test]
fn every_library_module_is_placed() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect();
    let placed: BTreeSet<String> = LAYERS
        .iter()
        .flat_map(|(_, ms)| ms.iter().map(|m| (*m).to_owned()))
        .collect();
    assert_eq!(declared, placed);
}

#[test]
fn the_checker_sees_groups_and_paths() {
    assert_eq!(
        crate_paths("use crate::{base::time::now, store::Store};"),
        ["base", "store"]
    );
    assert_eq!(
        crate_paths("let x = crate::decide::Engine::new(); crate::metrics::x()"),
        ["decide", "metrics"]
    );
    assert!(crate_paths(code("    // crate::runtime is mentioned in a comment")).is_empty());
}
