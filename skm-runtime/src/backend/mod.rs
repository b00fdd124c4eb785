//! Backends: where secrets live.
//!
//! A backend answers one [`Backend::fetch`] call with many [`FetchRequest`]s so that it can batch (AWS
//! `BatchGetSecretValue`) or fan out concurrently (Vault). Each request gets its own [`FetchResult`], which
//! tells found, not found, forbidden, unavailable and other failures apart: the loader falls back to lower
//! layers on some and not on others.
//!
//! Writes go through the separate [`AdminBackend`] trait so that the read path stays small.

use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretBox, SecretString};

pub use crate::failure::{AdminError, AdminErrorKind, FailureKind, FetchError};
pub use crate::spec::VersionPin;

#[cfg(feature = "aws")]
pub mod aws;
/// AWS Secrets Manager: this build lacks the `aws` feature, so only the policy renderer (which needs no
/// client) is here.
#[cfg(not(feature = "aws"))]
pub mod aws {
    pub mod policy;
}
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure", feature = "ssm"))]
pub(crate) mod distinct;
#[cfg(any(
    feature = "aws",
    feature = "gcp",
    feature = "azure",
    feature = "vault",
    feature = "ssm"
))]
pub(crate) mod endpoint;
pub mod fanout;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(feature = "keyring")]
pub mod keyring;
#[cfg(feature = "local")]
pub mod local;
pub mod memory;
pub mod registry;
#[cfg(any(feature = "aws", feature = "ssm"))]
pub(crate) mod smithy;
#[cfg(feature = "sops")]
pub mod sops;
#[cfg(feature = "ssm")]
pub mod ssm;
pub mod update;
#[cfg(feature = "vault")]
pub mod vault;
/// HashiCorp Vault / OpenBao: this build lacks the `vault` feature, so only the policy renderer (which
/// needs no client) is here.
#[cfg(not(feature = "vault"))]
pub mod vault {
    pub mod policy;
}

/// Requests are the plan's: a backend reads what the plan asks for.
pub use crate::plan::FetchRequest;
pub use memory::MemoryBackend;

/// The answer for one [`FetchRequest`].
pub type FetchResult = Result<SecretPayload, FetchError>;

/// A secret's value as a backend returned it.
pub enum SecretValue {
    /// Text: a plain string, or a JSON object whose properties are the secret's keys.
    Text(SecretString),
    /// Bytes (AWS `SecretBinary`).
    Binary(SecretBox<Vec<u8>>),
}

impl SecretValue {
    /// A text value.
    pub fn text(s: impl Into<String>) -> Self {
        SecretValue::Text(SecretString::from(s.into()))
    }

    /// A JSON object built from `(key, value)` pairs, as Vault and the local store hold it.
    pub fn map<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), serde_json::Value::String(v.into())))
            .collect();
        SecretValue::Text(SecretString::from(serde_json::Value::Object(map).to_string()))
    }

    /// A binary value.
    pub fn binary(bytes: Vec<u8>) -> Self {
        SecretValue::Binary(SecretBox::new(Box::new(bytes)))
    }

    /// Compares two values in constant time per byte, with `subtle` (used by tools to detect conflicts
    /// without showing them). A length difference is not hidden.
    pub fn same_as(&self, other: &SecretValue) -> bool {
        fn eq(a: &[u8], b: &[u8]) -> bool {
            use subtle::ConstantTimeEq;
            a.ct_eq(b).into()
        }
        match (self, other) {
            (SecretValue::Text(a), SecretValue::Text(b)) => {
                eq(a.expose_secret().as_bytes(), b.expose_secret().as_bytes())
            }
            (SecretValue::Binary(a), SecretValue::Binary(b)) => eq(a.expose_secret(), b.expose_secret()),
            _ => false,
        }
    }
}

impl Clone for SecretValue {
    fn clone(&self) -> Self {
        match self {
            SecretValue::Text(s) => SecretValue::Text(s.clone()),
            SecretValue::Binary(b) => SecretValue::binary(b.expose_secret().clone()),
        }
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::Text(_) => f.write_str("Text([REDACTED])"),
            SecretValue::Binary(_) => f.write_str("Binary([REDACTED])"),
        }
    }
}

/// A fetched secret: its value and which version it was.
#[derive(Debug, Clone)]
pub struct SecretPayload {
    /// The value.
    pub value: SecretValue,
    /// The backend's version identifier, if it has one (AWS version id, Vault version number).
    pub version: Option<String>,
    /// Where the value is, as the backend names it, for provenance ([`Origin::location`](crate::Origin)):
    /// `None`, the default, shows `secret {path}`. A backend sets it when its own name differs from the
    /// declared path or when the reader should know more (Key Vault: `secret auth-jwt (path auth/jwt)
    /// version …`, and an expiry within 7 days). Never holds a value.
    pub location: Option<String>,
}

impl SecretPayload {
    /// A payload without version information.
    pub fn new(value: SecretValue) -> Self {
        SecretPayload {
            value,
            version: None,
            location: None,
        }
    }

    /// Sets the version.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Sets [`location`](Self::location), what provenance shows instead of `secret {path}`.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::backend::{SecretPayload, SecretValue};
    /// let p = SecretPayload::new(SecretValue::text("v")).with_location("secret auth-jwt (path auth/jwt)");
    /// assert_eq!(p.location.as_deref(), Some("secret auth-jwt (path auth/jwt)"));
    /// ```
    pub fn with_location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }
}

