//! The OS keyring (cargo feature `keyring`), through the [`keyring`](https://docs.rs/keyring/3) crate: the
//! macOS Keychain, the Windows Credential Manager, and the Secret Service on Linux and the BSDs (GNOME
//! Keyring, KWallet, KeePassXC), reached over D-Bus by a pure-Rust client (zbus), so no C library is needed.
//!
//! It is meant for a developer's machine, where secrets live in the login keychain rather than in a file.
//! Select it with `SKM_BACKEND=keyring` (it has no auto-detection signal: every desktop has a keyring, which
//! says nothing about whether the app keeps its secrets there) or
//! [`Loader::backend`](crate::Loader::backend) with a [`KeyringBackend`].
//!
//! # Mapping
//! - Every entry of a project is in the keyring's *service* `skm:{project}`; a field's `path` is the entry's
//!   *user* (account) name: `#[secret(path = "auth/jwt", key = "secret")]` reads the entry `auth/jwt` of
//!   `skm:myapp`.
//! - The project is `SKM_KEYRING_PROJECT`, else the name of the working directory (the project root, where
//!   `cargo run` runs an app): [`KeyringBackend::project`].
//! - The value is text; a `key` reads a property of the JSON object it holds, as for every other backend. A
//!   value that is not UTF-8 (written by another tool) is read as bytes.
//! - On Linux, entries are the Secret Service items with the attributes `service` = `skm:{project}` and
//!   `username` = the path (the `keyring` crate adds `target` = `default` and `application` to the items it
//!   creates, and finds items without them too), so `secret-tool store --label=... service skm:myapp username
//!   auth/jwt` writes an entry skm reads, and `secret-tool lookup service skm:myapp username auth/jwt` reads
//!   one skm wrote. On macOS an entry is a generic password (service, account); on Windows a generic credential
//!   named `auth/jwt.skm:myapp`.
//!
//! # Writes
//! [`AdminBackend::put`] sets an entry's value (creating it), and [`AdminBackend::delete`] removes it. An
//! entry has one value and no versions: a put that may overwrite replaces it, and `create_only` refuses an
//! entry that exists (checked just before the write: the keyring has no conditional write, so another writer
//! in between can still win). Listing is refused: the `keyring` crate finds entries by name only.
//!
//! # Deadline
//! Keyring calls block (and a locked keyring may show an unlock prompt and wait for it), so they run on a
//! thread of their own, never on the async runtime, and each call of the backend gives up after
//! [`KeyringBackend::timeout`] (30 s by default; the loader's deadline, also 30 s by default, bounds a load
//! anyway): a prompt nobody answers fails the load as *unavailable* instead of hanging it. The thread itself
//! is left to end when the keyring answers.
//!
//! # Failures
//! A missing entry is *not found*, naming the entry and the service; a locked keyring or a dismissed prompt is
//! *access denied*; no keyring at all (no Secret Service in the D-Bus session, no session bus) is
//! *unavailable*. Messages carry the keyring's own words, never a value.
//!
//! # Example
//! ```
//! use skm_runtime::backend::keyring::KeyringBackend;
//! let backend = KeyringBackend::for_project("myapp").unwrap();
//! assert_eq!(backend.service(), "skm:myapp");
//! let env = |name: &str| (name == "SKM_KEYRING_PROJECT").then(|| "billing".to_string());
//! assert_eq!(KeyringBackend::from_lookup(&env).unwrap().service(), "skm:billing");
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use zeroize::{Zeroize, Zeroizing};

use super::registry::{BoxFuture, Env, Probe, ProbeLevel};
use super::{
    AdminBackend, AdminError, Backend, DeleteMode, FailureKind, FetchError, FetchRequest, FetchResult, ListEntry,
    PutRequest, SecretPayload, SecretValue, VersionInfo,
};
use crate::Error;

/// How long one call of the backend waits for the keyring by default (see [Deadline](self#deadline)).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a put returns as the new version: an entry keeps one value.
const VERSION: &str = "current";

/// A [`Backend`] and [`AdminBackend`] on the OS keyring. See the [module docs](self).
///
/// Cloning shares the configuration.
#[derive(Clone)]
pub struct KeyringBackend {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    project: String,
    /// `skm:{project}`.
    service: String,
    timeout: Duration,
}

