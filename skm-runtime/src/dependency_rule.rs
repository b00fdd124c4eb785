//! The dependency rule, checked: the runtime's top-level modules form no import cycle, and each imports only
//! modules listed above it in [`LAYERS`] (the stage order spec → plan → fetch → resolve → report → values →
//! loader/watch, with the backends below the stages they serve and the shared leaves below everything).
//!
//! The edges are read from the sources under `src/`: every `crate::x` path in code (`use crate::x::..`,
//! `use crate::{x, y::z}`, `crate::x::f()`), every `super::` path that climbs out of its top-level module,
//! and `crate::Name` for a name `lib.rs` re-exports from module `x`. Comments, doc comments and string
//! literals are not code and are skipped. Test modules inside a file count: a test that needs a later stage
//! belongs to that later stage.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The top-level modules, lowest first: a module may import only modules listed above it.
const LAYERS: &[(&str, &str)] = &[
    // Shared leaves and utilities: no stage, no backend; dotenv and error import only entries above them.
    (
        "failure",
        "the one failure kind of backends and stages (FetchError, AdminError)",
    ),
    ("notice", "the warn-once helper every stage and backend may call"),
    ("gitcheck", "the git-ignore check the local store and the tool run"),
    ("rotating", "the Rotating<T> field type, data only"),
    ("de", "the deserializer of raw values, used by values and fuzzing"),
    (
        "validate",
        "the regex matcher behind Pattern::regex; a leaf so spec can point at it",
    ),
    (
        "lease",
        "dynamic-secret machinery (Leased, keeper); backends build on it, it imports no stage",
    ),
    (
        "capped",
        "the bounded, non-blocking read of a regular file (secret files and .env files)",
    ),
    (
        "dotenv",
        "the public .env reader the loader and the tool share; its error is one of Error's",
    ),
    (
        "error",
        "Error and its parts; names only the failure kind and the .env error",
    ),
    (
        "names",
        "the backend names and aliases: the registry's descriptors and the plan's routes read them",
    ),
    // The stages and the backends they call.
    ("spec", "stage 1: the declarations the derive emits"),
    ("plan", "stage 2: fields resolved, requests (FetchRequest) planned"),
    (
        "backend",
        "the Backend trait, the registry and every backend: serve fetch, read requests from plan",
    ),
    (
        "rotation",
        "rotating passwords in target systems; builds on the AWS backend",
    ),
    ("detect", "chooses a backend from the environment, through the registry"),
    ("fetch", "stage 3: one concurrent wave of backend calls; the lease step"),
    (
        "resolve",
        "stage 4: layers (resolve/layer.rs), files (resolve/files.rs) and the winner per field",
    ),
    ("report", "stage 5: provenance and check results of the resolved fields"),
    ("values", "stage 6: the Secrets trait and typed extraction"),
    ("loader", "the pipeline entry: builds, detects and runs every stage"),
    ("watch", "hot reload: runs the loader again"),
    // Harnesses on top: they may reach any module.
    ("fuzzing", "entry points for the fuzz targets"),
    ("conformance", "the backend conformance suite, run through the loader"),
];

/// This file: a test, not a module of the graph.
const SELF: &str = "dependency_rule";

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// One code edge between two top-level modules.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

