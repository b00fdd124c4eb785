//! The documentation cannot drift from the code:
//!
//! - every `SKM_` environment variable the sources read is a row of the README's table of environment
//!   variables, and every `SKM_` row of that table is read somewhere (issue 23);
//! - the feature tables of the rustdoc front page (`src/lib.rs`) and of the README list exactly the features
//!   of the root `Cargo.toml`, with the right defaults (issue 24).
//!
//! That every Rust block of the README and CONTRIBUTING.md compiles is `cargo test --doc`'s job: `src/lib.rs`
//! includes both files as the docs of hidden items. This file checks that none of those blocks is silently
//! skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The repository's root (this crate is `skm-tests/`).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("skm-tests lives inside the repository")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The names `SKM_[A-Z0-9_]+` in `text`, wherever they stand (string literals, `concat!` pieces, format
/// strings, `env = "..."` of clap, messages): a name the code spells anywhere is a name users can meet.
/// Trailing underscores are dropped (a prefix such as `SKM_VAULT_` is not a variable).
fn skm_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("SKM_") {
        let start = i + at;
        // Part of a longer identifier (`MY_SKM_X`): not ours.
        let glued = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + 4;
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        let name = text[start..end].trim_end_matches('_');
        if !glued && name.len() > 4 {
            names.insert(name.to_string());
        }
        i = end;
    }
    names
}

/// `SKM_` names in the library's and the tools' sources, with a file that spells each.
fn names_in_sources() -> BTreeMap<String, PathBuf> {
    let mut files = Vec::new();
    for dir in ["src", "skm-runtime/src", "skm-cli/src", "skm-derive/src"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "the source walk found only {files:?}");
    let mut names = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for name in skm_names(&text) {
            names
                .entry(name)
                .or_insert_with(|| file.strip_prefix(root()).unwrap().to_path_buf());
        }
    }
    names
}

/// The text of the README section whose heading is `heading` (up to the next heading of the same level).
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let level = heading.split(' ').next().unwrap();
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no `{heading}` section"));
    let body = &doc[start + heading.len() + 2..];
    let end = body.find(&format!("\n{level} ")).unwrap_or(body.len());
    &body[..end]
}

/// The first cells of the table rows of `text` (header and separator rows excluded).
fn first_cells(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .map(str::trim)
        .filter(|c| !c.starts_with("---") && !c.is_empty())
        .skip(1) // the header
        .collect()
}

const ENV_HEADING: &str = "## Environment variables";

#[test]
fn the_readme_documents_every_skm_variable_the_code_reads() {
    let code = names_in_sources();
    for expected in [
        "SKM_DEADLINE",
        "SKM_ALLOW_FALLBACK",
        "SKM_AWS_ALLOW_HTTP",
        "SKM_LOCAL_KEY_FILE",
        "SKM_BACKEND",
    ] {
        assert!(
            code.contains_key(expected),
            "the source walk missed {expected}: {code:?}"
        );
    }
    let readme = read("README.md");
    let table = section(&readme, ENV_HEADING);
    let mut rows: BTreeMap<String, usize> = BTreeMap::new();
    for cell in first_cells(table) {
        for name in skm_names(cell) {
            *rows.entry(name).or_default() += 1;
        }
    }
    let undocumented: Vec<String> = code
        .iter()
        .filter(|(name, _)| !rows.contains_key(*name))
        .map(|(name, file)| format!("{name} (read in {})", file.display()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "add a row to the README's `{ENV_HEADING}` table for each of: {undocumented:#?}"
    );
    let stale: Vec<&String> = rows.keys().filter(|name| !code.contains_key(*name)).collect();
    assert!(
        stale.is_empty(),
        "the README's `{ENV_HEADING}` table names variables no source reads: {stale:?}"
    );
    let repeated: Vec<&String> = rows.iter().filter(|(_, n)| **n > 1).map(|(name, _)| name).collect();
    assert!(
        repeated.is_empty(),
        "stated once: these have more than one row: {repeated:?}"
    );
}

#[test]
fn the_name_scanner_reads_names_as_the_code_spells_them() {
    let text =
        r#"var("SKM_DEADLINE"); format!("{var}_FILE"); concat!("SKM_VAULT_", "X"); "set SKM_STRICT=1"; MY_SKM_NO"#;
    let names: Vec<String> = skm_names(text).into_iter().collect();
    assert_eq!(names, ["SKM_DEADLINE", "SKM_STRICT", "SKM_VAULT"]);
}

/// `name = [...]` lines of the root Cargo.toml's `[features]` table.
fn cargo_features() -> BTreeMap<String, String> {
    let manifest = read("Cargo.toml");
    let table = manifest
        .split("\n[features]\n")
        .nth(1)
        .expect("the root Cargo.toml has a [features] table");
    let table = &table[..table.find("\n[").unwrap_or(table.len())];
    table
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// The rows of a features table: each feature (the first cell, in backticks) and its `default` cell.
fn feature_rows(table: &str) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(name) = cells
            .get(1)
            .and_then(|c| c.strip_prefix('`'))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        let default = cells.get(2).copied().unwrap_or_default().to_string();
        assert!(
            rows.insert(name.to_string(), default).is_none(),
            "feature `{name}` has two rows"
        );
    }
    rows
}

