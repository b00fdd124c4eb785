//! How a backend operation failed: one kind for reads and admin operations.
//!
//! A leaf module (it imports no other stage), so that [`crate::error`], the pipeline stages and every backend
//! can name a failure without importing each other. [`crate::backend`] re-exports these types.

use std::fmt;

/// Why a backend could not return a secret. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct FetchError {
    /// The category, which decides whether the loader may fall back.
    pub kind: FailureKind,
    /// What the backend said, for people.
    pub detail: String,
}

impl FetchError {
    /// A failure of `kind` with a detail message.
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        FetchError {
            kind,
            detail: detail.into(),
        }
    }

    /// The secret does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(FailureKind::NotFound, detail)
    }

    /// The backend could not be reached or did not answer.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(FailureKind::Unavailable, detail)
    }
}

/// The category of a [`FetchError`] or an [`AdminError`] (one kind for reads and admin operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The path (or the pinned version) does not exist.
    NotFound,
    /// The credentials lack permission (AWS AccessDenied, Vault 403).
    Forbidden,
    /// Network failure, timeout, sealed Vault, 5xx after retries.
    Unavailable,
    /// The backend throttled us and retries ran out.
    Throttled,
    /// The backend could not decrypt the secret (AWS KMS), or a local store failed authentication.
    Decryption,
    /// The secret exists but has the wrong shape (e.g. a `key` on a value that is not a JSON object).
    Invalid,
    /// `create_only` and the path exists.
    AlreadyExists,
    /// A check-and-set write found another current version than [`PutRequest::expected_version`](crate::backend::PutRequest::expected_version).
    Conflict,
    /// The backend does not support this operation.
    Unsupported,
    /// Anything else.
    Other,
}

/// The category of an [`AdminError`]: the same kinds as reads ([`FailureKind`]), so that a tool handles
/// "not found", "forbidden" or "unavailable" alike for both.
pub type AdminErrorKind = FailureKind;

impl FailureKind {
    /// Whether a lower layer may supply the value instead (with a warning, unless the loader is strict).
    ///
    /// `NotFound` falls back silently; transient problems fall back with a warning; forbidden and decryption
    /// failures are outages too, but the loader fails on them unless `Loader::allow_fallback_on` allows it
    /// (a configuration error, not an outage); an invalid secret never falls back.
    pub fn is_outage(self) -> bool {
        matches!(
            self,
            FailureKind::Unavailable | FailureKind::Throttled | FailureKind::Forbidden | FailureKind::Decryption
        )
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::NotFound => "not found",
            FailureKind::Forbidden => "access denied",
            FailureKind::Unavailable => "backend unavailable",
            FailureKind::Throttled => "throttled",
            FailureKind::Decryption => "decryption failed",
            FailureKind::Invalid => "invalid secret",
            FailureKind::AlreadyExists => "already exists",
            FailureKind::Conflict => "version conflict",
            FailureKind::Unsupported => "not supported",
            FailureKind::Other => "backend error",
        })
    }
}

/// An error from an [`AdminBackend`](crate::backend::AdminBackend) operation. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?} on `{path}`: {detail}")]
pub struct AdminError {
    /// The category.
    pub kind: AdminErrorKind,
    /// The path concerned.
    pub path: String,
    /// What the backend said.
    pub detail: String,
}

impl AdminError {
    /// An error of `kind` on `path`.
    pub fn new(kind: AdminErrorKind, path: impl Into<String>, detail: impl Into<String>) -> Self {
        AdminError {
            kind,
            path: path.into(),
            detail: detail.into(),
        }
    }
}

/// A duration for messages: `30 s`, `2.5 s`, `250 ms`.
pub(crate) fn seconds(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", (d.as_secs_f64() * 10.0).round() / 10.0)
    }
}