impl fmt::Debug for KeyringBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringBackend")
            .field("service", &self.inner.service)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl KeyringBackend {
    /// The backend for the project named by the environment (see the [module docs](self)).
    ///
    /// # Errors
    /// [`Error::Config`] when `SKM_KEYRING_PROJECT` is unset and the working directory has no name (`/`), or
    /// this platform has no keyring the `keyring` crate reaches.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// As [`KeyringBackend::from_env`], reading variables through `var` instead of the process environment.
    ///
    /// # Errors
    /// As [`KeyringBackend::from_env`].
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let project = match var("SKM_KEYRING_PROJECT").filter(|v| !v.trim().is_empty()) {
            Some(p) => p.trim().to_string(),
            None => std::env::current_dir()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .ok_or_else(|| {
                    Error::config(
                        "the keyring backend cannot name the project from the working directory: set \
                         SKM_KEYRING_PROJECT (entries are in the keyring service `skm:{project}`)"
                            .into(),
                    )
                })?,
        };
        Self::for_project(&project)
    }

    /// The backend for `project`: entries in the keyring service `skm:{project}`.
    ///
    /// # Errors
    /// [`Error::Config`] when `project` is empty, or this platform has no keyring the `keyring` crate
    /// reaches.
    pub fn for_project(project: &str) -> Result<Self, Error> {
        if project.trim().is_empty() {
            return Err(Error::config("the keyring project name is empty".into()));
        }
        if !SUPPORTED {
            return Err(Error::config(
                "the keyring backend has no OS keyring on this platform (it reaches the macOS Keychain, the \
                 Windows Credential Manager and the Secret Service on Linux, FreeBSD and OpenBSD)"
                    .into(),
            ));
        }
        Ok(KeyringBackend {
            inner: Arc::new(Inner {
                project: project.to_string(),
                service: format!("skm:{project}"),
                timeout: DEFAULT_TIMEOUT,
            }),
        })
    }

    /// Gives up on a call after `timeout` instead of [`DEFAULT_TIMEOUT`] (see [Deadline](self#deadline)).
    pub fn timeout(self, timeout: Duration) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| (*shared).clone());
        inner.timeout = timeout;
        KeyringBackend { inner: Arc::new(inner) }
    }

    /// The project: `SKM_KEYRING_PROJECT`, else the working directory's name.
    pub fn project(&self) -> &str {
        &self.inner.project
    }

    /// The keyring service the entries are in: `skm:{project}`.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// Runs `work` on a thread of its own and waits at most the timeout for it (see [Deadline](self#deadline)).
    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&Inner) -> T + Send + 'static) -> Result<T, Fail> {
        let inner = self.inner.clone();
        let timeout = inner.timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Not spawn_blocking: a call stuck on a prompt would keep the runtime from shutting down.
        std::thread::Builder::new()
            .name("skm-keyring".into())
            .spawn(move || {
                let _ = tx.send(work(&inner));
            })
            .map_err(|e| Fail::Unavailable(format!("cannot start the keyring thread: {e}")))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(Fail::Other("the keyring call stopped unexpectedly".into())),
            Err(_) => Err(Fail::Unavailable(format!(
                "the OS keyring did not answer within {} (a locked keyring waiting for its unlock prompt?)",
                crate::failure::seconds(timeout)
            ))),
        }
    }
}

/// The keyring service and entry that hold the local store's key under `SKM_LOCAL_KEY_SOURCE=keyring` (see
/// [`LocalStore`](super::local::LocalStore)): the keyring's counterpart of the default key file, shared by a
/// user's projects as that file is.
pub(crate) const LOCAL_KEY_SERVICE: &str = "skm";
/// See [`LOCAL_KEY_SERVICE`].
pub(crate) const LOCAL_KEY_ENTRY: &str = "local.key";

