//! The `.env` reader the loader and the `skm` tool share: entries with their line numbers, parse errors
//! that name a position and never a line's content.
//!
//! Parsing is dotenvy's (quotes, `export`, escapes, `${VAR}` substitution from earlier lines); the process
//! environment is never read or modified.
//!
//! # Example
//! ```
//! use skm_runtime::dotenv::DotenvFile;
//! use secrecy::ExposeSecret;
//! use std::path::Path;
//!
//! let file = DotenvFile::parse(Path::new(".env"), "# db\nexport PORT=5432\nPORT=6543\nTOKEN=\"t\"\n")?;
//! let port = file.get("PORT").unwrap();
//! assert_eq!((port.value().expose_secret(), port.line()), ("6543", 3)); // later definitions win
//! assert_eq!(file.entries().map(|e| e.name()).collect::<Vec<_>>(), ["PORT", "TOKEN"]);
//!
//! let bad = DotenvFile::parse(Path::new(".env"), "A=1\nhunter2 is not an assignment\n").unwrap_err();
//! assert_eq!(bad.line(), Some(2));
//! assert!(!bad.to_string().contains("hunter2"));
//! # Ok::<(), skm_runtime::dotenv::DotenvError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

/// A parsed `.env` file: each defined name with its value and the line of its (last) definition.
pub struct DotenvFile {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
}

/// One variable of a [`DotenvFile`]. `Debug` shows the name and line, never the value.
pub struct Entry {
    name: String,
    value: SecretString,
    line: usize,
}

impl Entry {
    /// The variable's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value, as dotenvy reads it (quotes removed, escapes and `${VAR}` applied).
    pub fn value(&self) -> &SecretString {
        &self.value
    }

    /// The 1-based line of the definition that wins (the last one); `0` if it cannot be located.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DotenvFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DotenvFile")
            .field("path", &self.path)
            .field("entries", &self.entries.values().collect::<Vec<_>>())
            .finish()
    }
}

impl DotenvFile {
    /// Reads and parses `path`; `Ok(None)` when it does not exist (a missing `.env` is normal in production).
    ///
    /// # Errors
    /// The file cannot be read ([`DotenvErrorKind::Read`], with the I/O error as its source) or is malformed.
    pub fn read(path: &Path) -> Result<Option<DotenvFile>, DotenvError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(DotenvError {
                    path: path.to_path_buf(),
                    kind: DotenvErrorKind::Read(e),
                })
            }
        };
        let text = zeroize::Zeroizing::new(text);
        Self::parse(path, &text).map(Some)
    }

    /// Parses the text of the `.env` file at `path` (`path` is only named in errors).
    ///
    /// # Errors
    /// The text is malformed: the error gives the line and column, never the line's content.
    pub fn parse(path: &Path, text: &str) -> Result<DotenvFile, DotenvError> {
        let mut entries = BTreeMap::new();
        let fail = |kind| DotenvError {
            path: path.to_path_buf(),
            kind,
        };
        for item in dotenvy::from_read_iter(text.as_bytes()) {
            match item {
                Ok((name, value)) => {
                    let line = line_of(text, &name);
                    entries.insert(
                        name.clone(),
                        Entry {
                            name,
                            value: SecretString::from(value),
                            line,
                        },
                    );
                }
                Err(dotenvy::Error::LineParse(mut bad, index)) => {
                    // dotenvy's error holds the whole line, which may be a secret: keep the position only.
                    let line = text
                        .lines()
                        .position(|l| l == bad || l.trim() == bad.trim())
                        .map(|n| n + 1);
                    zeroize::Zeroize::zeroize(&mut bad);
                    return Err(fail(DotenvErrorKind::Parse {
                        line,
                        column: index + 1,
                    }));
                }
                Err(_) => return Err(fail(DotenvErrorKind::Malformed)),
            }
        }
        Ok(DotenvFile {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry of `name`, if the file defines it.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Every entry, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}

/// The 1-based line of the last definition of `name` in a `.env` text (later definitions win).
fn line_of(text: &str, name: &str) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            let l = l.strip_prefix("export ").map_or(l, str::trim_start);
            l.strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
        .last()
        .unwrap_or(0)
}

/// A `.env` file that cannot be read or parsed. Names the file and a position, never its content.
#[derive(Debug)]
pub struct DotenvError {
    path: PathBuf,
    kind: DotenvErrorKind,
}

/// What went wrong with a `.env` file.
#[derive(Debug)]
#[non_exhaustive]
pub enum DotenvErrorKind {
    /// The file exists but cannot be read.
    Read(std::io::Error),
    /// A line is not `NAME=value`.
    Parse {
        /// The 1-based line, when it can be located.
        line: Option<usize>,
        /// The 1-based column where parsing stopped.
        column: usize,
    },
    /// Another parse failure (e.g. an invalid substitution); dotenvy gives no position.
    Malformed,
}

impl DotenvError {
    /// The file concerned.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong.
    pub fn kind(&self) -> &DotenvErrorKind {
        &self.kind
    }

    /// The 1-based line of a parse error.
    pub fn line(&self) -> Option<usize> {
        match self.kind {
            DotenvErrorKind::Parse { line, .. } => line,
            _ => None,
        }
    }
}

impl fmt::Display for DotenvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            DotenvErrorKind::Read(_) => write!(f, "cannot read the .env file {path}"),
            DotenvErrorKind::Parse { line, column } => {
                let line = line.map_or_else(|| "?".to_string(), |l| l.to_string());
                write!(
                    f,
                    "malformed .env file {path}: cannot parse line {line} at column {column}; expected `NAME=value`"
                )
            }
            DotenvErrorKind::Malformed => write!(f, "malformed .env file {path}: parse error"),
        }
    }
}

impl std::error::Error for DotenvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            DotenvErrorKind::Read(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn lines_and_errors_are_value_free() {
        let f = DotenvFile::parse(Path::new("good.env"), "# comment\nA=1\n\nexport B=\"two\"\nA=3\n").unwrap();
        let a = f.get("A").unwrap();
        assert_eq!((a.value().expose_secret(), a.line()), ("3", 5));
        assert_eq!(f.get("B").unwrap().line(), 4);
        let dir = std::env::temp_dir().join(format!("skm-dotenv-{}", std::process::id()));
        assert!(DotenvFile::read(&dir.join("missing.env")).unwrap().is_none());

        let e = DotenvFile::parse(Path::new("bad.env"), "A=1\nSENTINEL-abc123 oops\n").unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("line 2"), "{shown}");
        assert!(!shown.contains("SENTINEL-abc123"), "{shown}");
        assert!(!format!("{f:?}").contains("two"));
    }
}
