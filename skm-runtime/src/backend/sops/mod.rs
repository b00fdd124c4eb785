//! SOPS files: secrets kept encrypted in the repository by [sops](https://github.com/getsops/sops), with
//! age recipients, read and verified by skm itself (no `sops` binary needed at run time).
//!
//! Select it with `SKM_BACKEND=sops` (it has no auto-detection signal: a repository holding SOPS files says
//! nothing about whether the app should read them) or [`Loader::backend`](crate::Loader::backend) with a
//! [`SopsBackend`]. It writes too (`skm put`, key writes, `skm migrate --to sops`): see [Writes](#writes).
//!
//! # Configuration
//! [`SopsBackend::from_env`] reads:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `SKM_SOPS_DIR` | the directory paths are relative to | the working directory (the project root) |
//! | `SOPS_AGE_KEY_FILE` | an age identity file (one `AGE-SECRET-KEY-1...` per line) | unset |
//! | `SOPS_AGE_KEY` | age identities, separated by whitespace | unset |
//! | `SOPS_AGE_RECIPIENTS` | age recipients (`age1...`, comma-separated) a new file is encrypted to | unset: the nearest `.sops.yaml`'s creation rule, else creating a file is refused |
//! | `XDG_CONFIG_HOME`, `HOME` (`APPDATA` on Windows) | where sops's default key file `sops/age/keys.txt` is (`~/.config/sops/age/keys.txt` on Linux, `~/Library/Application Support/sops/age/keys.txt` on macOS) | |
//!
//! As the sops tool does, every identity found in these places is tried. `SOPS_AGE_KEY_CMD`, SSH keys,
//! age plugins, KMS and PGP key sources are not read.
//!
//! # Paths and keys
//! A field's `path` names a file under `SKM_SOPS_DIR`:
//! - with an extension sops reads by (`.yaml`, `.yml`, `.json`, `.env`), that file: `path = "secrets.enc.json"`;
//! - without one, the first of `<path>.yaml`, `<path>.yml`, `<path>.json`, `<path>.env` that exists:
//!   `#[secret(path = "auth/jwt", key = "secret")]` reads key `secret` of `auth/jwt.yaml`.
//!
//! A path is relative and stays inside the directory (no `..`, no absolute path). The format follows the
//! extension, as sops decides it.
//!
//! The file's values are flattened into one JSON object of text values, which is what the field's `key`
//! reads: a nested key is dotted (`key = "database.url"` for `database: {url: ...}`), a sequence item is
//! its index (`hosts.0`), booleans are `true`/`false`, numbers their decimal text. Without `key`, a field
//! reads that whole object as JSON text (as it would a Vault or local-store path), so declare a `key` for
//! each value. `null`s are absent. Values sops left unencrypted (`_unencrypted` suffix, `encrypted_regex`,
//! ...) are read too, and are covered by the MAC like the others.
//!
//! # Integrity
//! Every value is AES-256-GCM under the file's data key with its key path as additional data, and the file's
//! MAC (SHA-512 over all values in document order, itself encrypted with `lastmodified` as additional data)
//! is recomputed and compared, as `sops -d` does. A changed, moved, added, removed or reordered value, a
//! changed MAC or `lastmodified`, or a value turned into plaintext is an integrity error
//! ([`FailureKind::Decryption`], like the local store's) that names the file and the key, never a value. So
//! is a file no identity opens (the message lists its recipients and where identities were looked for).
//!
//! Not read: files whose data key is split across several key groups (Shamir), files using
//! `unencrypted_comment_regex`/`encrypted_comment_regex`, and multi-document YAML. Each is an error saying
//! so.
//!
//! # Writes
//! A write is what `sops edit` does: the file is decrypted (its MAC checked, so the identity that reads it is
//! needed to write it), its values changed, encrypted again under the same data key (its recipients stay as
//! they are) and its MAC recomputed with a new `lastmodified`; the file is replaced atomically (a temporary
//! file in its directory, renamed over it, with its permissions). A value that did not change keeps its
//! ciphertext, as sops keeps it, and the file keeps sops's layout (YAML indented by 4, JSON by tabs), so a
//! reviewer's diff shows the keys that changed, the MAC and `lastmodified`. Values keep their type when the
//! new text still reads as it (`5432` stays an int). Comments are dropped (sops encrypts them; skm does not
//! read them).
//! - [`AdminBackend::put`] replaces the file's values with the keys of a JSON object (nested objects and
//!   dotted keys alike); keys not given are removed. `create_only` refuses an existing file.
//! - [`AdminBackend::merge_key`] sets one key (`database.password` adds a nested mapping in YAML and JSON;
//!   dotenv keys are flat), keeping the others.
//! - A new file is `<path>.yaml` (or `path` itself when it has an extension), with a new data key encrypted
//!   to `SOPS_AGE_RECIPIENTS` ([`SopsBackend::age_recipients`]); without them, as `sops encrypt` does, to the
//!   `age` recipients of the first `creation_rules` entry of the nearest `.sops.yaml` (in the file's
//!   directory or above it) whose `path_regex` matches the file's path relative to that directory. A rule
//!   that sets anything besides `path_regex` and `age` (KMS, PGP, key groups, `encrypted_regex`, ...) is
//!   refused, naming the config and the rule, rather than followed in part.
//!
//! skm's writes to one directory take turns under an exclusive lock on the directory (on Unix), so
//! concurrent key writes through skm lose nothing; `sops edit` takes no lock, so a write racing it can be
//! lost, as two `sops edit`s can. Listing, deleting (remove a file with git, a key with `sops unset`) and
//! check-and-set puts are refused.
//!
//! # Deadline and limits
//! Files are read on a blocking thread, so the loader's deadline bounds a load even on a hung file system;
//! a SOPS file (and an identity file) must be a regular file of at most 1 MiB, as secret files must.
//! The payload's version is the file's `lastmodified`.
//!
//! # Example
//! ```
//! use skm_runtime::backend::sops::SopsBackend;
//! let env = |name: &str| match name {
//!     "SKM_SOPS_DIR" => Some("/srv/app/secrets".to_string()),
//!     "SOPS_AGE_KEY_FILE" => Some("/run/keys/age.txt".to_string()),
//!     _ => None,
//! };
//! let backend = SopsBackend::from_lookup(&env).unwrap();
//! assert_eq!(backend.dir(), std::path::Path::new("/srv/app/secrets"));
//! ```

