//! The import graph of `src/` points one way (docs/architecture.md): every `crate::x` path in a
//! module names a module of a lower layer, so there is no circle and no upward arrow; clap
//! stays in `cli` and `commands`; only `env` reads the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layers from the bottom up; a module may only use modules of lower layers.
const LAYERS: &[&[&str]] = &[
    &["env", "error", "http", "report", "table"],
    &["store"],
    // Label-quality metrics and the learned `local` model: pure computation.
    &["quality"],
    &["learn"],
    &["ai"],
    &["processors"],
    &["db"],
    &["ingest", "result_files"],
    &["github"],
    &["import_files"],
    // Review and update-labels: GitHub writes, issue files and DuckDB.
    &["recommendations"],
    &["plan"],
    &["realtime"],
    &["batch"],
    &["pipeline"],
    &["printer"],
    // The clap types; `lib` parses them and `commands` reads them.
    &["cli"],
    &["commands"],
    &["lib", "main"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/batch/status.rs` → `batch`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// The file without its `#[cfg(test)]` module (tests may reach anywhere) and without comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::name` in the code.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
        rest = after;
    }
    out
}

fn sources() -> (PathBuf, BTreeMap<PathBuf, String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let texts = files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("readable source");
            (f, text)
        })
        .collect();
    (src, texts)
}

/// `(file, module, used module)` of every import that does not point to a lower layer.
fn violations(src: &Path, texts: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let mut bad = Vec::new();
    for (file, text) in texts {
        let module = module_of(src, file);
        let Some(own) = layer_of(&module) else {
            bad.push(format!(
                "{}: module `{module}` has no layer in tests/it/layers.rs",
                file.display()
            ));
            continue;
        };
        for used in crate_paths(&code_of(text)) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                Some(_) => bad.push(format!(
                    "{}: `{module}` uses `crate::{used}`, which is not below it",
                    file.display()
                )),
                None => bad.push(format!(
                    "{}: `crate::{used}` is not a known module",
                    file.display()
                )),
            }
        }
    }
    bad
}

#[test]
fn every_import_points_to_a_lower_layer() {
    let (src, texts) = sources();
    let bad = violations(&src, &texts);
    assert!(
        bad.is_empty(),
        "upward or circular imports:\n{}",
        bad.join("\n")
    );
}

#[test]
fn an_upward_import_is_caught() {
    // The check itself can fail: a lower module that reaches for the command layer is reported.
    let (src, mut texts) = sources();
    let db = src.join("db/mod.rs");
    let text = texts.get_mut(&db).expect("src/db/mod.rs");
    // At the top: code after a file's `#[cfg(test)]` module is not looked at.
    text.insert_str(0, "use crate::commands::Ctx;\n");
    let bad = violations(&src, &texts);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("`db` uses `crate::commands`"), "{bad:?}");
}

#[test]
fn clap_stays_in_the_command_layer_and_env_is_read_in_one_place() {
    let (src, texts) = sources();
    let mut bad = Vec::new();
    for (file, text) in &texts {
        let module = module_of(&src, file);
        let code = code_of(text);
        if code.contains("clap::") && !matches!(module.as_str(), "cli" | "commands" | "lib") {
            bad.push(format!("{}: clap outside cli/commands", file.display()));
        }
        if code.contains("std::env::var") && module != "env" {
            bad.push(format!(
                "{}: reads the environment outside env.rs",
                file.display()
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
