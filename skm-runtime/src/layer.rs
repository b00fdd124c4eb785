//! The sources below the backend (process env, `.env`, declared defaults) and the figment snapshot
//! providers that carry each found value with its provenance.
//!
//! Async backends fetch first; then every source becomes a synchronous figment [`Provider`] whose
//! [`Metadata`] names the source and, through its interpolater, the exact location of each value
//! (`env var JWT_SECRET_KEY`, `.env line 3`, `secret auth/jwt key secret`). Figment merges them in
//! precedence order and tells us, per field, which source won.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use crate::Error;

/// A layer in the precedence order of a [`Loader`](crate::Loader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The configured backend (AWS, Vault, the local store, memory...).
    Backend,
    /// The process environment (only the declared `env` names are read).
    Env,
    /// The `.env` file.
    Dotenv,
    /// The declared `default = "..."`.
    Default,
}

impl Layer {
    /// The default precedence, highest first: the backend is the source of truth, env and `.env` are fallbacks.
    pub const DEFAULT_ORDER: [Layer; 4] = [Layer::Backend, Layer::Env, Layer::Dotenv, Layer::Default];
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Backend => "backend",
            Layer::Env => "env",
            Layer::Dotenv => ".env",
            Layer::Default => "default",
        })
    }
}

/// Where environment variables come from.
#[derive(Clone, Default)]
pub(crate) enum EnvSource {
    /// The real process environment.
    #[default]
    Process,
    /// A fixed map (tests, or embedding applications that manage their own environment).
    Map(Arc<HashMap<String, String>>),
}

impl EnvSource {
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        match self {
            EnvSource::Process => std::env::var(name).ok(),
            EnvSource::Map(m) => m.get(name).cloned(),
        }
    }
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvSource::Process => f.write_str("Process"),
            // Only the names: the values may be secrets.
            EnvSource::Map(m) => f.debug_set().entries(m.keys()).finish(),
        }
    }
}

/// A parsed `.env` file: values and the line each was defined on.
pub(crate) struct DotenvFile {
    pub(crate) path: PathBuf,
    entries: HashMap<String, (String, usize)>,
}

impl DotenvFile {
    /// Reads `path` with dotenvy without touching the process environment.
    ///
    /// `Ok(None)` when the file does not exist: a missing `.env` is normal in production.
    pub(crate) fn read(path: &Path) -> Result<Option<DotenvFile>, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Dotenv(format!("cannot read {}: {e}", path.display()))),
        };
        Self::parse(path, &text).map(Some)
    }

    /// Parses the text of the `.env` file at `path` (named in errors only).
    pub(crate) fn parse(path: &Path, text: &str) -> Result<DotenvFile, Error> {
        let mut entries = HashMap::new();
        for item in dotenvy::from_read_iter(text.as_bytes()) {
            match item {
                Ok((k, v)) => {
                    let line = line_of(text, &k);
                    entries.insert(k, (v, line));
                }
                Err(dotenvy::Error::LineParse(bad, index)) => {
                    // dotenvy's message quotes the whole line, which may hold a secret: give the position only.
                    let line = text
                        .lines()
                        .position(|l| l == bad || l.trim() == bad.trim())
                        .map_or_else(|| "?".to_string(), |n| (n + 1).to_string());
                    return Err(Error::Dotenv(format!(
                        "malformed .env file {}: cannot parse line {line} at column {}; expected `NAME=value`",
                        path.display(),
                        index + 1
                    )));
                }
                Err(e) => {
                    let kind = match e {
                        dotenvy::Error::Io(_) => "read error",
                        dotenvy::Error::EnvVar(_) => "invalid variable",
                        _ => "parse error",
                    };
                    return Err(Error::Dotenv(format!("malformed .env file {}: {kind}", path.display())));
                }
            }
        }
        Ok(DotenvFile {
            path: path.to_path_buf(),
            entries,
        })
    }

    pub(crate) fn get(&self, name: &str) -> Option<(&str, usize)> {
        self.entries.get(name).map(|(v, l)| (v.as_str(), *l))
    }

    /// Every entry as `(name, value, line)`, sorted by name (for [`crate::fuzzing`]).
    pub(crate) fn entries_sorted(&self) -> Vec<(String, String, usize)> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|(k, (v, l))| (k.clone(), v.clone(), *l))
            .collect();
        out.sort();
        out
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

/// A found value: text or bytes.
pub(crate) enum Found {
    Text(String),
    Binary(Vec<u8>),
}

impl Found {
    /// Moves the value out, leaving an empty one of the same kind.
    pub(crate) fn take(&mut self) -> Found {
        match self {
            Found::Text(s) => Found::Text(std::mem::take(s)),
            Found::Binary(b) => Found::Binary(std::mem::take(b)),
        }
    }
}

impl Drop for Found {
    // Intermediate copies of a value are wiped, not just freed.
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match self {
            Found::Text(s) => s.zeroize(),
            Found::Binary(b) => b.zeroize(),
        }
    }
}

/// One source's values for one load, as a figment provider.
///
/// Keys are field ids (`db.url` nests as `db` → `url`); the interpolater turns a key path into the exact
/// location (`JWT_SECRET_KEY`, `line 3`, `auth/jwt#secret`) so that provenance needs no side table.
pub(crate) struct Snapshot {
    name: String,
    source: Option<figment::Source>,
    data: Dict,
    locations: Arc<HashMap<String, String>>,
}

impl Snapshot {
    pub(crate) fn new(name: impl Into<String>, source: Option<figment::Source>) -> Self {
        Snapshot {
            name: name.into(),
            source,
            data: Dict::new(),
            locations: Arc::default(),
        }
    }

    pub(crate) fn insert(&mut self, field_id: &str, value: Found, location: String) {
        let mut value = value;
        let value = match &mut value {
            Found::Text(s) => Value::from(std::mem::take(s)),
            Found::Binary(b) => Value::from(std::mem::take(b)),
        };
        insert_path(&mut self.data, field_id, value);
        Arc::get_mut(&mut self.locations)
            .expect("locations are shared only after the snapshot is built")
            .insert(field_id.to_string(), location);
    }
}

fn insert_path(dict: &mut Dict, dotted: &str, value: Value) {
    match dotted.split_once('.') {
        None => {
            dict.insert(dotted.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = dict.entry(head.to_string()).or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

impl Provider for Snapshot {
    fn metadata(&self) -> Metadata {
        let locations = self.locations.clone();
        let md = Metadata::named(self.name.clone()).interpolater(move |_: &Profile, keys: &[&str]| {
            locations
                .get(&keys.join("."))
                .cloned()
                .unwrap_or_else(|| keys.join("."))
        });
        match &self.source {
            Some(s) => md.source(s.clone()),
            None => md,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines_and_errors_are_value_free() {
        let dir = std::env::temp_dir().join(format!("skm-layer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.env");
        std::fs::write(&good, "# comment\nA=1\n\nexport B=\"two\"\nA=3\n").unwrap();
        let f = DotenvFile::read(&good).unwrap().unwrap();
        assert_eq!(f.get("A"), Some(("3", 5)));
        assert_eq!(f.get("B"), Some(("two", 4)));
        assert!(DotenvFile::read(&dir.join("missing.env")).unwrap().is_none());

        let bad = dir.join("bad.env");
        std::fs::write(&bad, "A=1\nSENTINEL-abc123 oops\n").unwrap();
        let e = DotenvFile::read(&bad).err().unwrap().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("SENTINEL-abc123"), "{e}");
    }
}