mod cipher;
mod config;
mod keys;
mod tree;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::registry::{BoxFuture, Env, Probe, ProbeLevel};
use super::{
    AdminBackend, AdminError, Backend, DeleteMode, FailureKind, FetchError, FetchRequest, FetchResult, ListEntry,
    PutRequest, SecretPayload, SecretValue, VersionInfo,
};
use crate::capped::{read_capped, FileError};
use crate::Error;
use keys::{KeyError, KeySources};
use tree::Format;

/// The extensions tried, in order, for a path without one.
const EXTENSIONS: [&str; 4] = ["yaml", "yml", "json", "env"];

/// A [`Backend`] and [`AdminBackend`] on SOPS files. See the [module docs](self).
///
/// Cloning shares the configuration.
#[derive(Clone)]
pub struct SopsBackend {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    dir: PathBuf,
    keys: KeySources,
    /// `SOPS_AGE_RECIPIENTS`: whom a new file is encrypted to.
    recipients: Option<String>,
}

impl fmt::Debug for SopsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SopsBackend")
            .field("dir", &self.inner.dir)
            .field("identities", &self.inner.keys)
            .finish()
    }
}

impl SopsBackend {
    /// The backend configured by the environment (see the [module docs](self)).
    ///
    /// # Errors
    /// `SOPS_AGE_KEY` is set but is not age X25519 identities ([`Error::Config`]; the message shows no key).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// As [`SopsBackend::from_env`], reading variables through `var` instead of the process environment.
    ///
    /// # Errors
    /// As [`SopsBackend::from_env`].
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let dir = var("SKM_SOPS_DIR")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| ".".into());
        let keys = KeySources::from_lookup(var).map_err(Error::config)?;
        let recipients = var("SOPS_AGE_RECIPIENTS").filter(|v| !v.trim().is_empty());
        if let Some(r) = &recipients {
            keys::parse_recipients(r).map_err(|why| Error::config(format!("SOPS_AGE_RECIPIENTS: {why}")))?;
        }
        Ok(SopsBackend::with(Inner {
            dir: PathBuf::from(dir),
            keys,
            recipients,
        }))
    }

    fn with(mut inner: Inner) -> Self {
        // Absolute, so that a later change of working directory does not move the files.
        inner.dir = std::path::absolute(&inner.dir).unwrap_or(inner.dir);
        SopsBackend { inner: Arc::new(inner) }
    }

    /// Reads files under `dir` instead of `SKM_SOPS_DIR`.
    pub fn in_dir(self, dir: impl Into<PathBuf>) -> Self {
        let mut inner = self.into_inner();
        inner.dir = dir.into();
        SopsBackend::with(inner)
    }

    /// Uses these age identities (`AGE-SECRET-KEY-1...`, separated by whitespace) instead of `SOPS_AGE_KEY`.
    ///
    /// # Errors
    /// The text holds something other than age X25519 identities ([`Error::Config`], showing no key).
    pub fn age_identities(self, identities: impl Into<String>) -> Result<Self, Error> {
        let mut inner = self.into_inner();
        inner
            .keys
            .give(Zeroizing::new(identities.into()))
            .map_err(Error::config)?;
        Ok(SopsBackend::with(inner))
    }

    /// Encrypts new files to these age recipients (`age1...`, separated by commas or whitespace) instead of
    /// `SOPS_AGE_RECIPIENTS`'s. An existing file keeps its own recipients.
    ///
    /// # Errors
    /// One is not an age X25519 recipient ([`Error::Config`]).
    pub fn age_recipients(self, recipients: impl Into<String>) -> Result<Self, Error> {
        let recipients = recipients.into();
        keys::parse_recipients(&recipients).map_err(Error::config)?;
        let mut inner = self.into_inner();
        inner.recipients = Some(recipients);
        Ok(SopsBackend::with(inner))
    }

    /// Uses the age identity file at `path` instead of `SOPS_AGE_KEY_FILE`.
    pub fn age_key_file(self, path: impl Into<PathBuf>) -> Self {
        let mut inner = self.into_inner();
        inner.keys.set_file(path.into());
        SopsBackend::with(inner)
    }

    fn into_inner(self) -> Inner {
        Arc::try_unwrap(self.inner).unwrap_or_else(|shared| (*shared).clone())
    }

    /// The directory paths are relative to.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

