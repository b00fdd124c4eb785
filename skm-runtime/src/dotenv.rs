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
        let fail = |kind| DotenvError {
            path: path.to_path_buf(),
            kind,
        };
        let bytes = match crate::capped::read_capped(path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(crate::capped::FileError::Io(kind)) => return Err(fail(DotenvErrorKind::Read(kind.into()))),
            Err(e) => return Err(fail(DotenvErrorKind::Read(std::io::Error::other(e.to_string())))),
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(e) => {
                let (line, column) = position(&bytes[..e.valid_up_to()]);
                return Err(fail(DotenvErrorKind::Encoding { line, column }));
            }
        };
        Self::parse(path, text).map(Some)
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
                    // dotenvy's error holds the whole logical line, which may be a secret: keep the position only.
                    let (line, column) = locate(text, &bad, index);
                    zeroize::Zeroize::zeroize(&mut bad);
                    return Err(fail(DotenvErrorKind::Parse {
                        line: Some(line),
                        column,
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

/// The 1-based line and column of the character at `index` of the logical line `bad` that dotenvy could not
/// parse. dotenvy hands back the logical line (a quoted value may span several lines, and an unterminated
/// one runs to the end of the file), so the line is found where `bad` starts at a line start of `text`.
fn locate(text: &str, bad: &str, index: usize) -> (usize, usize) {
    let bad = bad.strip_suffix('\n').unwrap_or(bad);
    let bad = bad.strip_suffix('\r').unwrap_or(bad);
    let start = text
        .match_indices(bad)
        .map(|(at, _)| at)
        .find(|&at| at == 0 || text.as_bytes()[at - 1] == b'\n');
    let Some(start) = start else {
        // Not found as written (dotenvy changed it): the line count up to here is the best position left.
        return (text.lines().count().max(1), index + 1);
    };
    if index >= bad.len() && bad.contains('\n') {
        // An unterminated quote ran to the end of the file: point at the quote that opened it.
        let first = bad.lines().next().unwrap_or("");
        let quote = first.find(['"', '\'']).unwrap_or(0);
        return position(&text.as_bytes()[..start + quote]);
    }
    let end = (start + index).min(text.len());
    let end = (0..=end).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    position(&text.as_bytes()[..end])
}

/// The 1-based line and column just after `before` (the bytes that precede a position).
fn position(before: &[u8]) -> (usize, usize) {
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
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
    /// The file is not UTF-8 text; the position is that of the first invalid byte.
    Encoding {
        /// The 1-based line.
        line: usize,
        /// The 1-based column (in characters).
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
            DotenvErrorKind::Encoding { line, .. } => Some(line),
            _ => None,
        }
    }

    /// The read of `path` did not finish within the load's deadline.
    pub(crate) fn timed_out(path: &Path, deadline: std::time::Duration) -> Self {
        DotenvError {
            path: path.to_path_buf(),
            kind: DotenvErrorKind::Read(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the read did not finish within the load deadline of {deadline:?}"),
            )),
        }
    }
}

impl fmt::Display for DotenvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            DotenvErrorKind::Read(e) => write!(f, "cannot read the .env file {path}: {e}"),
            DotenvErrorKind::Parse { line, column } => {
                let line = line.map_or_else(|| "?".to_string(), |l| l.to_string());
                write!(
                    f,
                    "malformed .env file {path}: cannot parse line {line} at column {column}; expected `NAME=value` \
                     (quote a value that has spaces or `#`: NAME=\"...\")"
                )
            }
            DotenvErrorKind::Encoding { line, column } => write!(
                f,
                "malformed .env file {path}: line {line} column {column} is not UTF-8 text"
            ),
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

    #[test]
    fn every_parse_error_has_a_line_and_column() {
        // An unterminated quote runs to the end of the file: dotenvy's "line" is then several lines long.
        for (text, line) in [
            ("A=1\nB=\"SENTINEL-open\nC=2\n", 2),
            ("A=1\n\nSENTINEL-bare word\n", 3),
            ("A=\"multi\nline\"\nB=1\nSENTINEL x y\n", 4),
            ("X=1\n  AX=1\nAX\n", 3),
        ] {
            let e = DotenvFile::parse(Path::new("bad.env"), text).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert_eq!(e.line(), Some(line), "{text:?}: {shown}");
            assert!(!shown.contains("line ?"), "{shown}");
            assert!(!shown.contains("SENTINEL"), "{shown}");
        }
        assert_eq!(position(b"ab\ncd"), (2, 3));
    }

    #[test]
    fn a_fifo_or_directory_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let e = DotenvFile::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        #[cfg(unix)]
        {
            let fifo = dir.path().join(".env");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
            assert!(made.success());
            let e = DotenvFile::read(&fifo).unwrap_err().to_string();
            assert!(e.contains("FIFO"), "{e}");
        }
    }
}