fn check_feature_table(what: &str, table: &str) {
    let features = cargo_features();
    let defaults: BTreeSet<String> = features
        .get("default")
        .expect("a default feature set")
        .trim_matches(['[', ']'])
        .split(',')
        .map(|f| f.trim().trim_matches('"').to_string())
        .filter(|f| !f.is_empty())
        .collect();
    let expected: BTreeSet<&String> = features.keys().filter(|f| *f != "default").collect();
    let rows = feature_rows(table);
    let documented: BTreeSet<&String> = rows.keys().collect();
    assert_eq!(
        documented, expected,
        "{what}: the features table must list exactly Cargo.toml's features"
    );
    for (feature, default) in &rows {
        let says_default = default.eq_ignore_ascii_case("yes");
        assert_eq!(
            says_default,
            defaults.contains(feature),
            "{what}: feature `{feature}` is {}a default feature in Cargo.toml, the table says `{default}`",
            if defaults.contains(feature) { "" } else { "not " }
        );
    }
}

#[test]
fn the_rustdoc_front_page_lists_every_feature_of_cargo_toml() {
    let lib = read("src/lib.rs");
    let docs: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let start = docs
        .find("# Cargo features")
        .expect("src/lib.rs has a `# Cargo features` section");
    let rest = &docs[start + 1..];
    let table = &rest[..rest.find("\n# ").unwrap_or(rest.len())];
    check_feature_table("src/lib.rs", table);
}

#[test]
fn the_readme_lists_every_feature_of_cargo_toml() {
    let readme = read("README.md");
    check_feature_table("README.md", section(&readme, "## Cargo features"));
}
/// The fences of the Rust blocks in `doc`: ```rust, ```rust,no_run ... (a bare ``` is Rust to rustdoc too).
fn rust_fences(doc: &str) -> Vec<(usize, String)> {
    let mut fences = Vec::new();
    let mut open = false;
    for (n, line) in doc.lines().enumerate() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        if open {
            open = false;
            continue;
        }
        open = true;
        let info = info.trim();
        let rust = info.is_empty() || info.split(',').any(|a| a.trim() == "rust");
        let other_language = info.split(',').any(|a| {
            let a = a.trim();
            !a.is_empty()
                && a != "rust"
                && !matches!(a, "no_run" | "ignore" | "should_panic" | "compile_fail" | "edition2021")
                && !a.starts_with("edition")
        });
        if rust && !other_language {
            fences.push((n + 1, info.to_string()));
        }
    }
    assert!(!open, "an unclosed code block");
    fences
}

/// Every Rust block of the README and CONTRIBUTING.md runs as a doctest: `src/lib.rs` includes both, and a
/// block is `ignore`d only with its reason on the line above it.
#[test]
fn readme_and_contributing_rust_blocks_are_doctests() {
    let lib = read("src/lib.rs");
    for (file, item) in [
        ("README.md", "ReadmeDoctests"),
        ("CONTRIBUTING.md", "ContributingDoctests"),
    ] {
        assert!(
            lib.contains(&format!("#[doc = include_str!(\"../{file}\")]")) && lib.contains(item),
            "src/lib.rs must include {file} as the docs of the hidden item {item}"
        );
        let doc = read(file);
        let lines: Vec<&str> = doc.lines().collect();
        let fences = rust_fences(&doc);
        for (line, info) in &fences {
            if info.split(',').any(|a| a.trim() == "ignore") {
                let above = lines[..line - 1]
                    .iter()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .copied()
                    .unwrap_or("");
                assert!(
                    above.to_ascii_lowercase().contains("ignore"),
                    "{file}:{line}: an `ignore`d block needs its reason written just above it (a line saying why it is ignored)"
                );
            }
        }
        println!("{file}: {} Rust blocks", fences.len());
    }
}