/// Why one path could not be read, before it becomes a [`FetchError`].
#[derive(Clone)]
enum Fail {
    NotFound(String),
    /// A create-only write found the file.
    Exists(String),
    /// The file fails its integrity checks, or no identity opens it.
    Decryption(String),
    Invalid(String),
    Unavailable(String),
    Forbidden(String),
    Unsupported(String),
}

impl Fail {
    fn fetch(self) -> FetchError {
        match self {
            Fail::NotFound(d) => FetchError::not_found(d),
            Fail::Exists(d) => FetchError::new(FailureKind::AlreadyExists, d),
            Fail::Decryption(d) => FetchError::new(FailureKind::Decryption, d),
            Fail::Invalid(d) => FetchError::new(FailureKind::Invalid, d),
            Fail::Unavailable(d) => FetchError::unavailable(d),
            Fail::Forbidden(d) => FetchError::new(FailureKind::Forbidden, d),
            Fail::Unsupported(d) => FetchError::new(FailureKind::Unsupported, d),
        }
    }

    fn admin(self, path: &str) -> AdminError {
        let e = self.fetch();
        AdminError::new(e.kind, path, e.detail)
    }

    fn file(file: &Path, e: FileError) -> Fail {
        let text = format!("cannot read SOPS file {}: {e}", file.display());
        match e {
            FileError::TimedOut(_) => Fail::Unavailable(text),
            FileError::Io(std::io::ErrorKind::PermissionDenied) => Fail::Forbidden(text),
            FileError::Io(_) => Fail::Unavailable(text),
            FileError::NotRegular(_) | FileError::TooLarge => Fail::Invalid(text),
        }
    }
}

