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
//! | `SKM_LOCAL_KEY_SOURCE` | `keyring`: the key is in the OS keyring (feature `keyring`), not in a key file | `file` |
//!
//! Without `SKM_LOCAL_KEY`, the first write creates the key file with a random key (mode 0600, its new
//! directories 0700), so values persist across restarts. Back it up: without the key the store cannot be
//! read. A write refuses to create a new key when the store already holds secrets, since they were encrypted
//! with another one.
//!
//! ## The key in the OS keyring
//! With `SKM_LOCAL_KEY_SOURCE=keyring` (feature `keyring`; [`LocalStore::key_in_keyring`]) the key lives in
//! the OS keyring (macOS Keychain, Windows Credential Manager, the Secret Service on Linux) instead of a file:
//! the entry `local.key` of the service `skm`, shared by a user's projects as the default key file is. The
//! first write to an empty store creates it with a random key (reading it back afterwards, so that two
//! first writes at once end with one key). It is base64 text, so it can be backed up and restored with the
//! OS's keyring tool (`secret-tool lookup service skm username local.key` on Linux). Setting
//! `SKM_LOCAL_KEY` or `SKM_LOCAL_KEY_FILE` beside it is refused as ambiguous. No high-water mark is kept (it
//! lives beside a key file), so a whole-directory rollback goes unnoticed, as with `SKM_LOCAL_KEY`. A keyring
//! call runs on a thread of its own and is given up after 30 s (a locked keyring waiting for its unlock
//! prompt): the store then reports the keyring *unavailable*, a refused unlock *access denied*.
//!
//! # Model
//! A *path* such as `auth/jwt` holds a value; like Vault, the value is usually a JSON object of keys
//! ([`SecretValue::map`](crate::backend::SecretValue::map)), but plain text is stored and read back as-is, and bytes as bytes. Each put adds a
//! numbered version (1, 2, …); the last 5 are kept. Reads take [`VersionPin::Current`](crate::spec::VersionPin::Current), a kept
//! [`VersionPin::Number`](crate::spec::VersionPin::Number) (or the same number as [`VersionPin::Id`](crate::spec::VersionPin::Id)), or [`VersionPin::Previous`](crate::spec::VersionPin::Previous) (also the
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
//!   index               the store's identity and each path's write count, encrypted (mode 0600)
//!   secrets/            mode 0700
//!     auth%2Fjwt.skm    one file per path, mode 0600
//! <key file>.hwm        beside the key file: the high-water mark of every store of that key (see Integrity)
//! ```
//! A path's file name is the path with every byte other than `a-z`, `0-9`, `-` and `_` written as `%XX`
//! (so `auth/jwt` is `auth%2Fjwt.skm`, and `DB` is `%44%42.skm`, which keeps names distinct on
//! case-insensitive file systems); names are limited to 255 bytes. Each file is:
//!
//! ```text
//! "SKMLOCAL"  8 bytes   magic
//! 0x02        1 byte    format version
//! store       16 bytes  the store's identity (random, made with the store)
//! generation  8 bytes   big-endian: which write of this path made the file (1, 2, ...)
//! len         2 bytes   big-endian length of the path in bytes
//! path        len bytes the path, UTF-8
//! nonce       24 bytes  random, new for every write
//! ciphertext  rest      XChaCha20-Poly1305 of the entry, with its 16-byte tag
//! ```
//! Everything before the nonce is the associated data. The entry is JSON: `{"next": N, "deleted": bool,
//! "versions": [{"n", "created_ms", "binary", "value" (base64)}, …]}` plus the description and tags of the
//! last put that gave them. The `index` is `"SKMINDEX"`, `0x01`, the store identity (the associated data),
//! a nonce and the encrypted JSON `{"paths": {path: {"g": generation, "r": removed}}}`.
//!
//! # Integrity
//! Reading a path checks its file against the index: the file must be of this store and of the generation
//! the index records (or one more: a write killed between its two renames). Someone who can write the
//! directory but does not hold the key therefore cannot, without an error naming the path
//! ([`FailureKind::Decryption`], never a value):
//! - modify or truncate a file or the index, or use another key's files (authentication fails);
//! - rename, copy or swap a file to another path (the path is authenticated);
//! - put back an older copy of a path's file, even a soft-deleted or force-deleted path's (the generation is
//!   behind the index);
//! - copy in a file of another store, even one that shares the default key (the store identity differs);
//! - remove a path's file (the index still records it) or the index of a store that has one.
//!
//! Rolling back the *whole* directory (index and files together) to an earlier copy is detected when the key
//! is in a key file (`SKM_LOCAL_KEY_FILE` or the default one): each write records the store's generation
//! (its count of writes) for its identity in a high-water mark beside the key file, `<key file>.hwm`
//! (`~/.config/skm/local.key.hwm`), authenticated with a key derived from the store key, replaced atomically
//! and never lowered. A store behind its mark is an integrity error ([`FailureKind::Decryption`]) for reads and
//! writes alike, naming the mark file. **If you restored a backup of the store on purpose**, delete
//! `<key file>.hwm` to accept it; that forgets the marks of every store of that key until each is written
//! again. A mark that does not authenticate under the key (damaged, or left by a key the file no longer holds)
//! is ignored with a warning and replaced by the next write; a mark that cannot be written (a read-only key
//! directory) is a warning, and the write still succeeds.
//!
//! Not detected:
//! - with the key given directly (`SKM_LOCAL_KEY`, [`LocalStore::key`]) there is no mark: nothing outside the
//!   directory remembers its state, so a whole-directory rollback restores the old values without an error;
//! - a rollback to a copy no later than the store's last write through a key file (writes made with the key
//!   given directly do not raise the mark), or to a copy from before the store's first write with this version;
//! - replacing the directory with another complete store encrypted with the same key (another project's, or a
//!   new one), since every project of a user may share the default key file; deleting the whole directory
//!   makes the store absent.
//!
//! Rolling back the index alone with one path's file to the state of the same earlier moment is that same
//! whole-store rollback as far as that path is concerned.
//!
//! Stores of format 1 (no identity, no index) are read as they are; the first write upgrades the whole
//! store under the lock: it records every path in a new index, rewrites each file in format 2, and records
//! their generations, each step atomic and resumable. After that, a format-1 file is refused.
//!
//! # Durability and concurrency
//! A write takes the exclusive lock, reads the path's file, writes the new file to a temporary file in
//! `secrets/`, fsyncs it, renames it over the old one and fsyncs the directory, then replaces the index the
//! same way. A process killed at any point leaves the old or the new file and index, never a mix within a
//! file; the temporary files it may leave (`.tmp-*`) are removed by the first write of the next store opened
//! on the directory. Readers take no lock: a rename is atomic, so they see complete files; a reader that
//! finds a file and the index out of step (a write in progress) reads both again under a shared lock before
//! it reports an integrity error.
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
mod index;
mod inner;
mod key;
mod mark;
mod names;
mod versions;

