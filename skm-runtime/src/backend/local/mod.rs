//! The local encrypted store: secrets in a directory of the project, encrypted with a key kept outside it.
//!
//! Use it for development and small deployments: `skm` detects it when no other backend is configured and
//! the store exists (see [`crate::detect`]), or select it with `SKM_BACKEND=local`.
//!
//! # Configuration
//! [`LocalStore::from_env`] reads:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `SKM_LOCAL_PATH` | the store directory | `.skm` in the working directory |
//! | `SKM_LOCAL_KEY` | the key: 32 bytes as base64 (44 characters, standard or URL-safe, padding optional) or as 64 hex digits | unset: use the key file |
//! | `SKM_LOCAL_KEY_FILE` | the key file | `<config dir>/skm/local.key` (`~/.config/skm/local.key` on Linux, `~/Library/Application Support/skm/local.key` on macOS, `%APPDATA%\skm\local.key` on Windows) |
//!
//! Without `SKM_LOCAL_KEY`, the first write creates the key file with a random key (mode 0600, its new
//! directories 0700), so values persist across restarts. Back it up: without the key the store cannot be
//! read. A write refuses to create a new key when the store already holds secrets, since they were encrypted
//! with another one.
//!
//! # Model
//! A *path* such as `auth/jwt` holds a value; like Vault, the value is usually a JSON object of keys
//! ([`SecretValue::map`]), but plain text is stored and read back as-is, and bytes as bytes. Each put adds a
//! numbered version (1, 2, …); the last 5 are kept. Reads take [`VersionPin::Current`], a kept
//! [`VersionPin::Number`] (or the same number as [`VersionPin::Id`]), or [`VersionPin::Previous`] (also the
//! stages `previous` and `AWSPREVIOUS`) for the version before the latest. [`LocalStore::rollback`] makes an
//! old version current again as a new version. [`DeleteMode::Force`] removes a path and its versions; the
//! other modes hide it (reads say not found, `list` omits it) but keep its versions, so `rollback` or a new
//! put brings it back; recovery days are not enforced. [`LocalStore::put_key`] sets one key of a JSON object
//! under the lock, so concurrent writers of different keys never lose each other's.
//!
//! # Layout and file format
//! ```text
//! .skm/                 mode 0700
//!   lock                empty; writers hold an exclusive lock on it (flock) for each write
//!   secrets/            mode 0700
//!     auth%2Fjwt.skm    one file per path, mode 0600
//! ```
//! A path's file name is the path with every byte other than `a-z`, `0-9`, `-` and `_` written as `%XX`
//! (so `auth/jwt` is `auth%2Fjwt.skm`, and `DB` is `%44%42.skm`, which keeps names distinct on
//! case-insensitive file systems); names are limited to 255 bytes. Each file is:
//!
//! ```text
//! "SKMLOCAL"  8 bytes   magic
//! 0x01        1 byte    format version
//! len         2 bytes   big-endian length of the path in bytes
//! path        len bytes the path, UTF-8
//! nonce       24 bytes  random, new for every write
//! ciphertext  rest      XChaCha20-Poly1305 of the entry, with its 16-byte tag
//! ```
//! Everything before the nonce is the associated data, so a file renamed or copied to another path fails
//! authentication. The entry is JSON: `{"next": N, "deleted": bool, "versions": [{"n", "created_ms",
//! "binary", "value" (base64)}, …]}` plus the description and tags of the last put that gave them. A wrong
//! key, a modified or truncated file all read as [`FailureKind::Decryption`], never as a value.
//!
//! # Durability and concurrency
//! A write takes the exclusive lock, reads the path's file, writes the new file to a temporary file in
//! `secrets/`, fsyncs it, renames it over the old one and fsyncs the directory. A process killed at any
//! point leaves the old or the new file, never a mix; the temporary files it may leave (`.tmp-*`) are removed
//! by the first write of the next store opened on the directory. Readers take no lock: a rename is atomic, so they see one complete file.
//!
//! If the store directory is inside a git work tree and not ignored, the first use logs a warning.
//!
//! # Example
//! ```
//! use skm_runtime::backend::local::{LocalKey, LocalStore};
//! use skm_runtime::backend::{AdminBackend, Backend, FetchRequest, PutRequest, SecretValue};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store = LocalStore::open(dir.path().join(".skm")).key(LocalKey::generate().unwrap());
//! store.put(PutRequest::new("auth/jwt", SecretValue::map([("secret", "s3cr3t")]))).await.unwrap();
//! let results = store.fetch(&[FetchRequest::current("auth/jwt")]).await;
//! assert_eq!(results[0].as_ref().unwrap().version.as_deref(), Some("1"));
//! # });
//! ```

