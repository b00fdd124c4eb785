//! References to secrets inside any figment source: `database_url = "ref+vault://secret/db#url"` in a TOML
//! file, an environment variable or any provider (the `ref+` convention of vals and helmfile), so that an app
//! whose configuration lives in figment keeps its secrets out of its files without declaring a `Secrets`
//! struct.
//!
//! A reference is `ref+BACKEND://PATH[?version=V][#KEY]` ([`Reference`]): `BACKEND` is a registry name or alias (`aws`,
//! `vault`/`openbao`, `ssm`, `sops`, `local`, `gcp`, `azure`), `PATH` what `#[secret(path = "...")]` would
//! say for that backend (for Vault, as vals writes it, the KV mount then the path: `secret/db` is `db` of
//! mount `secret`; a path that does not start with the mount, `SKM_VAULT_MOUNT`, is read under it), and
//! `KEY` a property of the JSON object there (vals's `#/KEY` is read the same; a nested key in vals's form,
//! `#/stripe/key`, reads a nested value, or the dotted key `stripe.key` of a flattened secret such as a SOPS
//! file). `?version=3`, `?version_id=ID` or `?version_stage=LABEL` pins a version, as the field attributes
//! `version`, `version_id` and `version_stage` do.
//!
//! [`resolve`] finds every string of the figment's merged configuration (the selected profile over
//! `default`, under `global`) that starts with `ref+`, and resolves them with
//! [`Loader::resolve_refs`]: each backend is the loader's (or built once from the environment, as
//! `SKM_BACKEND` would build it), each backend's references go in one request batch, and all backends are
//! asked at once, in one concurrent wave under the loader's deadline. A reference that cannot be resolved
//! (malformed, an unknown backend, a missing secret or key, a backend failure) fails the whole call with
//! every failure listed together, as a load reports its fields, naming each key and reference, never a value.
//!
//! **The resolved values never enter your figment.** Figment's `Debug` prints every value and its errors
//! quote them (`found string "..."`), so your figment keeps only the references; the values live in a
//! short-lived copy inside [`Resolved`], whose `Debug` shows keys and references only, and whose extraction
//! errors are rewritten so that no resolved value appears in them (a value of the wrong type is reported as
//! `a value from a reference (not shown)`, with the key and the reference's provenance). Each resolved value
//! carries figment [`Metadata`] naming its provenance, `vault: secret db key url`.
//!
//! As with [`provider`](super::provider), the typed configuration you extract holds whatever types you
//! chose (plain `String`s are never wiped), and a value is offered as a string: extract with
//! [`Resolved::extract_lossy`] to read `"8000"` as a number.
//!
//! ```
//! use figment::{providers::Serialized, Figment};
//! use skm::testing::MemoryBackend;
//! use skm::backend::SecretValue;
//! use skm::Loader;
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     port: u16,
//!     database_url: String,
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // In a real app: `Loader::from_env().await?` and a TOML file with `database_url = "ref+vault://secret/db#url"`.
//! let vault = MemoryBackend::new();
//! vault.insert("db", SecretValue::map([("url", "postgres://app:hunter2@db/app")]));
//! let loader = Loader::new().no_dotenv().with_backend("vault", vault);
//!
//! let figment = Figment::new()
//!     .merge(Serialized::default("port", 8000))
//!     .merge(Serialized::default("database_url", "ref+vault://db#url"));
//! let resolved = skm::figment::refs::resolve(&figment, &loader).await?;
//! let config: Config = resolved.extract()?;
//! assert_eq!((config.port, config.database_url.as_str()), (8000, "postgres://app:hunter2@db/app"));
//! assert!(!format!("{figment:?}{resolved:?}").contains("hunter2"));
//! assert_eq!(resolved.provenance().get("database_url").unwrap().to_string(), "vault: secret db key url");
//! # Ok::<(), skm::figment::refs::RefsError>(())
//! # }).unwrap();
//! ```

use std::fmt;

use figment::error::{Actual, Kind};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use skm_runtime::{Error, Loader, Provenance};

pub use skm_runtime::Reference;