/// `src` with comments and string and character literals replaced by spaces (newlines kept, so lines count).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        // Line comments, doc comments included.
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
            continue;
        }
        // Block comments, nested.
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            continue;
        }
        // Raw strings: r"..", r#".."#, br#".."#.
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        let raw_start = if c[i] == 'r' && !prev_ident {
            Some(i)
        } else if c[i] == 'b' && c.get(i + 1) == Some(&'r') && !prev_ident {
            Some(i + 1)
        } else {
            None
        };
        if let Some(r) = raw_start {
            let mut j = r + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            if c.get(j) == Some(&'"') {
                let hashes = j - r - 1;
                for &ch in &c[i..=j] {
                    blank(&mut out, ch);
                }
                i = j + 1;
                while i < c.len() {
                    if c[i] == '"' && c[i + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes {
                        for &ch in &c[i..=i + hashes] {
                            blank(&mut out, ch);
                        }
                        i += hashes + 1;
                        break;
                    }
                    blank(&mut out, c[i]);
                    i += 1;
                }
                continue;
            }
        }
        // Strings (and byte strings: their `b` is left as an identifier character, harmless).
        if c[i] == '"' {
            blank(&mut out, c[i]);
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            if i < c.len() {
                blank(&mut out, c[i]);
                i += 1;
            }
            continue;
        }
        // Character literals ('x', '\n', '\u{..}'); a lifetime ('a) is left alone.
        if c[i] == '\'' {
            let end = if c.get(i + 1) == Some(&'\\') {
                (i + 3..c.len()).find(|&j| c[j] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = end {
                for &ch in &c[i..=end] {
                    blank(&mut out, ch);
                }
                i = end + 1;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

/// The tokens of stripped code, each with its 1-based line.
fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

fn ident(t: Option<&(Tok, usize)>) -> Option<&str> {
    match t {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

fn is(t: Option<&(Tok, usize)>, want: &Tok) -> bool {
    t.is_some_and(|(t, _)| t == want)
}

/// The first segments of a path that starts at `toks[at]`, just after `crate::` (or after the `super::`s
/// that reach the crate root): one name, or each name at the top of a `{a, b::c}` group.
fn roots(toks: &[(Tok, usize)], at: usize) -> Vec<(String, usize)> {
    match toks.get(at) {
        Some((Tok::Ident(name), line)) => vec![(name.clone(), *line)],
        Some((Tok::Punct('{'), _)) => {
            let mut out = Vec::new();
            let mut depth = 0;
            let mut expect_name = true;
            for (tok, line) in &toks[at..] {
                match tok {
                    Tok::Punct('{') => {
                        depth += 1;
                        expect_name = depth == 1;
                    }
                    Tok::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Punct(',') if depth == 1 => expect_name = true,
                    Tok::Ident(name) if expect_name => {
                        out.push((name.clone(), *line));
                        expect_name = false;
                    }
                    _ => expect_name = false,
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The module path of a file under `src/`: `plan.rs` is `[plan]`, `resolve/mod.rs` is `[resolve]`,
/// `resolve/layer.rs` is `[resolve, layer]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let file = parts.pop().expect("a file name");
    let stem = file.strip_suffix(".rs").expect("a .rs file");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// Names `crate::` paths may start with: the top-level modules, and the names `lib.rs` re-exports, each
/// mapped to the module it comes from.
fn crate_names(lib: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let toks = tokens(&strip(lib));
    let mut modules = BTreeSet::new();
    let mut depth = 0;
    for (i, (tok, _)) in toks.iter().enumerate() {
        match tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth -= 1,
            Tok::Ident(kw) if kw == "mod" && depth == 0 => {
                if let (Some(name), true) = (ident(toks.get(i + 1)), is(toks.get(i + 2), &Tok::Punct(';'))) {
                    modules.insert(name.to_string());
                }
            }
            _ => {}
        }
    }
    let mut reexports = BTreeMap::new();
    for (i, (tok, _)) in toks.iter().enumerate() {
        if tok != &Tok::Ident("use".into()) {
            continue;
        }
        let Some(module) = ident(toks.get(i + 1)).filter(|m| modules.contains(*m)) else {
            continue;
        };
        let end = (i..toks.len())
            .find(|&j| is(toks.get(j), &Tok::Punct(';')))
            .unwrap_or(toks.len());
        for j in i + 2..end {
            let Some(name) = ident(toks.get(j)) else { continue };
            // The name a path ends in, or its `as` rename: what `crate::Name` reaches.
            let last = matches!(toks.get(j + 1).map(|t| &t.0), Some(Tok::Punct(',' | '}' | ';')));
            if last && name != "self" {
                reexports.insert(name.to_string(), module.to_string());
            }
        }
    }
    (modules, reexports)
}

/// Every code edge between top-level modules in the file `rel` (relative to `src/`).
fn edges_of(rel: &Path, src: &str, modules: &BTreeSet<String>, reexports: &BTreeMap<String, String>) -> Vec<Edge> {
    let file_path = module_path(rel);
    let from = file_path[0].clone();
    let toks = tokens(&strip(src));
    let mut out = Vec::new();
    let mut push = |name: &str, line: usize| {
        let to = if modules.contains(name) {
            name.to_string()
        } else if let Some(m) = reexports.get(name) {
            m.clone()
        } else {
            return; // An item of lib.rs itself (e.g. `SecretType`), or a macro's `$crate`.
        };
        if to != from {
            out.push(Edge {
                from: from.clone(),
                to,
                file: rel.to_path_buf(),
                line,
            });
        }
    };
    // Inline modules (`mod tests { .. }`) and the brace depth each opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    for i in 0..toks.len() {
        match &toks[i].0 {
            Tok::Punct('{') => {
                depth += 1;
                continue;
            }
            Tok::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                continue;
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(name), true) = (ident(toks.get(i + 1)), is(toks.get(i + 2), &Tok::Punct('{'))) {
                    inline.push((name.to_string(), depth));
                }
                continue;
            }
            _ => {}
        }
        let start_of_path = i == 0 || !matches!(toks[i - 1].0, Tok::PathSep | Tok::Punct('$'));
        if !start_of_path || !is(toks.get(i + 1), &Tok::PathSep) {
            continue;
        }
        match ident(toks.get(i)) {
            Some("crate") => {
                for (name, line) in roots(&toks, i + 2) {
                    push(&name, line);
                }
            }
            Some("super") => {
                let mut supers = 0;
                let mut j = i;
                while ident(toks.get(j)) == Some("super") && is(toks.get(j + 1), &Tok::PathSep) {
                    supers += 1;
                    j += 2;
                }
                let here = file_path.len() + inline.len();
                if supers == here {
                    for (name, line) in roots(&toks, j) {
                        push(&name, line);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code edges between the crate's top-level modules, and the modules `lib.rs` declares.
fn graph() -> (BTreeSet<String>, Vec<Edge>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let (modules, reexports) = crate_names(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).expect("under src/");
        if rel == Path::new("lib.rs") || module_path(rel)[0] == SELF {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        edges.extend(edges_of(rel, &text, &modules, &reexports));
    }
    (modules, edges)
}

/// The cycles among `edges` (one per strongly connected component of more than one module), each with
/// the edges that close it.
fn cycles(edges: &[Edge]) -> Vec<Vec<&Edge>> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        next.entry(&e.from).or_default().insert(&e.to);
    }
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(m) = stack.pop() {
            if m == to {
                return true;
            }
            if seen.insert(m) {
                stack.extend(next.get(m).into_iter().flatten());
            }
        }
        false
    };
    let mut components: Vec<BTreeSet<&str>> = Vec::new();
    for m in next.keys() {
        if components.iter().any(|c| c.contains(m)) {
            continue;
        }
        let component: BTreeSet<&str> = next
            .keys()
            .copied()
            .filter(|o| o == m || (reaches(m, o) && reaches(o, m)))
            .collect();
        if component.len() > 1 {
            components.push(component);
        }
    }
    components
        .into_iter()
        .map(|c| {
            edges
                .iter()
                .filter(|e| c.contains(e.from.as_str()) && c.contains(e.to.as_str()))
                .collect()
        })
        .collect()
}

fn describe(e: &Edge) -> String {
    format!("{} -> {} (src/{}:{})", e.from, e.to, e.file.display(), e.line)
}

#[test]
fn the_table_lists_every_module_once() {
    let (modules, _) = graph();
    let listed: BTreeSet<String> = LAYERS.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(listed.len(), LAYERS.len(), "a module is listed twice in LAYERS");
    let modules: BTreeSet<String> = modules.into_iter().filter(|m| m != SELF).collect();
    let unlisted: Vec<_> = modules.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&modules).collect();
    assert!(
        unlisted.is_empty() && stale.is_empty(),
        "LAYERS must list every top-level module of src/lib.rs: place {unlisted:?} in it, remove {stale:?}"
    );
}

#[test]
fn no_import_cycle() {
    let (_, edges) = graph();
    let found = cycles(&edges);
    let mut message = String::new();
    for cycle in &found {
        let mut names: Vec<&str> = cycle.iter().flat_map(|e| [e.from.as_str(), e.to.as_str()]).collect();
        names.sort_unstable();
        names.dedup();
        let _ = writeln!(message, "cycle among {}:", names.join(", "));
        for e in cycle {
            let _ = writeln!(message, "  {}", describe(e));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles between the runtime's modules:\n{message}"
    );
}

#[test]
fn no_edge_against_the_layer_order() {
    let (_, edges) = graph();
    let rank = |m: &str| LAYERS.iter().position(|(name, _)| *name == m);
    let against: Vec<String> = edges
        .iter()
        .filter(|e| match (rank(&e.from), rank(&e.to)) {
            (Some(from), Some(to)) => to >= from,
            _ => false, // An unlisted module: `the_table_lists_every_module_once` names it.
        })
        .map(|e| {
            let reason = |m: &str| rank(m).map_or("", |r| LAYERS[r].1);
            format!(
                "{}\n    {}: {}\n    {}: {}",
                describe(e),
                e.from,
                reason(&e.from),
                e.to,
                reason(&e.to)
            )
        })
        .collect();
    assert!(
        against.is_empty(),
        "imports of a module listed at or below the importer in LAYERS (src/dependency_rule.rs):\n{}",
        against.join("\n")
    );
}

#[test]
fn the_reader_sees_code_edges_only() {
    let modules: BTreeSet<String> = ["spec", "plan", "fetch", "resolve", "backend", "error"]
        .into_iter()
        .map(String::from)
        .collect();
    let reexports = BTreeMap::from([("Error".to_string(), "error".to_string())]);
    let src = r##"
//! See [`crate::fetch`] and crate::resolve.
/* crate::resolve */
use crate::{spec::{self, VersionPin}, backend::FetchRequest};
use crate::Error;
const S: &str = "crate::fetch";
const R: &str = r#"crate::fetch"#;
fn f<'a>(x: &'a str) -> char { let _ = crate::plan::route(x); let _ = '\''; 'c' }
mod tests {
    use super::*;
    use super::super::super::backend::X;
    /// crate::fetch
    fn g() { $crate::fetch::nothing(); }
}
"##;
    let edges = edges_of(Path::new("resolve/layer.rs"), src, &modules, &reexports);
    let seen: Vec<(&str, usize)> = edges.iter().map(|e| (e.to.as_str(), e.line)).collect();
    assert_eq!(
        seen,
        [("spec", 4), ("backend", 4), ("error", 5), ("plan", 8), ("backend", 11)],
        "{edges:#?}"
    );
}