/// One file, read and decrypted: the flattened values as a JSON object, its version and where it is.
struct Opened {
    json: SecretString,
    lastmodified: String,
    location: String,
}

impl Inner {
    /// The candidate files for `path`, relative to the directory, or why `path` cannot name one.
    fn candidates(&self, path: &str) -> Result<Vec<String>, Fail> {
        let p = Path::new(path);
        let inside = !path.is_empty()
            && !path.contains('\0')
            && p.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(Fail::Invalid(format!(
                "`{path}` does not name a file inside the SOPS directory {}: use a relative path without `..`",
                self.dir.display()
            )));
        }
        if Format::of(path).is_some() {
            Ok(vec![path.to_string()])
        } else {
            Ok(EXTENSIONS.iter().map(|e| format!("{path}.{e}")).collect())
        }
    }

    /// Reads, decrypts and verifies the file `path` names. Blocking.
    fn open(&self, path: &str, identities: &Result<Vec<age::x25519::Identity>, String>) -> Result<Opened, Fail> {
        let candidates = self.candidates(path)?;
        let mut found = None;
        for name in &candidates {
            let file = self.dir.join(name);
            match read_capped(&file) {
                Ok(Some(bytes)) => {
                    found = Some((name, file, bytes));
                    break;
                }
                Ok(None) => {}
                Err(e) => return Err(Fail::file(&file, e)),
            }
        }
        let Some((name, file, bytes)) = found else {
            return Err(Fail::NotFound(format!(
                "no SOPS file for `{path}` in {} (looked for {})",
                self.dir.display(),
                candidates.join(", ")
            )));
        };
        let shown = file.display();
        let format = Format::of(name).unwrap_or(Format::Yaml);
        let text =
            std::str::from_utf8(&bytes).map_err(|_| Fail::Invalid(format!("SOPS file {shown} is not UTF-8 text")))?;
        let doc = tree::parse(text, format).map_err(|why| Fail::Invalid(format!("SOPS file {shown}: {why}")))?;
        let meta = &doc.metadata;
        let data_key = self.data_key(&file, meta, identities)?;
        let flat = cipher::decrypt(&doc.values, &meta.rules, &meta.mac, &meta.lastmodified, &data_key)
            .map_err(|e| write::cipher_fail(&file, e))?;
        Ok(Opened {
            json: to_json(&flat),
            lastmodified: meta.lastmodified.clone(),
            location: format!("file {name}"),
        })
    }
}

impl Inner {
    /// The data key of `file`, from the first of its age recipients one of `identities` opens.
    fn data_key(
        &self,
        file: &Path,
        meta: &tree::Metadata,
        identities: &Result<Vec<age::x25519::Identity>, String>,
    ) -> Result<Zeroizing<Vec<u8>>, Fail> {
        let shown = file.display();
        if meta.key_groups {
            return Err(Fail::Unsupported(format!(
                "SOPS file {shown} splits its data key across several key groups (Shamir), which skm does not combine"
            )));
        }
        if meta.age.is_empty() {
            let others = if meta.other_sources.is_empty() {
                String::new()
            } else {
                format!(" (it uses {})", meta.other_sources.join(", "))
            };
            return Err(Fail::Unsupported(format!(
                "SOPS file {shown} is encrypted to no age recipient{others}: skm reads age-encrypted files only"
            )));
        }
        let identities = identities
            .as_ref()
            .map_err(|why| Fail::Decryption(format!("cannot decrypt SOPS file {shown}: {why}")))?;
        keys::data_key(&meta.age, identities).map_err(|e| match e {
            KeyError::NoMatch(why) => Fail::Decryption(format!(
                "cannot decrypt SOPS file {shown}: {why}; identities from {}",
                self.keys.describe()
            )),
            KeyError::Damaged(why) => Fail::Decryption(format!("integrity check failed for SOPS file {shown}: {why}")),
        })
    }
}