mod doctor;
mod format;
mod key;

pub(crate) use doctor::{doctor, registry_build};

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::{
    AdminBackend, AdminError, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchError, FetchRequest, FetchResult,
    ListEntry, PutRequest, SecretPayload, SecretValue, VersionInfo, VersionPin,
};
use crate::Error;
use format::{Blob, Entry};
pub use key::LocalKey;

const SECRETS_DIR: &str = "secrets";
const LOCK_FILE: &str = "lock";
const SUFFIX: &str = ".skm";
const TEMP_PREFIX: &str = ".tmp-";

/// The local encrypted store: a [`Backend`] and [`AdminBackend`] on a directory. See the [module docs](self).
///
/// Cloning shares the store and its cached key.
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    key_source: KeySource,
    key: Mutex<Option<LocalKey>>,
    /// Stale temporary files are removed once per store value, by its first write.
    swept: AtomicBool,
}

enum KeySource {
    Given(LocalKey),
    File(PathBuf),
    /// No key and no place for a key file; the reason is shown when a key is needed.
    Missing(String),
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match &self.inner.key_source {
            KeySource::Given(_) => "given".to_string(),
            KeySource::File(p) => format!("file {}", p.display()),
            KeySource::Missing(_) => "none".to_string(),
        };
        f.debug_struct("LocalStore")
            .field("path", &self.inner.root)
            .field("key", &key)
            .finish()
    }
}

/// Why an operation failed, before it becomes a [`FetchError`] or an [`AdminError`].
enum Fail {
    NotFound(String),
    Exists(String),
    Conflict(String),
    Decryption(String),
    Forbidden(String),
    Io(String),
    Invalid(String),
}

impl Fail {
    fn io(what: &str, path: &Path, e: std::io::Error) -> Fail {
        let text = format!("cannot {what} {}: {e}", path.display());
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            Fail::Forbidden(text)
        } else {
            Fail::Io(text)
        }
    }

    fn fetch(self) -> FetchError {
        match self {
            Fail::NotFound(d) => FetchError::not_found(d),
            Fail::Exists(d) | Fail::Conflict(d) | Fail::Io(d) => FetchError::unavailable(d),
            Fail::Decryption(d) => FetchError::new(FailureKind::Decryption, d),
            Fail::Forbidden(d) => FetchError::new(FailureKind::Forbidden, d),
            Fail::Invalid(d) => FetchError::new(FailureKind::Invalid, d),
        }
    }

    fn admin(self, path: &str) -> AdminError {
        let (kind, detail) = match self {
            Fail::NotFound(d) => (AdminErrorKind::NotFound, d),
            Fail::Exists(d) => (AdminErrorKind::AlreadyExists, d),
            Fail::Conflict(d) => (AdminErrorKind::Conflict, d),
            Fail::Forbidden(d) => (AdminErrorKind::Forbidden, d),
            Fail::Io(d) => (AdminErrorKind::Unavailable, d),
            Fail::Decryption(d) | Fail::Invalid(d) => (AdminErrorKind::Other, d),
        };
        AdminError::new(kind, path, detail)
    }
}

