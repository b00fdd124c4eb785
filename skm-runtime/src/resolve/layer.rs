//! The layers of a load and their figment providers.
//!
//! Async backends fetch first; then every layer becomes a synchronous figment [`Provider`] (a
//! [`Snapshot`]) whose [`Metadata`] names the source and, through its interpolater, the exact location of
//! each value (`JWT_SECRET_KEY`, `.env line 3`, `secret auth/jwt key secret`). Figment merges them in
//! precedence order and tells the resolve stage, per field, which source won.
//!
//! Secret bytes never enter figment: a snapshot maps a field id to a *slot*, the index of the value in
//! the resolve stage's own zeroizing storage. Figment's dictionaries (which are never wiped) only ever
//! hold those numbers.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// A layer in the precedence order of a [`Loader`](crate::Loader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The configured backend (AWS, Vault, the local store, memory...).
    Backend,
    /// Secret files in a directory, one per declaration named by its `env` (`/run/secrets/DB_PASSWORD`):
    /// a Kubernetes secret volume or Docker secrets. The directory is `SKM_SECRETS_DIR`, else
    /// `/run/secrets` when it exists ([`Loader::secrets_dir`](crate::Loader::secrets_dir)).
    Files,
    /// The process environment (only the declared `env` names are read).
    Env,
    /// The `.env` file.
    Dotenv,
    /// The declared `default = "..."`.
    Default,
}

impl Layer {
    /// The default precedence, highest first: the backend is the source of truth; mounted secret files
    /// come next (they are what an operator synced from the backend), then env and `.env` as fallbacks.
    pub const DEFAULT_ORDER: [Layer; 5] = [Layer::Backend, Layer::Files, Layer::Env, Layer::Dotenv, Layer::Default];
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Backend => "backend",
            Layer::Files => "files",
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

/// One layer's values for one load, as a figment provider: field id → slot number.
///
/// Keys are field ids (`db.url` nests as `db` → `url`); the interpolater turns a key path into the exact
/// location (`JWT_SECRET_KEY`, `line 3`, `secret auth/jwt key secret`) so that provenance needs no side table.
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

    /// Records that this layer has field `field_id`'s value in slot `slot`, found at `location`.
    pub(crate) fn insert(&mut self, field_id: &str, slot: usize, location: String) {
        insert_path(&mut self.data, field_id, Value::from(slot as u64));
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