/// The flattened values as one JSON object, written straight into a buffer sized so that it never grows
/// (a reallocation would leave a copy of the values behind, unzeroized).
fn to_json(flat: &cipher::Flat) -> SecretString {
    // Escaping makes at most 6 bytes of one (`\u001f`); 6 more for quotes, colon and comma.
    let bound = 2 + flat.iter().map(|(k, v)| 6 * (k.len() + v.len()) + 6).sum::<usize>();
    let mut buf = Zeroizing::new(Vec::with_capacity(bound));
    buf.push(b'{');
    for (i, (key, value)) in flat.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, key.as_str());
        buf.push(b':');
        let _ = serde_json::to_writer(&mut *buf, value.as_str());
    }
    buf.push(b'}');
    let bytes = std::mem::take(&mut *buf);
    // serde_json writes UTF-8; the check cannot fail and copies nothing.
    SecretString::from(String::from_utf8(bytes).unwrap_or_default())
}

#[async_trait]
impl Backend for SopsBackend {
    fn name(&self) -> String {
        format!("SOPS files ({})", self.inner.dir.display())
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        let inner = self.inner.clone();
        let owned: Vec<FetchRequest> = requests.to_vec();
        let n = requests.len();
        // File reads and decryption are synchronous: on a blocking thread, so that the loader's deadline can
        // give up on a hung file system.
        let task = tokio::task::spawn_blocking(move || {
            let identities = inner.keys.load();
            let mut opened: HashMap<&str, Result<Opened, Fail>> = HashMap::new();
            owned
                .iter()
                .map(|request| {
                    if !request.version.is_current() {
                        return Err(FetchError::new(
                            FailureKind::Unsupported,
                            format!(
                                "SOPS files have no versions: remove the version pin of `{}` (the file's history is git's)",
                                request.path
                            ),
                        ));
                    }
                    let entry = opened
                        .entry(request.path.as_str())
                        .or_insert_with(|| inner.open(&request.path, &identities));
                    match entry {
                        Ok(o) => Ok(SecretPayload {
                            value: SecretValue::Text(o.json.clone()),
                            version: Some(o.lastmodified.clone()),
                            location: Some(o.location.clone()),
                        }),
                        Err(f) => Err(f.clone().fetch()),
                    }
                })
                .collect::<Vec<_>>()
        });
        match task.await {
            Ok(results) => results,
            Err(_) => vec![
                Err(FetchError::new(
                    FailureKind::Other,
                    "the SOPS reader stopped unexpectedly"
                ));
                n
            ],
        }
    }
}

/// The pairs of a put's value: a JSON object of text, numbers and booleans, flattened as reads flatten a
/// file (`{"database": {"url": ...}}` and `{"database.url": ...}` both write key `database.url`).
fn put_pairs(request: &PutRequest) -> Result<Vec<(String, Zeroizing<String>)>, AdminError> {
    // A secret declared without `key` has no place in a file of keys: say how to declare it.
    const BY_KEY: &str = "a SOPS file holds its values by key, so a whole value cannot be written: declare a `key` \
                          for this secret (`#[secret(path = \"...\", key = \"...\")]`, `key` in the manifest), \
                          or put a JSON object of keys (`{\"secret\": \"...\"}`)";
    let invalid = || AdminError::new(FailureKind::Invalid, &request.path, BY_KEY);
    let SecretValue::Text(text) = &request.value else {
        return Err(invalid());
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text.expose_secret()) else {
        return Err(invalid());
    };
    fn flatten(prefix: &str, value: serde_json::Value, out: &mut Vec<(String, Zeroizing<String>)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                    flatten(&key, v, out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.into_iter().enumerate() {
                    flatten(&format!("{prefix}.{i}"), v, out);
                }
            }
            serde_json::Value::String(s) => out.push((prefix.to_string(), Zeroizing::new(s))),
            serde_json::Value::Null => {}
            other => out.push((prefix.to_string(), Zeroizing::new(other.to_string()))),
        }
    }
    let mut pairs = Vec::new();
    for (k, v) in map {
        flatten(&k, v, &mut pairs);
    }
    Ok(pairs)
}