impl LocalStore {
    /// The store at `path` (created by the first write), with the key file in the user's config directory.
    ///
    /// Nothing is read or created until the first operation. Set the key with [`LocalStore::key`] or
    /// [`LocalStore::key_file`].
    pub fn open(path: impl Into<PathBuf>) -> Self {
        let key_source = match default_key_file() {
            Some(p) => KeySource::File(p),
            None => KeySource::Missing(
                "no config directory to keep the key file in: set SKM_LOCAL_KEY or SKM_LOCAL_KEY_FILE".into(),
            ),
        };
        LocalStore::with(path.into(), key_source)
    }

    fn with(root: PathBuf, key_source: KeySource) -> Self {
        // Absolute, so that a later change of working directory does not move the store.
        let root = std::path::absolute(&root).unwrap_or(root);
        LocalStore {
            inner: Arc::new(Inner {
                root,
                key_source,
                key: Mutex::new(None),
                swept: AtomicBool::new(false),
            }),
        }
    }

    /// Uses `key` instead of a key file.
    pub fn key(self, key: LocalKey) -> Self {
        LocalStore::with(self.inner.root.clone(), KeySource::Given(key))
    }

    /// Uses the key file at `path`, created with a random key by the first write if it does not exist.
    pub fn key_file(self, path: impl Into<PathBuf>) -> Self {
        LocalStore::with(self.inner.root.clone(), KeySource::File(path.into()))
    }

    /// The store configured by the environment: `SKM_LOCAL_PATH`, `SKM_LOCAL_KEY`, `SKM_LOCAL_KEY_FILE`
    /// (see the [module docs](self)).
    ///
    /// # Errors
    /// `SKM_LOCAL_KEY` is set but is not 32 bytes in base64 or hex ([`Error::Config`]).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// As [`LocalStore::from_env`], reading variables through `var` instead of the process environment.
    ///
    /// # Errors
    /// As [`LocalStore::from_env`].
    ///
    /// # Example
    /// ```
    /// use skm_runtime::backend::local::LocalStore;
    /// let env = |name: &str| match name {
    ///     "SKM_LOCAL_PATH" => Some("/tmp/example-store".to_string()),
    ///     "SKM_LOCAL_KEY" => Some("00".repeat(32)),
    ///     _ => None,
    /// };
    /// let store = LocalStore::from_lookup(&env).unwrap();
    /// assert_eq!(store.path(), std::path::Path::new("/tmp/example-store"));
    /// ```
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let root = set("SKM_LOCAL_PATH").unwrap_or_else(|| ".skm".into());
        let store = LocalStore::open(root);
        if let Some(text) = set("SKM_LOCAL_KEY").map(Zeroizing::new) {
            let key = LocalKey::parse(&text)
                .map_err(|_| Error::config("SKM_LOCAL_KEY must be 32 bytes as base64 or as 64 hex digits".into()))?;
            return Ok(store.key(key));
        }
        if let Some(file) = set("SKM_LOCAL_KEY_FILE") {
            return Ok(store.key_file(file));
        }
        Ok(store)
    }

    /// Whether a store exists at `path` (its `secrets` directory exists). One `stat`, no decryption.
    pub fn exists_at(path: &Path) -> bool {
        path.join(SECRETS_DIR).is_dir()
    }

    /// The store directory (absolute).
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// Makes kept version `version` of `path` current again by writing it as a new version; returns the new
    /// version's id. Also restores a soft-deleted path.
    ///
    /// # Errors
    /// [`AdminErrorKind::NotFound`] if the path or that version is not kept; other kinds for I/O and
    /// decryption failures.
    pub async fn rollback(&self, path: &str, version: u64) -> Result<String, AdminError> {
        let owned = path.to_string();
        self.blocking(path, move |inner| inner.rollback(&owned, version))
            .await
            .map(|n| n.to_string())
    }

    /// Sets `key` to `value` in the JSON object at `path` as a new version, creating the path if needed and
    /// keeping the other keys; returns the new version's id.
    ///
    /// The read and the write happen under the store's lock, so concurrent writers of different keys,
    /// in this process or others, never lose each other's keys.
    ///
    /// # Errors
    /// [`AdminErrorKind::Other`] if the current value is not a JSON object; other kinds for I/O and
    /// decryption failures.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::backend::local::{LocalKey, LocalStore};
    /// use skm_runtime::backend::{Backend, FetchRequest};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = LocalStore::open(dir.path().join(".skm")).key(LocalKey::generate().unwrap());
    /// store.put_key("db", "user", "app").await.unwrap();
    /// assert_eq!(store.put_key("db", "port", "5432").await.unwrap(), "2");
    /// # });
    /// ```
    pub async fn put_key(&self, path: &str, key: &str, value: &str) -> Result<String, AdminError> {
        let (owned, key) = (path.to_string(), key.to_string());
        let value = Zeroizing::new(value.to_string());
        self.blocking(path, move |inner| inner.put_key(&owned, &key, &value))
            .await
            .map(|n| n.to_string())
    }

    /// Runs file work off the async threads: a write may wait on another process's lock.
    async fn blocking<T: Send + 'static>(
        &self,
        path: &str,
        work: impl FnOnce(&Inner) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, AdminError> {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || work(&inner)).await {
            Ok(r) => r.map_err(|f| f.admin(path)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(AdminError::new(
                AdminErrorKind::Other,
                path,
                "the runtime is shutting down",
            )),
        }
    }
}