pub(crate) use doctor::{doctor, registry_build};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{
    AdminBackend, AdminError, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchError, FetchRequest, FetchResult,
    ListEntry, PutRequest, VersionInfo,
};
use crate::Error;
use inner::{Inner, KeySource};
pub use key::LocalKey;
use names::SECRETS_DIR;

/// The local encrypted store: a [`Backend`] and [`AdminBackend`] on a directory. See the [module docs](self).
///
/// Cloning shares the store and its cached key.
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match &self.inner.key_source {
            KeySource::Given(_) => "given".to_string(),
            KeySource::File(p) => format!("file {}", p.display()),
            #[cfg(feature = "keyring")]
            KeySource::Keyring => "keyring".to_string(),
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
    /// A file that decrypts but does not match the store's index: rolled back, copied in, removed.
    Integrity(String),
    Forbidden(String),
    Io(String),
    Invalid(String),
}

impl Fail {
    /// The message, whatever the kind.
    fn text(&self) -> &str {
        match self {
            Fail::NotFound(d) | Fail::Exists(d) | Fail::Conflict(d) | Fail::Decryption(d) | Fail::Integrity(d) => d,
            Fail::Forbidden(d) | Fail::Io(d) | Fail::Invalid(d) => d,
        }
    }

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
            Fail::Decryption(d) | Fail::Integrity(d) => FetchError::new(FailureKind::Decryption, d),
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
            Fail::Decryption(d) | Fail::Integrity(d) | Fail::Invalid(d) => (AdminErrorKind::Other, d),
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

    /// Keeps the key in the OS keyring instead of a key file (`SKM_LOCAL_KEY_SOURCE=keyring`, feature
    /// `keyring`): the entry `local.key` of the keyring service `skm`, created with a random key by the first
    /// write to an empty store, as the key file would be. See [The key in the OS keyring](self#the-key-in-the-os-keyring).
    #[cfg(feature = "keyring")]
    pub fn key_in_keyring(self) -> Self {
        LocalStore::with(self.inner.root.clone(), KeySource::Keyring)
    }

