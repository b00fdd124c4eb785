//! `.env` files: read them as the loader does (`skm_runtime::dotenv`), back them up, and rewrite them without some
//! entries, keeping every other line as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use skm_runtime::dotenv::DotenvFile;

use crate::cmd::util::write_atomic;
use crate::Fail;

/// A parsed `.env` file.
pub(crate) struct EnvFile {
    pub path: PathBuf,
    text: String,
    /// Name → value, later definitions winning, as the loader reads them.
    values: BTreeMap<String, String>,
}

impl EnvFile {
    /// Reads `path`; `Ok(None)` if it does not exist.
    pub fn read(path: &Path) -> Result<Option<EnvFile>, Fail> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Fail::Usage(format!("cannot read {}: {e}", path.display()))),
        };
        let values = parse(path, &text).map_err(Fail::Usage)?;
        Ok(Some(EnvFile {
            path: path.to_path_buf(),
            text,
            values,
        }))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every defined name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The file's text with each definition of `remove` replaced by the comment `note(name)`.
    ///
    /// The result is parsed again and must define exactly the other variables with the same values;
    /// otherwise (a multi-line value this rewrite misread, a `${VAR}` that referred to a removed entry)
    /// it is refused, so that the file is never damaged.
    pub fn without(&self, remove: &BTreeSet<String>, note: &dyn Fn(&str) -> String) -> Result<String, Fail> {
        let lines: Vec<&str> = self.text.split_inclusive('\n').collect();
        let mut out = String::with_capacity(self.text.len());
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            match definition(line).filter(|(name, _)| remove.contains(*name)) {
                None => {
                    out.push_str(line);
                    i += 1;
                }
                Some((name, value_start)) => {
                    let end = span_end(&lines, i, value_start);
                    out.push_str(&note(name));
                    out.push('\n');
                    i = end + 1;
                }
            }
        }
        let expected: BTreeMap<String, String> = self
            .values
            .iter()
            .filter(|(k, _)| !remove.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match parse(&self.path, &out) {
            Ok(values) if values == expected => Ok(out),
            _ => Err(Fail::Failed(format!(
                "cannot rewrite {} safely (a multi-line or interpolated value?): it was left unchanged; remove \
                 the migrated entries by hand",
                self.path.display()
            ))),
        }
    }
}

/// Parses `.env` text with the loader's own reader ([`skm_runtime::dotenv`]), so that the tool sees exactly
/// what a load sees. Errors give the position only: a line may hold a secret.
fn parse(path: &Path, text: &str) -> Result<BTreeMap<String, String>, String> {
    let file = DotenvFile::parse(path, text).map_err(|e| e.to_string())?;
    Ok(file
        .entries()
        .map(|e| (e.name().to_string(), e.value().expose_secret().to_string()))
        .collect())
}

/// If `line` defines a variable, its name and the byte offset where the value starts.
fn definition(line: &str) -> Option<(&str, usize)> {
    let indent = line.len() - line.trim_start().len();
    let mut rest = &line[indent..];
    let mut offset = indent;
    if let Some(r) = rest.strip_prefix("export ") {
        let trimmed = r.trim_start();
        offset += rest.len() - trimmed.len();
        rest = trimmed;
    }
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(rest.len());
    if name_len == 0 {
        return None;
    }
    let name = &rest[..name_len];
    let after = &rest[name_len..];
    let eq = after.len() - after.trim_start().len();
    if !after[eq..].starts_with('=') {
        return None;
    }
    Some((name, offset + name_len + eq + 1))
}

/// The index of the last line of the definition starting on `lines[start]`: a quoted value may span lines.
fn span_end(lines: &[&str], start: usize, value_start: usize) -> usize {
    let first = &lines[start][value_start..];
    let value = first.trim_start();
    let quote = match value.chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return start,
    };
    let mut escaped = false;
    let mut skip_open = true;
    for (i, line) in lines.iter().enumerate().skip(start) {
        let text = if i == start { value } else { line };
        for c in text.chars() {
            if skip_open {
                skip_open = false;
                continue;
            }
            if escaped {
                escaped = false;
            } else if c == '\\' && quote == '"' {
                escaped = true;
            } else if c == quote {
                return i;
            }
        }
    }
    // Unterminated: dotenvy would have rejected the file, so this is not reached in practice.
    start
}

/// Copies `path` to `<path>.skm-backup-<unix seconds>` (mode 0600); returns the backup's path.
pub(crate) fn backup(path: &Path) -> Result<PathBuf, Fail> {
    let contents =
        std::fs::read(path).map_err(|e| Fail::Failed(format!("cannot read {} to back it up: {e}", path.display())))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".env".into());
    for n in 0..100 {
        let suffix = if n == 0 { String::new() } else { format!("-{n}") };
        let target = path.with_file_name(format!("{name}.skm-backup-{stamp}{suffix}"));
        if target.exists() {
            continue;
        }
        write_atomic(&target, &contents, Some(0o600))
            .map_err(|e| Fail::Failed(format!("cannot write the backup {}: {e}", target.display())))?;
        return Ok(target);
    }
    Err(Fail::Failed(format!(
        "cannot find a free backup name next to {}",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> EnvFile {
        EnvFile {
            path: PathBuf::from(".env"),
            text: text.to_string(),
            values: parse(Path::new(".env"), text).unwrap(),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn removes_definitions_and_keeps_everything_else() {
        let env = file("# app\nA=1\nexport B = \"two\"\n\nC='x y' # note\nA=again\nD=4\n");
        let out = env.without(&set(&["A", "C"]), &|n| format!("# {n}: migrated")).unwrap();
        assert_eq!(
            out,
            "# app\n# A: migrated\nexport B = \"two\"\n\n# C: migrated\n# A: migrated\nD=4\n"
        );
    }

    #[test]
    fn removes_multi_line_values_whole() {
        let env = file("KEY=\"-----BEGIN-----\nabc\\\"def\n-----END-----\"\nNEXT=1\n");
        assert_eq!(env.get("KEY").map(|v| v.lines().count()), Some(3));
        let out = env.without(&set(&["KEY"]), &|n| format!("# {n}")).unwrap();
        assert_eq!(out, "# KEY\nNEXT=1\n");
    }

    #[test]
    fn refuses_a_rewrite_that_changes_other_values() {
        // B refers to A: removing A would change B, so the rewrite is refused.
        let env = file("A=1\nB=${A}-x\n");
        assert!(env.without(&set(&["A"]), &|n| format!("# {n}")).is_err());
    }

    #[test]
    fn parse_errors_never_quote_the_line() {
        let err = parse(Path::new(".env"), "GOOD=1\nthis line is SENTINEL-VALUE bad\n").unwrap_err();
        assert!(!err.contains("SENTINEL"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }
}