fn default_key_file() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("skm").join("local.key"))
}

/// Creates `dir` and missing parents with mode 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The file name of `path`: see the module docs.
fn file_name(path: &str) -> Result<String, Fail> {
    if path.is_empty() {
        return Err(Fail::Invalid("the path is empty".into()));
    }
    let mut name = String::with_capacity(path.len() + SUFFIX.len());
    for b in path.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(SUFFIX);
    if name.len() > 255 {
        return Err(Fail::Invalid(format!(
            "path `{path}` is too long for the local store (its file name would exceed 255 bytes)"
        )));
    }
    Ok(name)
}

/// The path stored in file `name`, or `None` for files that are not store files.
fn path_of(name: &str) -> Option<String> {
    let stem = name.strip_suffix(SUFFIX)?;
    if stem.is_empty() || stem.starts_with('.') {
        return None;
    }
    let mut bytes = Vec::with_capacity(stem.len());
    let mut rest = stem.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

fn to_value(version: &format::Version) -> Result<SecretValue, Fail> {
    if version.binary {
        return Ok(SecretValue::binary(version.value.0.to_vec()));
    }
    match std::str::from_utf8(&version.value.0) {
        Ok(text) => Ok(SecretValue::text(text)),
        Err(_) => Err(Fail::Decryption("a text value is not UTF-8".into())),
    }
}

fn to_blob(value: &SecretValue) -> (bool, Blob) {
    match value {
        SecretValue::Text(s) => (false, Blob(Zeroizing::new(s.expose_secret().as_bytes().to_vec()))),
        SecretValue::Binary(b) => (true, Blob(Zeroizing::new(b.expose_secret().clone()))),
    }
}

/// The version of `entry` that `pin` names.
fn select<'e>(entry: &'e Entry, path: &str, pin: &VersionPin) -> Result<&'e format::Version, Fail> {
    let last = entry.versions.len().checked_sub(1);
    let index = match pin {
        VersionPin::Current => last,
        VersionPin::Stage(s) if matches!(&**s, "current" | "AWSCURRENT") => last,
        VersionPin::Previous => last.and_then(|l| l.checked_sub(1)),
        VersionPin::Stage(s) if matches!(&**s, "previous" | "AWSPREVIOUS") => last.and_then(|l| l.checked_sub(1)),
        VersionPin::Number(n) => entry.versions.iter().position(|v| v.n == *n),
        VersionPin::Id(id) => match id.parse::<u64>() {
            Ok(n) => entry.versions.iter().position(|v| v.n == n),
            Err(_) => {
                return Err(Fail::NotFound(format!(
                    "`{path}` has no version id `{id}`: local store versions are numbers"
                )))
            }
        },
        VersionPin::Stage(stage) => {
            return Err(Fail::NotFound(format!(
                "`{path}` has no stage `{stage}`: the local store knows `current` and `previous`"
            )))
        }
    };
    index.map(|i| &entry.versions[i]).ok_or_else(|| {
        let kept = match (entry.versions.first(), entry.versions.last()) {
            (Some(a), Some(b)) => format!("versions {} to {} are kept", a.n, b.n),
            _ => "no versions are kept".into(),
        };
        Fail::NotFound(format!(
            "`{path}` has no {pin} ({kept}; the local store keeps the last {})",
            format::KEEP
        ))
    })
}