/// The local store's key as the keyring holds it, `None` when there is no entry. Blocking, but bounded: the
/// call runs on a thread of its own, waited for at most [`DEFAULT_TIMEOUT`].
pub(crate) fn read_local_key() -> Result<Option<Zeroizing<String>>, FetchError> {
    on_key_thread(|inner| match inner.entry(LOCAL_KEY_ENTRY)?.get_password() {
        Ok(text) => Ok(Some(Zeroizing::new(text))),
        Err(::keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(inner.fail(LOCAL_KEY_ENTRY, e)),
    })
}

/// Stores `text` as the local store's key unless the entry exists, and returns what the entry holds then:
/// `text`, or the key of a writer that got there first (read back after the write too, since the keyring has
/// no conditional write: whoever wrote last is the key every store of this user will read). Bounded as
/// [`read_local_key`].
pub(crate) fn create_local_key(text: Zeroizing<String>) -> Result<Zeroizing<String>, FetchError> {
    on_key_thread(move |inner| {
        let entry = inner.entry(LOCAL_KEY_ENTRY)?;
        match entry.get_password() {
            Ok(existing) => return Ok(Zeroizing::new(existing)),
            Err(::keyring::Error::NoEntry) => {}
            Err(e) => return Err(inner.fail(LOCAL_KEY_ENTRY, e)),
        }
        entry.set_password(&text).map_err(|e| inner.fail(LOCAL_KEY_ENTRY, e))?;
        entry
            .get_password()
            .map(Zeroizing::new)
            .map_err(|e| inner.fail(LOCAL_KEY_ENTRY, e))
    })
}

/// Runs a call on the local key's entry on a thread of its own and waits at most [`DEFAULT_TIMEOUT`] for it,
/// from synchronous code (the local store's reads and writes).
fn on_key_thread<T: Send + 'static>(
    work: impl FnOnce(&Inner) -> Result<T, Fail> + Send + 'static,
) -> Result<T, FetchError> {
    if !SUPPORTED {
        return Err(FetchError::unavailable(
            "SKM_LOCAL_KEY_SOURCE=keyring: this platform has no OS keyring the `keyring` crate reaches",
        ));
    }
    let inner = Inner {
        project: String::new(),
        service: LOCAL_KEY_SERVICE.into(),
        timeout: DEFAULT_TIMEOUT,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("skm-keyring".into())
        .spawn(move || {
            let _ = tx.send(work(&inner));
        })
        .map_err(|e| FetchError::unavailable(format!("cannot start the keyring thread: {e}")))?;
    match rx.recv_timeout(DEFAULT_TIMEOUT) {
        Ok(result) => result.map_err(Fail::fetch),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(FetchError::unavailable(format!(
            "the OS keyring did not answer within {} (a locked keyring waiting for its unlock prompt?)",
            crate::failure::seconds(DEFAULT_TIMEOUT)
        ))),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(FetchError::new(
            FailureKind::Other,
            "the keyring call stopped unexpectedly",
        )),
    }
}

/// Whether the `keyring` crate has a store for this platform with the features skm enables (elsewhere it
/// would silently fall back to its in-memory mock).
const SUPPORTED: bool = cfg!(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "macos",
    target_os = "ios",
    target_os = "windows"
));

/// Why one entry could not be read or written, before it becomes a [`FetchError`] or an [`AdminError`].
#[derive(Clone)]
enum Fail {
    NotFound(String),
    Exists(String),
    Forbidden(String),
    Unavailable(String),
    Invalid(String),
    Other(String),
}

impl Fail {
    fn fetch(self) -> FetchError {
        match self {
            Fail::NotFound(d) => FetchError::not_found(d),
            Fail::Exists(d) => FetchError::new(FailureKind::AlreadyExists, d),
            Fail::Forbidden(d) => FetchError::new(FailureKind::Forbidden, d),
            Fail::Unavailable(d) => FetchError::unavailable(d),
            Fail::Invalid(d) => FetchError::new(FailureKind::Invalid, d),
            Fail::Other(d) => FetchError::new(FailureKind::Other, d),
        }
    }

    fn admin(self, path: &str) -> AdminError {
        let e = self.fetch();
        AdminError::new(e.kind, path, e.detail)
    }
}