/// What a failed resolution calls the figment's references: `could not load 1 of 3 secrets of
/// ` followed by this name in backticks.
pub const CONTEXT: &str = "figment references";

/// What an extraction error says instead of a resolved value.
pub const HIDDEN: &str = "a value from a reference (not shown)";

/// Finds the references in `figment`'s merged configuration and resolves them with `loader`, all at once.
///
/// # Example
/// See the [module docs](self).
///
/// # Errors
/// [`RefsError::Figment`] when the figment itself cannot be read (a provider failed);
/// [`RefsError::Resolve`] with every reference that cannot be resolved, never a value.
pub async fn resolve(figment: &Figment, loader: &Loader) -> Result<Resolved, RefsError> {
    let merged = figment.find_value("").map_err(RefsError::Figment)?;
    let mut found = Vec::new();
    scan(&merged, &mut Vec::new(), &mut found);
    let refs: Vec<(String, String)> = found.iter().map(|f| (f.name(), f.text.clone())).collect();
    let raw = loader.resolve_refs(CONTEXT, &refs).await.map_err(RefsError::Resolve)?;

    // One patch per top-level place: a string, or the array holding references (given whole, since a
    // merge replaces arrays), each named by its provenance.
    let mut patches: Vec<(Vec<String>, Value, Vec<String>)> = Vec::new();
    let mut secrets = Vec::new();
    for (f, field) in found.iter().zip(&raw.fields) {
        let value = match field.expose_str() {
            Some(text) => {
                secrets.push(SecretString::from(text.to_string()));
                Value::from(text.to_string())
            }
            // Figment has no byte strings; bytes become a sequence of numbers, as serde's do.
            None => Value::from(field.expose_bytes().to_vec()),
        };
        let anchor = f.anchor();
        let provenance = field.origin.to_string();
        match patches.iter_mut().find(|(a, _, _)| *a == anchor) {
            Some((_, whole, names)) => {
                put(whole, &f.path[anchor.len()..], value);
                names.push(provenance);
            }
            None => {
                let mut whole = match merged.find_ref(&anchor.join(".")) {
                    Some(v) if anchor.len() < f.path.len() => v.clone(),
                    _ => Value::from(String::new()),
                };
                put(&mut whole, &f.path[anchor.len()..], value);
                patches.push((anchor, whole, vec![provenance]));
            }
        }
    }
    let mut resolved = figment.clone();
    let mut anchors = Vec::new();
    for (anchor, value, names) in patches {
        resolved = resolved.merge(Patch {
            data: nest(&anchor, value),
            name: names.join("; "),
        });
        anchors.push((anchor, names.join("; ")));
    }
    Ok(Resolved {
        figment: resolved,
        refs,
        anchors,
        secrets,
        provenance: raw.provenance,
    })
}

/// [`resolve`], then [`Resolved::extract`].
///
/// # Errors
/// As [`resolve`], and [`RefsError::Figment`] when extraction fails (no resolved value in it).
pub async fn extract<T: DeserializeOwned>(figment: &Figment, loader: &Loader) -> Result<T, RefsError> {
    Ok(resolve(figment, loader).await?.extract()?)
}

/// [`resolve`], then [`Resolved::extract_lossy`] (`"8000"` reads as a number).
///
/// # Errors
/// As [`extract`].
pub async fn extract_lossy<T: DeserializeOwned>(figment: &Figment, loader: &Loader) -> Result<T, RefsError> {
    Ok(resolve(figment, loader).await?.extract_lossy()?)
}

/// A figment's configuration with its references resolved; made by [`resolve`].
///
/// Holds the values in a figment of its own, which is never shown: `Debug` lists the keys and their
/// references only, and extraction errors are rewritten without the values.
pub struct Resolved {
    figment: Figment,
    /// `(key, reference)`, in the order found.
    refs: Vec<(String, String)>,
    /// The places patched (key paths) and their provenance names: errors there never show a value.
    anchors: Vec<(Vec<String>, String)>,
    /// The resolved texts, to take out of any error message.
    secrets: Vec<SecretString>,
    provenance: Provenance,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("references", &self.refs)
            .field("profile", self.figment.profile())
            .finish_non_exhaustive()
    }
}