impl Inner {
    fn secrets_dir(&self) -> PathBuf {
        self.root.join(SECRETS_DIR)
    }

    fn warn_git(&self) {
        crate::gitcheck::warn_if_not_ignored_in_background(&self.root, "the local secret store");
    }

    fn cached_key(&self) -> Option<LocalKey> {
        self.key.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn remember(&self, key: LocalKey) -> LocalKey {
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key.clone());
        key
    }

    /// The key to read with; never creates one.
    fn read_key(&self) -> Result<LocalKey, Fail> {
        if let Some(k) = self.cached_key() {
            return Ok(k);
        }
        match &self.key_source {
            KeySource::Given(k) => Ok(self.remember(k.clone())),
            KeySource::File(p) => match key::read_key_file(p).map_err(Fail::Decryption)? {
                Some(k) => Ok(self.remember(k)),
                None => Err(Fail::Decryption(format!(
                    "no key to decrypt the local store: the key file {} does not exist; set SKM_LOCAL_KEY \
                     or restore the key file",
                    p.display()
                ))),
            },
            KeySource::Missing(why) => Err(Fail::Decryption(why.clone())),
        }
    }

    /// The key to write with; creates the key file if the store holds no secrets yet. Called under the lock.
    fn write_key(&self) -> Result<LocalKey, Fail> {
        match (&self.key_source, self.read_key()) {
            (_, Ok(k)) => Ok(k),
            (KeySource::File(p), Err(e)) if !p.exists() => {
                if self.has_files()? {
                    return Err(e);
                }
                Ok(self.remember(key::create_key_file(p).map_err(Fail::Io)?))
            }
            (_, Err(e)) => Err(e),
        }
    }

    fn has_files(&self) -> Result<bool, Fail> {
        Ok(!self.names()?.is_empty())
    }