impl SopsBackend {
    async fn write(&self, path: &str, change: write::Change, create_only: bool) -> Result<String, AdminError> {
        let inner = self.inner.clone();
        let owned = path.to_string();
        tokio::task::spawn_blocking(move || inner.write(&owned, change, create_only))
            .await
            .map_err(|_| AdminError::new(FailureKind::Other, path, "the SOPS writer stopped unexpectedly"))?
            .map_err(|f| f.admin(path))
    }
}

/// Writes go through the file's own data key, so the identity that reads a file is needed to write it
/// (as for `sops edit`); a new file is encrypted to `SOPS_AGE_RECIPIENTS`, else to the `age` recipients of
/// the nearest `.sops.yaml`'s creation rule. See the module's [Writes](self#writes).
#[async_trait]
impl AdminBackend for SopsBackend {
    /// Replaces the file's values with the keys of a JSON object (nested or dotted keys); the version returned
    /// is the new `lastmodified`.
    async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        super::cas_unsupported(&request, "the sops backend")?;
        let pairs = put_pairs(&request)?;
        self.write(&request.path, write::Change::Replace(pairs), request.create_only)
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        Err(AdminError::new(
            FailureKind::Unsupported,
            prefix,
            "the sops backend does not list: its paths are the SOPS files you name",
        ))
    }

    async fn delete(&self, path: &str, _mode: DeleteMode) -> Result<(), AdminError> {
        Err(AdminError::new(
            FailureKind::Unsupported,
            path,
            "the sops backend does not delete files: remove the file with git (`git rm`), or a key with `sops unset`",
        ))
    }

    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        Err(AdminError::new(
            FailureKind::Unsupported,
            path,
            "SOPS files have no versions in the backend: their history is git's",
        ))
    }

    /// Sets one key of the file (a dotted key for nested ones), keeping every other value and its ciphertext,
    /// under the directory's lock.
    async fn merge_key(&self, path: &str, key: &str, value: &str) -> Option<Result<String, AdminError>> {
        let change = write::Change::Set(key.to_string(), Zeroizing::new(value.to_string()));
        Some(self.write(path, change, false).await)
    }
}

/// The registry's `build`.
pub(crate) fn registry_build(env: Env) -> BoxFuture<Result<Arc<dyn AdminBackend>, Error>> {
    Box::pin(async move { Ok(Arc::new(SopsBackend::from_lookup(&|n| env(n))?) as Arc<dyn AdminBackend>) })
}

/// The registry's `doctor`: the directory, and whether any age identity is found (never shown).
pub(crate) fn doctor(env: Env) -> BoxFuture<Vec<Probe>> {
    Box::pin(async move {
        let backend = match SopsBackend::from_lookup(&|n| env(n)) {
            Ok(b) => b,
            Err(e) => return vec![Probe::new("sops identities", ProbeLevel::Fail, e.to_string())],
        };
        let dir = backend.dir().display().to_string();
        let mut out = vec![if backend.dir().is_dir() {
            Probe::new("sops directory", ProbeLevel::Ok, dir)
        } else {
            Probe::new(
                "sops directory",
                ProbeLevel::Fail,
                format!("{dir} is not a directory (set SKM_SOPS_DIR)"),
            )
        }];
        let inner = backend.inner.clone();
        let loaded = tokio::task::spawn_blocking(move || inner.keys.load().map(|ids| ids.len())).await;
        out.push(match loaded {
            Ok(Ok(n)) => Probe::new(
                "sops identities",
                ProbeLevel::Ok,
                format!(
                    "{n} age identit{} from {}",
                    if n == 1 { "y" } else { "ies" },
                    backend.inner.keys.describe()
                ),
            ),
            Ok(Err(why)) => Probe::new("sops identities", ProbeLevel::Fail, why),
            Err(_) => Probe::new("sops identities", ProbeLevel::Fail, "the check stopped unexpectedly"),
        });
        out
    })
}