// Figment's own error, as `Figment::extract` returns it: an app handles both the same way.
#[allow(clippy::result_large_err)]
impl Resolved {
    /// Deserializes the whole configuration, as [`Figment::extract`].
    ///
    /// # Errors
    /// Figment's error, without any resolved value in it.
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, figment::Error> {
        self.figment.extract().map_err(|e| self.redact(e))
    }

    /// Deserializes the whole configuration, as [`Figment::extract_lossy`] (`"8000"` reads as a number).
    ///
    /// # Errors
    /// As [`Resolved::extract`].
    pub fn extract_lossy<T: DeserializeOwned>(&self) -> Result<T, figment::Error> {
        self.figment.extract_lossy().map_err(|e| self.redact(e))
    }

    /// Deserializes the value at `key` (dotted), as [`Figment::extract_inner`].
    ///
    /// # Errors
    /// As [`Resolved::extract`].
    pub fn extract_inner<T: DeserializeOwned>(&self, key: &str) -> Result<T, figment::Error> {
        self.figment.extract_inner(key).map_err(|e| self.redact(e))
    }

    /// Where each resolved value came from, by key (`db.url`, `hosts[1]`): `vault: secret db key url`.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The references found, `(key, reference)`.
    pub fn references(&self) -> impl Iterator<Item = (&str, &str)> {
        self.refs.iter().map(|(k, r)| (k.as_str(), r.as_str()))
    }

    /// `e` with no resolved value left in it: at a patched key every value is replaced by [`HIDDEN`];
    /// everywhere, any resolved text is cut out of messages.
    fn redact(&self, e: figment::Error) -> figment::Error {
        let errors: Vec<figment::Error> = e
            .into_iter()
            .map(|mut e| {
                let ours = self.anchors.iter().any(|(anchor, name)| {
                    e.path.starts_with(anchor) || e.metadata.as_ref().is_some_and(|m| m.name == *name)
                });
                e.kind = self.redact_kind(std::mem::replace(&mut e.kind, Kind::Message(String::new())), ours);
                e
            })
            .collect();
        // `a.chain(b)` makes `a` the error before `b`: rebuild from the last.
        errors
            .into_iter()
            .rev()
            .reduce(|before, e| before.chain(e))
            .expect("an error is at least one")
    }

    fn redact_kind(&self, kind: Kind, ours: bool) -> Kind {
        let actual = |a: Actual| match a {
            Actual::Bool(_)
            | Actual::Unsigned(_)
            | Actual::Signed(_)
            | Actual::Float(_)
            | Actual::Char(_)
            | Actual::Str(_)
            | Actual::Bytes(_)
            | Actual::Other(_)
                if ours =>
            {
                Actual::Other(HIDDEN.into())
            }
            Actual::Str(s) => Actual::Str(self.cut(s)),
            Actual::Other(s) => Actual::Other(self.cut(s)),
            Actual::Bytes(_) => Actual::Other("bytes".into()),
            other => other,
        };
        match kind {
            Kind::Message(m) => Kind::Message(self.cut(m)),
            Kind::InvalidType(a, expected) => Kind::InvalidType(actual(a), expected),
            Kind::InvalidValue(a, expected) => Kind::InvalidValue(actual(a), expected),
            Kind::Unsupported(a) => Kind::Unsupported(actual(a)),
            Kind::UnsupportedKey(a, expected) => Kind::UnsupportedKey(actual(a), expected),
            Kind::UnknownVariant(_, expected) if ours => Kind::UnknownVariant(HIDDEN.into(), expected),
            Kind::UnknownVariant(v, expected) => Kind::UnknownVariant(self.cut(v), expected),
            Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) if ours => {
                Kind::Message(format!("integer out of range: {HIDDEN}"))
            }
            other => other,
        }
    }

    /// `text` with every resolved value replaced by `[REDACTED]`.
    fn cut(&self, mut text: String) -> String {
        for secret in &self.secrets {
            let s = secret.expose_secret();
            if !s.is_empty() && text.contains(s) {
                text = text.replace(s, "[REDACTED]");
            }
        }
        text
    }
}