    /// The store file names and their paths; empty if the store does not exist.
    fn names(&self) -> Result<Vec<(String, String)>, Fail> {
        let dir = self.secrets_dir();
        let read = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Fail::io("list", &dir, e)),
        };
        let mut out = Vec::new();
        for item in read {
            let item = item.map_err(|e| Fail::io("list", &dir, e))?;
            let name = item.file_name();
            if let Some(path) = name.to_str().and_then(path_of) {
                out.push((name.to_string_lossy().into_owned(), path));
            }
        }
        Ok(out)
    }

    /// The entry of `path`, `None` if it has no file.
    fn load(&self, path: &str, key: Option<&LocalKey>) -> Result<Option<Entry>, Fail> {
        let file = self.secrets_dir().join(file_name(path)?);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Fail::io("read", &file, e)),
        };
        let key = match key {
            Some(k) => k.clone(),
            None => self.read_key()?,
        };
        format::open(path, &bytes, &key)
            .map(Some)
            .map_err(|why| Fail::Decryption(format!("cannot decrypt `{path}` in {}: {why}", file.display())))
    }

    fn fetch_one(&self, path: &str) -> Result<Entry, Fail> {
        match self.load(path, None)? {
            Some(e) if !e.deleted => Ok(e),
            _ => Err(Fail::NotFound(format!("no secret at `{path}` in the local store"))),
        }
    }

    fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        // No git check here: a load never starts a process (writes and `skm check` / `doctor` warn instead).
        // Each path is decrypted once however many versions of it are asked for.
        let mut entries: HashMap<&str, Result<Entry, FetchError>> = HashMap::new();
        requests
            .iter()
            .map(|r| {
                let entry = entries
                    .entry(r.path.as_str())
                    .or_insert_with(|| self.fetch_one(&r.path).map_err(Fail::fetch));
                let entry = entry.as_ref().map_err(Clone::clone)?;
                let version = select(entry, &r.path, &r.version).map_err(Fail::fetch)?;
                Ok(SecretPayload::new(to_value(version).map_err(Fail::fetch)?).with_version(version.n.to_string()))
            })
            .collect()
    }

    /// Runs `change` on the entry of `path` under the store's exclusive lock and writes the result atomically.
    fn update<T>(&self, path: &str, change: impl FnOnce(Option<Entry>) -> Result<(Entry, T), Fail>) -> Result<T, Fail> {
        let name = file_name(path)?;
        let dir = self.secrets_dir();
        let created = !self.root.exists();
        create_private_dir(&dir).map_err(|e| Fail::io("create", &dir, e))?;
        if created {
            sync_dir(self.root.parent().unwrap_or(Path::new("/"))).ok();
        }
        self.warn_git();
        let lock_path = self.root.join(LOCK_FILE);
        let lock_file = open_lock(&lock_path).map_err(|e| Fail::io("open", &lock_path, e))?;
        let mut lock = fd_lock::RwLock::new(lock_file);
        let _guard = lock.write().map_err(|e| Fail::io("lock", &lock_path, e))?;
        self.sweep(&dir);
        let key = self.write_key()?;
        let current = self.load(path, Some(&key))?;
        let (entry, out) = change(current)?;
        let bytes = format::seal(path, &entry, &key).map_err(Fail::Io)?;
        write_atomic(&dir, &name, &bytes)?;
        Ok(out)
    }

    /// Removes temporary files left by killed writers. Called under the lock, when no write is in flight.
    fn sweep(&self, dir: &Path) {
        if self.swept.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(read) = std::fs::read_dir(dir) else { return };
        for item in read.flatten() {
            if item.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = std::fs::remove_file(item.path());
            }
        }
    }

    fn put(&self, request: &PutRequest) -> Result<u64, Fail> {
        self.update(&request.path, |current| {
            let mut entry = match current {
                Some(e) if request.create_only && !e.deleted => {
                    return Err(Fail::Exists(format!(
                        "`{}` already exists (version {}); not overwriting a create-only put",
                        request.path,
                        e.next - 1
                    )))
                }
                Some(e) => e,
                None => Entry::new(),
            };
            // Under the store's lock (`update`), so that no writer slips in between check and write.
            if let Some(expected) = &request.expected_version {
                let current = entry
                    .versions
                    .last()
                    .filter(|_| !entry.deleted)
                    .map(|v| v.n.to_string());
                if current.as_ref() != Some(expected) {
                    return Err(Fail::Conflict(format!(
                        "`{}`: check-and-set expected version {expected}, found {}",
                        request.path,
                        current.as_deref().unwrap_or("none")
                    )));
                }
            }
            if request.description.is_some() {
                entry.description.clone_from(&request.description);
            }
            if !request.tags.is_empty() {
                entry.tags.clone_from(&request.tags);
            }
            let (binary, blob) = to_blob(&request.value);
            let n = entry.push(binary, blob);
            Ok((entry, n))
        })
    }

    fn put_key(&self, path: &str, key: &str, value: &str) -> Result<u64, Fail> {
        self.update(path, |current| {
            let mut entry = current.unwrap_or_else(Entry::new);
            let mut map = serde_json::Map::new();
            if let Some(v) = entry.versions.last().filter(|_| !entry.deleted) {
                let parsed = (!v.binary)
                    .then(|| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&v.value.0).ok())
                    .flatten();
                map = parsed.ok_or_else(|| {
                    Fail::Invalid(format!(
                        "`{path}` is not a JSON object, so key `{key}` cannot be set in it"
                    ))
                })?;
            }
            map.insert(key.to_string(), serde_json::Value::String(value.to_string()));
            let text = Zeroizing::new(serde_json::Value::Object(map).to_string());
            let n = entry.push(false, Blob(Zeroizing::new(text.as_bytes().to_vec())));
            Ok((entry, n))
        })
    }

    fn rollback(&self, path: &str, version: u64) -> Result<u64, Fail> {
        self.update(path, |current| {
            let mut entry = current.ok_or_else(|| Fail::NotFound(format!("no secret at `{path}`")))?;
            let old = select(&entry, path, &VersionPin::Number(version))?;
            let (binary, blob) = (old.binary, old.value.clone());
            let n = entry.push(binary, blob);
            Ok((entry, n))
        })
    }

    fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), Fail> {
        let missing = || Fail::NotFound(format!("no secret at `{path}`"));
        if mode == DeleteMode::Force {
            let name = file_name(path)?;
            let dir = self.secrets_dir();
            if !dir.join(&name).exists() {
                return Err(missing());
            }
            let lock_path = self.root.join(LOCK_FILE);
            let lock_file = open_lock(&lock_path).map_err(|e| Fail::io("open", &lock_path, e))?;
            let mut lock = fd_lock::RwLock::new(lock_file);
            let _guard = lock.write().map_err(|e| Fail::io("lock", &lock_path, e))?;
            let file = dir.join(&name);
            return match std::fs::remove_file(&file) {
                Ok(()) => sync_dir(&dir).map_err(|e| Fail::io("sync", &dir, e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
                Err(e) => Err(Fail::io("remove", &file, e)),
            };
        }
        self.update(path, |current| match current {
            Some(mut e) if !e.deleted => {
                e.deleted = true;
                Ok((e, ()))
            }
            _ => Err(missing()),
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, Fail> {
        let mut out = Vec::new();
        for (_, path) in self.names()? {
            if !path.starts_with(prefix) {
                continue;
            }
            // Decrypt to skip soft-deleted paths; a file that fails to decrypt is an error, not a silent gap.
            if let Some(entry) = self.load(&path, None)?.filter(|e| !e.deleted) {
                out.push(ListEntry {
                    updated: entry.versions.last().map(format::Version::created),
                    path,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, Fail> {
        let entry = self.fetch_one(path)?;
        let count = entry.versions.len();
        Ok(entry
            .versions
            .iter()
            .rev()
            .enumerate()
            .map(|(age, v)| VersionInfo {
                id: v.n.to_string(),
                stages: match age {
                    0 => vec!["current".into()],
                    1 if count > 1 => vec!["previous".into()],
                    _ => Vec::new(),
                },
                created: Some(v.created()),
            })
            .collect())
    }
}

fn open_lock(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Temp file in the same directory, write, fsync, rename over `name`, fsync the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Fail> {
    let io = |what: &str, e: std::io::Error| Fail::io(what, &dir.join(name), e);
    // tempfile creates the file with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| io("create a temporary file for", e))?;
    tmp.write_all(bytes).map_err(|e| io("write", e))?;
    tmp.as_file().sync_all().map_err(|e| io("sync", e))?;
    tmp.persist(dir.join(name)).map_err(|e| io("replace", e.error))?;
    sync_dir(dir).map_err(|e| io("sync the directory of", e))
}

#[async_trait]
impl Backend for LocalStore {
    fn name(&self) -> String {
        format!("local store ({})", self.inner.root.display())
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        let inner = Arc::clone(&self.inner);
        let owned = requests.to_vec();
        match tokio::task::spawn_blocking(move || inner.fetch(&owned)).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => vec![Err(FetchError::unavailable("the runtime is shutting down")); requests.len()],
        }
    }

    /// The version numbers inside the files: as costly as a fetch of one small local file, but it lets hot
    /// reload skip paths that did not change.
    async fn current_versions(&self, requests: &[FetchRequest]) -> Option<Vec<Result<String, FetchError>>> {
        let results = self.fetch(requests).await;
        Some(
            results
                .into_iter()
                .map(|r| r.map(|p| p.version.unwrap_or_default()))
                .collect(),
        )
    }
}

#[async_trait]
impl AdminBackend for LocalStore {
    async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        let path = request.path.clone();
        self.blocking(&path, move |inner| inner.put(&request))
            .await
            .map(|n| n.to_string())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        let owned = prefix.to_string();
        self.blocking(prefix, move |inner| inner.list(&owned)).await
    }

    async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
        let owned = path.to_string();
        self.blocking(path, move |inner| inner.delete(&owned, mode)).await
    }

    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        let owned = path.to_string();
        self.blocking(path, move |inner| inner.versions(&owned)).await
    }

    /// Check-and-set runs under the store's exclusive lock.
    fn supports_cas(&self) -> bool {
        true
    }
}

/// The store's parsers as pure functions, for [`crate::fuzzing`]: no file system, no lock.
pub(crate) mod pure {
    use super::{format, select, to_value, Fail, LocalKey, VersionPin};

    fn text(f: Fail) -> String {
        match f {
            Fail::NotFound(d) | Fail::Exists(d) | Fail::Decryption(d) | Fail::Forbidden(d) | Fail::Io(d) => d,
            Fail::Invalid(d) | Fail::Conflict(d) => d,
        }
    }

    /// Opens the bytes of `path`'s store file and reads it as a fetch would: every kept version, and the
    /// version pins a declaration can name. Returns how many versions are kept.
    pub(crate) fn open(path: &str, bytes: &[u8], key: &LocalKey) -> Result<usize, String> {
        let entry = format::open(path, bytes, key)?;
        for version in &entry.versions {
            to_value(version).map_err(text)?;
        }
        for pin in [
            VersionPin::Current,
            VersionPin::Previous,
            VersionPin::Number(1),
            VersionPin::id("2"),
        ] {
            let _ = select(&entry, path, &pin);
        }
        Ok(entry.versions.len())
    }

    /// Encrypts `plain` as the entry of `path`'s store file, whatever it holds.
    pub(crate) fn seal(path: &str, plain: &[u8], key: &LocalKey) -> Result<Vec<u8>, String> {
        format::seal_plain(path, plain, key)
    }

    /// The file name of `path`.
    pub(crate) fn file_name(path: &str) -> Result<String, String> {
        super::file_name(path).map_err(text)
    }

    /// The path a file name stands for.
    pub(crate) fn path_of(name: &str) -> Option<String> {
        super::path_of(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        for path in ["auth/jwt", "DB", "a.b", "ünï/côde", "-_", "%41", ".hidden", "x y"] {
            let name = file_name(path).ok().unwrap();
            assert!(!name.starts_with('.'), "{name}");
            assert_eq!(path_of(&name).as_deref(), Some(path), "{name}");
        }
        assert_eq!(file_name("auth/jwt").ok().unwrap(), "auth%2Fjwt.skm");
        assert_ne!(file_name("DB").ok(), file_name("db").ok());
        assert!(file_name("").is_err());
        assert!(file_name(&"x/".repeat(100)).is_err());
        assert_eq!(path_of(".tmp-abc.skm"), None);
        assert_eq!(path_of("lock"), None);
        assert_eq!(path_of("%4.skm"), None);
    }
}