impl Inner {
    /// The entry for `path`. Blocking.
    fn entry(&self, path: &str) -> Result<::keyring::Entry, Fail> {
        ::keyring::Entry::new(&self.service, path).map_err(|e| self.fail(path, e))
    }

    /// A keyring error in skm's words. Takes the error by value so that bytes it carries are wiped.
    fn fail(&self, path: &str, e: ::keyring::Error) -> Fail {
        let service = &self.service;
        match e {
            ::keyring::Error::NoEntry => Fail::NotFound(format!(
                "no keyring entry `{path}` in service `{service}` (write it with `skm put {path}`)"
            )),
            ::keyring::Error::NoStorageAccess(why) => Fail::Forbidden(format!(
                "the OS keyring refused access to entry `{path}` of service `{service}` (locked, or the unlock \
                 prompt was dismissed: unlock it): {why}"
            )),
            ::keyring::Error::PlatformFailure(why) => Fail::Unavailable(format!(
                "the OS keyring failed for entry `{path}` of service `{service}`{}: {why}",
                if cfg!(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd")) {
                    " (is a Secret Service, e.g. gnome-keyring or KWallet, running in this D-Bus session?)"
                } else {
                    ""
                }
            )),
            ::keyring::Error::BadEncoding(mut bytes) => {
                bytes.zeroize();
                Fail::Invalid(format!(
                    "keyring entry `{path}` of service `{service}` is not UTF-8 text"
                ))
            }
            ::keyring::Error::TooLong(attr, limit) => Fail::Invalid(format!(
                "keyring entry `{path}` of service `{service}`: the {attr} is longer than the keyring's limit of \
                 {limit}"
            )),
            ::keyring::Error::Invalid(attr, why) => Fail::Invalid(format!(
                "keyring entry `{path}` of service `{service}`: the {attr} is invalid: {why}"
            )),
            // The matching credentials are not shown: their attributes are not skm's to print.
            ::keyring::Error::Ambiguous(items) => Fail::Invalid(format!(
                "{} keyring entries match `{path}` in service `{service}`: remove all but one",
                items.len()
            )),
            other => Fail::Other(format!(
                "the OS keyring failed for entry `{path}` of service `{service}`: {other}"
            )),
        }
    }

    /// Reads the entry `path`. Blocking.
    fn read(&self, path: &str) -> Result<SecretPayload, Fail> {
        let entry = self.entry(path)?;
        let value = match entry.get_password() {
            Ok(text) => {
                // Copied into a buffer of exactly its length (SecretString would otherwise reallocate, leaving
                // a copy behind), and the original wiped.
                let text = Zeroizing::new(text);
                SecretValue::Text(SecretString::from(text.as_str().to_owned()))
            }
            // Another tool wrote bytes: they are the value.
            Err(::keyring::Error::BadEncoding(bytes)) => SecretValue::Binary(SecretBox::new(Box::new(bytes))),
            Err(e) => return Err(self.fail(path, e)),
        };
        Ok(SecretPayload {
            value,
            version: None,
            location: Some(format!("entry {path} of service {}", self.service)),
        })
    }