/// Why [`resolve`] or an extraction failed. Never holds a resolved value.
pub enum RefsError {
    /// References could not be resolved: every one that failed, with its key and reference.
    Resolve(Error),
    /// Figment could not read its sources, or the resolved configuration does not fit the type (with no
    /// resolved value in the error).
    Figment(figment::Error),
}

impl fmt::Display for RefsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefsError::Resolve(e) => e.fmt(f),
            RefsError::Figment(e) => e.fmt(f),
        }
    }
}

/// The same report as `Display` (as [`skm::Error`](crate::Error)'s), so that `main` returning it prints it.
impl fmt::Debug for RefsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefsError::Resolve(e) => fmt::Debug::fmt(e, f),
            RefsError::Figment(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RefsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RefsError::Resolve(e) => Some(e),
            RefsError::Figment(e) => Some(e),
        }
    }
}

impl From<figment::Error> for RefsError {
    fn from(e: figment::Error) -> Self {
        RefsError::Figment(e)
    }
}

impl From<RefsError> for figment::Error {
    /// For apps whose functions return figment's error (Rocket's): a failed resolution becomes its report as a
    /// message.
    fn from(e: RefsError) -> Self {
        match e {
            RefsError::Resolve(e) => figment::Error::from(e.to_string()),
            RefsError::Figment(e) => e,
        }
    }
}

/// One step of a key path: a dictionary key or an array index.
#[derive(Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A reference found in the merged configuration.
struct Found {
    path: Vec<Step>,
    text: String,
}

impl Found {
    /// The key as people write it: `db.url`, `hosts[1]`.
    fn name(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            match step {
                Step::Key(k) if out.is_empty() => out.push_str(k),
                Step::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// The keys down to the first array (or the whole path): what one patch replaces.
    fn anchor(&self) -> Vec<String> {
        self.path
            .iter()
            .map_while(|s| match s {
                Step::Key(k) => Some(k.clone()),
                Step::Index(_) => None,
            })
            .collect()
    }
}

fn scan(value: &Value, path: &mut Vec<Step>, out: &mut Vec<Found>) {
    match value {
        Value::String(_, s) if Reference::is_reference(s) => out.push(Found {
            path: path.clone(),
            text: s.clone(),
        }),
        Value::Dict(_, dict) => {
            for (k, v) in dict {
                path.push(Step::Key(k.clone()));
                scan(v, path, out);
                path.pop();
            }
        }
        Value::Array(_, items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(Step::Index(i));
                scan(v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Puts `value` at `rest` (the steps below a patch's anchor) inside `whole`.
fn put(whole: &mut Value, rest: &[Step], value: Value) {
    let Some((first, rest)) = rest.split_first() else {
        *whole = value;
        return;
    };
    let next = match (first, whole) {
        (Step::Key(k), Value::Dict(_, dict)) => dict.get_mut(k),
        (Step::Index(i), Value::Array(_, items)) => items.get_mut(*i),
        _ => None,
    };
    if let Some(next) = next {
        put(next, rest, value);
    }
}

/// `value` nested under `keys`: `["db", "url"]` → `{db: {url: value}}`.
fn nest(keys: &[String], value: Value) -> Dict {
    let (last, parents) = keys.split_last().expect("a reference is under a key");
    let mut dict = Dict::new();
    dict.insert(last.clone(), value);
    for k in parents.iter().rev() {
        let mut outer = Dict::new();
        outer.insert(k.clone(), Value::from(dict));
        dict = outer;
    }
    dict
}

/// The resolved values of one place, merged into the short-lived figment in profile `global`, over every
/// profile, since they replace the merged configuration's winners.
struct Patch {
    data: Dict,
    name: String,
}

impl Provider for Patch {
    fn metadata(&self) -> Metadata {
        // Keys without the `global.` profile prefix: `for key "db.url" in vault: secret db key url`.
        Metadata::named(self.name.clone()).interpolater(|_: &Profile, keys: &[&str]| keys.join("."))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Global.collect(self.data.clone()))
    }
}