/// A store of secrets that skm can read.
///
/// # Example
/// ```
/// use skm_runtime::backend::{Backend, FetchRequest, MemoryBackend};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let backend = MemoryBackend::new();
/// backend.insert("auth/jwt", skm_runtime::backend::SecretValue::map([("secret", "s3cr3t")]));
/// let results = backend.fetch(&[FetchRequest::current("auth/jwt"), FetchRequest::current("nope")]).await;
/// assert!(results[0].is_ok());
/// assert!(results[1].is_err());
/// # });
/// ```
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// A human name used in errors and provenance, e.g. `AWS Secrets Manager (eu-west-1)`.
    fn name(&self) -> String;

    /// Reads many secrets. Returns exactly one result per request, in the same order.
    ///
    /// A backend batches or fans out as its API allows; the loader calls this once per load.
    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult>;

    /// The current version id of each path, when the backend can tell it more cheaply than a fetch
    /// (AWS `DescribeSecret`, Vault KV v2 metadata, the local store). Used by hot reload to refetch only
    /// what changed.
    ///
    /// `None`, the default, means the backend cannot; a refresh then refetches every path. Otherwise one
    /// entry per request, in order.
    async fn current_versions(&self, requests: &[FetchRequest]) -> Option<Vec<Result<String, FetchError>>> {
        let _ = requests;
        None
    }

    /// Dynamic secrets, when the backend issues leases (Vault's `database/creds/...`): the loader issues the
    /// lease of each `#[secret(dynamic = "...")]` field through it. `None`, the default, issues none; such a
    /// field then fails the load with a message saying which backend can.
    fn leases(&self) -> Option<&dyn crate::lease::Leases> {
        None
    }

    /// The path that a reference's `PATH` (`ref+NAME://PATH#KEY`, see
    /// [`Loader::resolve_refs`](crate::Loader::resolve_refs)) names in this backend, in the form a
    /// declaration's `path` has. The default is `PATH` unchanged; Vault reads vals's form, whose first
    /// segment is the KV mount (`ref+vault://secret/db` is `db` of mount `secret`).
    fn reference_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Borrowed(path)
    }
}

/// What to write with [`AdminBackend::put`].
#[derive(Debug, Clone)]
pub struct PutRequest {
    /// The path to write.
    pub path: String,
    /// The new value (a new version if the path exists).
    pub value: SecretValue,
    /// Tags, where the backend supports them.
    pub tags: Vec<(String, String)>,
    /// A description, where the backend supports it.
    pub description: Option<String>,
    /// `true`: fail with [`AdminErrorKind::AlreadyExists`] if the path exists. Writes never silently overwrite.
    pub create_only: bool,
    /// Check-and-set: write only if the path's current version is this one, else fail with
    /// [`FailureKind::Conflict`]. `None` checks nothing (and does *not* mean "must not exist": that is
    /// `create_only`). Only for backends whose [`AdminBackend::supports_cas`] is `true`; others refuse it
    /// with [`FailureKind::Unsupported`] rather than write unchecked.
    pub expected_version: Option<String>,
}

impl PutRequest {
    /// A put of `value` at `path` that creates or adds a version.
    pub fn new(path: impl Into<String>, value: SecretValue) -> Self {
        PutRequest {
            path: path.into(),
            value,
            tags: Vec::new(),
            description: None,
            create_only: false,
            expected_version: None,
        }
    }
}

/// One entry of [`AdminBackend::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The path.
    pub path: String,
    /// Last change, if known.
    pub updated: Option<SystemTime>,
}

/// One version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The backend's version identifier.
    pub id: String,
    /// Labels: AWS staging labels, or `current` for the newest.
    pub stages: Vec<String>,
    /// When it was created, if known.
    pub created: Option<SystemTime>,
}

/// How to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteMode {
    /// The backend's default (AWS: 30-day recovery window; Vault: soft delete of the latest version).
    #[default]
    Default,
    /// Recoverable for this many days (AWS).
    RecoveryDays(u32),
    /// Gone for good.
    Force,
}

/// Writes and inspection, used by the `skm` tool. Separate from [`Backend`] so that the read path stays small.
#[async_trait]
pub trait AdminBackend: Backend {
    /// Creates `path` or adds a new version of it. Returns the new version's id.
    async fn put(&self, request: PutRequest) -> Result<String, AdminError>;

    /// Paths starting with `prefix` (all paths for `""`), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError>;

    /// Deletes `path`.
    async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError>;

    /// The versions of `path`, newest first.
    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError>;

    /// Whether [`put`](Self::put) honours [`PutRequest::expected_version`] atomically (check-and-set).
    /// `false`, the default: such a put fails with [`FailureKind::Unsupported`].
    fn supports_cas(&self) -> bool {
        false
    }

    /// Sets `key` to `value` in the JSON object at `path` (created if missing), keeping its other keys, in
    /// one atomic step, for a backend that merges under a lock of its own (the local store). `None`, the
    /// default: it cannot, and the caller reads, merges and writes (checked with
    /// [`PutRequest::expected_version`] where [`supports_cas`](Self::supports_cas)). Check-and-set retries
    /// give up under heavy contention; a lock does not.
    async fn merge_key(&self, path: &str, key: &str, value: &str) -> Option<Result<String, AdminError>> {
        let _ = (path, key, value);
        None
    }
}

/// The error of a put with [`PutRequest::expected_version`] on a backend without check-and-set.
#[allow(dead_code)] // used by the `aws` and `vault` features
pub(crate) fn cas_unsupported(request: &PutRequest, backend: &str) -> Result<(), AdminError> {
    match request.expected_version {
        None => Ok(()),
        Some(_) => Err(AdminError::new(
            FailureKind::Unsupported,
            &request.path,
            format!("{backend} cannot check-and-set a write: put without an expected version"),
        )),
    }
}