    /// Whether the entry `path` exists. Blocking.
    fn exists(&self, entry: &::keyring::Entry, path: &str) -> Result<bool, Fail> {
        match entry.get_secret() {
            Ok(mut bytes) => {
                bytes.zeroize();
                Ok(true)
            }
            Err(::keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(self.fail(path, e)),
        }
    }

    /// Writes the entry `path`. Blocking.
    fn write(&self, path: &str, value: &SecretValue, create_only: bool) -> Result<(), Fail> {
        let entry = self.entry(path)?;
        if create_only && self.exists(&entry, path)? {
            return Err(Fail::Exists(format!(
                "keyring entry `{path}` already exists in service `{}`",
                self.service
            )));
        }
        let written = match value {
            SecretValue::Text(text) => entry.set_password(text.expose_secret()),
            SecretValue::Binary(bytes) => entry.set_secret(bytes.expose_secret()),
        };
        written.map_err(|e| self.fail(path, e))
    }

    /// Deletes the entry `path`. Blocking.
    fn delete(&self, path: &str) -> Result<(), Fail> {
        self.entry(path)?.delete_credential().map_err(|e| self.fail(path, e))
    }
}

#[async_trait]
impl Backend for KeyringBackend {
    fn name(&self) -> String {
        format!("the OS keyring (service {})", self.inner.service)
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        let n = requests.len();
        let owned: Vec<FetchRequest> = requests.to_vec();
        let results = self
            .blocking(move |inner| {
                // One read per distinct path; the keyring is local, so they go one after another.
                let mut read: HashMap<&str, Result<SecretPayload, Fail>> = HashMap::new();
                owned
                    .iter()
                    .map(|request| {
                        if !request.version.is_current() {
                            return Err(FetchError::new(
                                FailureKind::Unsupported,
                                format!(
                                    "a keyring entry has no versions: remove the version pin of `{}`",
                                    request.path
                                ),
                            ));
                        }
                        let result = read
                            .entry(request.path.as_str())
                            .or_insert_with(|| inner.read(&request.path));
                        match result {
                            Ok(payload) => Ok(payload.clone()),
                            Err(f) => Err(f.clone().fetch()),
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        match results {
            Ok(results) => results,
            Err(f) => vec![Err(f.fetch()); n],
        }
    }
}

/// Puts and deletes; no list and no versions (see the module's [Writes](self#writes)).
#[async_trait]
impl AdminBackend for KeyringBackend {
    /// Sets the entry's value; the version returned is `current` (an entry keeps one value).
    async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        super::cas_unsupported(&request, "the keyring backend")?;
        let path = request.path.clone();
        self.blocking(move |inner| inner.write(&request.path, &request.value, request.create_only))
            .await
            .and_then(|written| written)
            .map_err(|f| f.admin(&path))?;
        Ok(VERSION.to_string())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        Err(AdminError::new(
            FailureKind::Unsupported,
            prefix,
            format!(
                "the keyring backend does not list: the OS keyring finds entries by name only (see the entries of \
                 service `{}` in your keychain tool, or `secret-tool search --all service {}` on Linux)",
                self.inner.service, self.inner.service
            ),
        ))
    }

    async fn delete(&self, path: &str, _mode: DeleteMode) -> Result<(), AdminError> {
        let owned = path.to_string();
        self.blocking(move |inner| inner.delete(&owned))
            .await
            .and_then(|deleted| deleted)
            .map_err(|f| f.admin(path))
    }

    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        Err(AdminError::new(
            FailureKind::Unsupported,
            path,
            "a keyring entry has no versions: it keeps one value",
        ))
    }
}

/// The registry's `build`.
pub(crate) fn registry_build(env: Env) -> BoxFuture<Result<Arc<dyn AdminBackend>, Error>> {
    Box::pin(async move { Ok(Arc::new(KeyringBackend::from_lookup(&|n| env(n))?) as Arc<dyn AdminBackend>) })
}

/// The registry's `doctor`: the service, and whether the keyring answers (a read of an entry that does not
/// exist, which prompts for nothing).
pub(crate) fn doctor(env: Env) -> BoxFuture<Vec<Probe>> {
    Box::pin(async move {
        let backend = match KeyringBackend::from_lookup(&|n| env(n)) {
            Ok(b) => b.timeout(Duration::from_secs(10)),
            Err(e) => return vec![Probe::new("keyring service", ProbeLevel::Fail, e.to_string())],
        };
        let mut out = vec![Probe::new(
            "keyring service",
            ProbeLevel::Ok,
            format!("{} (set SKM_KEYRING_PROJECT to change the project)", backend.service()),
        )];
        let answer = backend
            .blocking(|inner| inner.read("skm-doctor-probe").map(|_| ()))
            .await
            .and_then(|r| r);
        out.push(match answer {
            Ok(()) | Err(Fail::NotFound(_)) => Probe::new("keyring", ProbeLevel::Ok, "the OS keyring answers"),
            Err(Fail::Forbidden(why)) => Probe::new("keyring", ProbeLevel::Warn, why),
            Err(Fail::Unavailable(why) | Fail::Invalid(why) | Fail::Other(why) | Fail::Exists(why)) => {
                Probe::new("keyring", ProbeLevel::Fail, why)
            }
        });
        out
    })
}