    /// The store configured by the environment: `SKM_LOCAL_PATH`, `SKM_LOCAL_KEY`, `SKM_LOCAL_KEY_FILE`,
    /// `SKM_LOCAL_KEY_SOURCE` (see the [module docs](self)).
    ///
    /// # Errors
    /// `SKM_LOCAL_KEY` is set but is not 32 bytes in base64 or hex; `SKM_LOCAL_KEY_SOURCE` is neither `file`
    /// nor `keyring`, is `keyring` without the `keyring` feature, or is `keyring` beside `SKM_LOCAL_KEY` or
    /// `SKM_LOCAL_KEY_FILE` ([`Error::Config`]).
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
        match set("SKM_LOCAL_KEY_SOURCE").as_deref().map(str::trim) {
            None | Some("file") => {}
            Some("keyring") => {
                if let Some(other) = ["SKM_LOCAL_KEY", "SKM_LOCAL_KEY_FILE"]
                    .into_iter()
                    .find(|n| set(n).is_some())
                {
                    return Err(Error::config(format!(
                        "SKM_LOCAL_KEY_SOURCE=keyring keeps the local store's key in the OS keyring, but {other} \
                         is set too: unset one of them"
                    )));
                }
                #[cfg(feature = "keyring")]
                return Ok(store.key_in_keyring());
                #[cfg(not(feature = "keyring"))]
                return Err(Error::config(
                    "SKM_LOCAL_KEY_SOURCE=keyring needs skm built with the `keyring` feature".into(),
                ));
            }
            Some(_) => {
                return Err(Error::config(
                    "SKM_LOCAL_KEY_SOURCE must be `file` (the default: SKM_LOCAL_KEY_FILE or the default key file) \
                     or `keyring`"
                        .into(),
                ))
            }
        }
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

#[async_trait]
impl Backend for LocalStore {
    fn name(&self) -> String {
        format!("local store ({})", self.inner.root.display())
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        // Read in place: a lock-free read of small local files never waits, and handing it to a blocking
        // thread cost 0.24 ms of a 2.7 ms cold start (skm-bench's cold binary). Only a read that caught a
        // writer mid-write goes to a blocking thread, to wait there on the store's shared lock.
        if !self.inner.key_may_wait() {
            if let Some(results) = self.inner.fetch_without_waiting(requests) {
                return results;
            }
        }
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

    /// [`LocalStore::put_key`]: the merge runs under the store's exclusive lock.
    async fn merge_key(&self, path: &str, key: &str, value: &str) -> Option<Result<String, AdminError>> {
        Some(LocalStore::put_key(self, path, key, value).await)
    }
}

/// The directory under a store that holds skm's own sealed files (the offline cache).
const OWN_DIR: &str = "cache";

impl LocalStore {
    /// Writes `plain` as skm's own file `name` under `<store>/cache/`, encrypted with the store's key (the
    /// key file is created as a first write would) and authenticated with `label`, so that a file copied
    /// under another name or label does not open. Atomic (temporary file, rename), mode 0600, in a private
    /// directory. Returns the file's path.
    pub(crate) fn write_own(&self, name: &str, label: &str, plain: &[u8]) -> Result<PathBuf, String> {
        let key = self.inner.write_key().map_err(|f| f.text().to_string())?;
        let dir = self.inner.root.join(OWN_DIR);
        names::create_private_dir(&self.inner.root)
            .and_then(|()| names::create_private_dir(&dir))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let file = names::file_name(name).map_err(|f| f.text().to_string())?;
        let sealed = format::seal_with(own_header(label), plain, &key)?;
        names::write_atomic(&dir, &file, &sealed).map_err(|f| f.text().to_string())?;
        Ok(dir.join(file))
    }

    /// Reads skm's own file `name` written by [`LocalStore::write_own`] with the same `label`: `Ok(None)`
    /// when there is none; an error when it does not authenticate (another key, label or a modified file).
    pub(crate) fn read_own(&self, name: &str, label: &str) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        let file = names::file_name(name).map_err(|f| f.text().to_string())?;
        let path = self.inner.root.join(OWN_DIR).join(file);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let key = self.inner.read_key().map_err(|f| f.text().to_string())?;
        let header = own_header(label);
        if !bytes.starts_with(&header) {
            return Err(format!(
                "{} is not an skm offline cache file for this struct",
                path.display()
            ));
        }
        format::open_with(&bytes, header.len(), &key)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The authenticated header of skm's own files: a magic and the label, NUL-terminated.
fn own_header(label: &str) -> Vec<u8> {
    let mut h = b"skm-own-1\0".to_vec();
    h.extend_from_slice(label.as_bytes());
    h.push(0);
    h
}

/// The store's parsers as pure functions, for [`crate::fuzzing`]: no file system, no lock.
pub(crate) mod pure {
    use super::format::{self, Stamp};
    use super::versions::{select, to_value};
    use super::{Fail, LocalKey};
    use crate::backend::VersionPin;

    fn text(f: Fail) -> String {
        match f {
            Fail::NotFound(d) | Fail::Exists(d) | Fail::Decryption(d) | Fail::Forbidden(d) | Fail::Io(d) => d,
            Fail::Invalid(d) | Fail::Conflict(d) | Fail::Integrity(d) => d,
        }
    }

    /// Opens the bytes of `path`'s store file and reads it as a fetch would: every kept version, and the
    /// version pins a declaration can name. Returns how many versions are kept.
    pub(crate) fn open(path: &str, bytes: &[u8], key: &LocalKey) -> Result<usize, String> {
        let entry = format::open(path, bytes, key)?.entry;
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

    /// Encrypts `plain` as the entry of `path`'s store file (current format, a zero store identity, the
    /// path's first write), whatever it holds. The index check is not the parser's business.
    pub(crate) fn seal(path: &str, plain: &[u8], key: &LocalKey) -> Result<Vec<u8>, String> {
        let stamp = Stamp {
            store: [0; 16],
            generation: 1,
        };
        format::seal_plain(path, Some(&stamp), plain, key)
    }

    /// The file name of `path`.
    pub(crate) fn file_name(path: &str) -> Result<String, String> {
        super::names::file_name(path).map_err(text)
    }

    /// The path a file name stands for.
    pub(crate) fn path_of(name: &str) -> Option<String> {
        super::names::path_of(name)
    }
}
