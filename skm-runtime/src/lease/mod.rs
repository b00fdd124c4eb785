//! Leased credentials (dynamic secrets, such as Vault's / OpenBao's) kept alive in the background.
//!
//! A backend that issues leases offers the [`Leases`] capability through
//! [`Backend::leases`](crate::backend::Backend::leases) (the Vault backend, feature `vault`, does): the
//! loader's lease step issues one lease per `#[secret(dynamic = "...")]` field through it, whatever the
//! backend, and the values stage adopts each as a [`Leased<T>`]. This module names no backend.
//!
//! A dynamic secret, such as `database/creds/app`, is a fresh database user per read, with a lease: it
//! expires unless renewed, and cannot be renewed past the role's max TTL. [`Leased<T>`] holds such
//! credentials and a keeper task that:
//! - renews the lease at two thirds of its duration through `sys/leases/renew` (never per request);
//! - issues new credentials [`LeaseOptions::reissue_before`] the lease's hard end (its max TTL, from
//!   [`LeaseOptions::max_ttl`] or learnt from the first renewal the server caps), and publishes them:
//!   [`Leased::current`] returns them and [`Leased::changed`] wakes;
//! - keeps the previous credentials valid for [`LeaseOptions::overlap`] so that open connections drain,
//!   then revokes them through `sys/leases/revoke`;
//! - on [`Leased::revoke`] revokes every lease it holds, keeping those that failed for the next call; when
//!   the last clone is dropped it does the same, waiting at most 5 seconds (see [`Leased`]'s drop).
//!
//! Lease ids never appear in logs, errors or `Debug` output; a short fingerprint stands for them.
//!
//! # Example
//! With the Vault backend (feature `vault`):
//! ```no_run
//! # #[cfg(feature = "vault")]
//! # mod example {
//! use secrecy::{ExposeSecret, SecretString};
//! use skm_runtime::backend::vault::VaultBackend;
//! use skm_runtime::lease::LeaseOptions;
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct DbCredentials {
//!     username: String,
//!     password: SecretString,
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let vault = VaultBackend::from_env().await?;
//! let options = LeaseOptions::new().overlap(Duration::from_secs(60));
//! let mut db = vault.lease::<DbCredentials>("database/creds/app", options).await?;
//! let creds = db.current();
//! println!("connecting as {}", creds.username);
//! // In a pool's maintenance task: rebuild the pool whenever new credentials arrive.
//! while db.changed().await.is_ok() {
//!     let fresh = db.current();
//!     let _ = fresh.password.expose_secret();
//! }
//! // At shutdown: no credentials outlive the service.
//! db.revoke().await?;
//! # Ok(()) }
//! # }
//! # fn main() {}
//! ```

// Without a backend that issues leases (feature `vault`), the lease sources' half (`LeaseSource`, `Grant`,
// `Issued::issue`, `start`) has no caller in this build.
#![cfg_attr(not(feature = "vault"), allow(dead_code))]

use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod keeper;

use keeper::{begin, Counters, Held, Keeper, Orphans};

/// How [`Leased`] keeps its credentials alive. The defaults suit leases of minutes to hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    reissue_before: Duration,
    overlap: Duration,
    max_ttl: Option<Duration>,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            reissue_before: Duration::from_secs(120),
            overlap: Duration::from_secs(60),
            max_ttl: None,
        }
    }
}

impl LeaseOptions {
    /// The defaults: re-issue 2 minutes before the hard end, keep old credentials for 1 minute.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::lease::LeaseOptions;
    /// use std::time::Duration;
    ///
    /// let options = LeaseOptions::new()
    ///     .reissue_before(Duration::from_secs(300))
    ///     .overlap(Duration::from_secs(120))
    ///     .max_ttl(Duration::from_secs(24 * 3600));
    /// assert_eq!(options.get_overlap(), Duration::from_secs(120));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How long before the lease's hard end (its max TTL) to issue new credentials.
    ///
    /// The server does not say a lease's max TTL: skm uses [`LeaseOptions::max_ttl`] when given, and
    /// otherwise learns the end from the first renewal the server grants less than asked, which happens
    /// between one third and one lease duration before the end; a `reissue_before` longer than that is then
    /// shortened to "now". New credentials are never replaced in the first half of their life, however long
    /// the lead, so that a lead longer than the lease cannot make the keeper re-issue in a loop.
    pub fn reissue_before(mut self, lead: Duration) -> Self {
        self.reissue_before = lead;
        self
    }

    /// How long the previous credentials stay valid after new ones are published, so that connections
    /// opened with them can finish. They are revoked after `overlap`, or expire at their own hard end if
    /// that comes first: choose `reissue_before` ≥ `overlap` to get the whole overlap.
    pub fn overlap(mut self, overlap: Duration) -> Self {
        self.overlap = overlap;
        self
    }

    /// The role's max TTL, when known (e.g. the `max_ttl` of a database role), so that the first
    /// re-issue happens exactly `reissue_before` the end rather than when a renewal is first capped.
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = Some(max_ttl);
        self
    }

    /// See [`LeaseOptions::reissue_before`].
    pub fn get_reissue_before(&self) -> Duration {
        self.reissue_before
    }

    /// See [`LeaseOptions::overlap`].
    pub fn get_overlap(&self) -> Duration {
        self.overlap
    }

    /// See [`LeaseOptions::max_ttl`].
    pub fn get_max_ttl(&self) -> Option<Duration> {
        self.max_ttl
    }
}

/// What kind of failure a [`LeaseError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseErrorKind {
    /// The token may not read the path or manage the lease (HTTP 401/403).
    Forbidden,
    /// Nothing at the path (HTTP 404), or the lease is unknown to the server.
    NotFound,
    /// The path answered without a lease (e.g. a KV secret, not a dynamic one).
    NotLeased,
    /// The credentials do not have the shape of the requested type.
    Invalid,
    /// The server is down, sealed or unreachable, after retries.
    Unavailable,
    /// The leases were revoked ([`Leased::revoke`]): no new credentials will come.
    Closed,
    /// Anything else (the server refused the request, e.g. an unknown role: HTTP 400).
    Other,
}

/// A failure to obtain, renew or revoke leased credentials. Names the path and the lease fingerprint,
/// never a lease id or a credential.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct LeaseError {
    kind: LeaseErrorKind,
    path: String,
    detail: String,
    unrevoked: Vec<String>,
}

impl LeaseError {
    pub(crate) fn new(kind: LeaseErrorKind, path: impl Into<String>, detail: impl Into<String>) -> Self {
        LeaseError {
            kind,
            path: path.into(),
            detail: detail.into(),
            unrevoked: Vec::new(),
        }
    }

    /// For a failed [`Leased::revoke`]: the fingerprints of the leases it could not revoke, which the next
    /// call tries again. Empty for other errors.
    pub fn unrevoked(&self) -> &[String] {
        &self.unrevoked
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> LeaseErrorKind {
        self.kind
    }

    /// The credentials path (`database/creds/app`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// A lease as the server granted it. `id` is as secret as a token: never shown.
pub(crate) struct Grant {
    pub id: String,
    pub duration: Duration,
    pub renewable: bool,
    pub data: Value,
}

/// A renewal as the server granted it.
pub(crate) struct Renewal {
    pub duration: Duration,
    pub renewable: bool,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where leases come from: the server calls the keeper makes. Vault implements it.
pub(crate) trait LeaseSource: Send + Sync + 'static {
    /// Reads `path` and returns its lease.
    fn issue<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Grant, LeaseError>>;
    /// `sys/leases/renew` asking for `increment`.
    fn renew<'a>(&'a self, id: &'a str, increment: Duration) -> BoxFuture<'a, Result<Renewal, LeaseError>>;
    /// `sys/leases/revoke`.
    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), LeaseError>>;
    /// Whether trying again soon may succeed.
    fn retryable(&self, e: &LeaseError) -> bool {
        e.kind() == LeaseErrorKind::Unavailable
    }
}

/// Dynamic secrets as a backend's capability: a backend that issues leases returns itself (or a part of
/// itself) from [`Backend::leases`](crate::backend::Backend::leases), and the loader's lease step issues one
/// lease per `#[secret(dynamic = "...")]` field through it. The values stage then adopts each [`Issued`]
/// lease as a [`Leased<T>`].
///
/// The Vault backend offers it (feature `vault`). Lease sources are not a public API yet, so only this crate's
/// backends can build an [`Issued`].
#[async_trait::async_trait]
pub trait Leases: Send + Sync {
    /// Reads the credentials at `path` (a secrets engine's endpoint, such as `database/creds/app`) once and
    /// returns their lease, not yet kept: kept as `options` say once adopted, revoked if dropped unadopted.
    ///
    /// # Errors
    /// As the backend's lease source reports them: [`LeaseErrorKind::Forbidden`], `NotFound`, `NotLeased` (the
    /// path answered without a lease), `Unavailable`, `Other`.
    async fn issue(&self, path: &str, options: LeaseOptions) -> Result<Issued, LeaseError>;
}

/// A short, stable stand-in for a lease id in logs and errors: the lease's path and a hash of the rest
/// (`database/creds/app/#3fa1c2d0`).
pub(crate) fn fingerprint(lease_id: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    lease_id.hash(&mut hasher);
    let hash = hasher.finish();
    let prefix = lease_id.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    format!("{prefix}/#{:08x}", (hash >> 32) as u32)
}

/// Counters of the keeper's work, for monitoring and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseStats {
    /// Successful renewals (of any lease the keeper holds).
    pub renewals: u64,
    /// Credentials issued after the first.
    pub reissues: u64,
    /// Leases revoked by the keeper (retired ones after their overlap, and all at [`Leased::revoke`]).
    pub revocations: u64,
    /// Failed server calls (each retried).
    pub failures: u64,
}

/// Credentials from a dynamic-secrets engine, renewed and re-issued in the background for as long as a
/// clone of this value lives.
///
/// `T` is deserialized from the lease's `data` (for a database role: `username` and `password`; use
/// `SecretString` for the password). See the [module documentation](self) for the lease's life.
///
/// Clones share the leases; each clone has its own [`Leased::changed`] position. `Debug` shows the path and
/// the lease fingerprint, never the credentials or the lease id.
///
/// # Drop
/// Call [`Leased::revoke`] before the program ends. When the last clone is dropped with leases still held,
/// they are revoked before the drop returns, waiting at most 5 seconds: on a multi-thread runtime in place
/// (`block_in_place`), outside a runtime on a thread of its own. On a current-thread runtime the revocation is
/// a task; if the runtime ends before it ran (a `#[tokio::main(flavor = "current_thread")]` that returns or
/// panics), the runtime's shutdown finishes it on a thread of its own, within the same bound. Leases that
/// could not be revoked are named (by fingerprint) in a warning on the `skm` tracing target **and** in one
/// line on stderr, since a program may have no tracing subscriber: they stay valid until their lease ends.
pub struct Leased<T> {
    rx: watch::Receiver<Arc<T>>,
    keeper: Arc<Keeper>,
}

impl<T> Clone for Leased<T> {
    fn clone(&self) -> Self {
        Leased {
            rx: self.rx.clone(),
            keeper: self.keeper.clone(),
        }
    }
}

impl<T> fmt::Debug for Leased<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lease = self
            .keeper
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .active
            .as_ref()
            .map(|h| h.fingerprint.clone());
        f.debug_struct("Leased")
            .field("path", &self.keeper.path)
            .field("lease", &lease)
            .finish_non_exhaustive()
    }
}

impl<T> Leased<T> {
    /// The latest credentials.
    pub fn current(&self) -> Arc<T> {
        self.rx.borrow().clone()
    }

    /// Waits until credentials newer than the last ones this clone saw (through [`Leased::current`] after
    /// a `changed`, or at creation) are published, and marks them seen.
    ///
    /// # Errors
    /// [`LeaseErrorKind::Closed`] once the leases were revoked: no new credentials will come.
    pub async fn changed(&mut self) -> Result<(), LeaseError> {
        self.rx.changed().await.map_err(|_| self.closed())?;
        self.rx.borrow_and_update();
        Ok(())
    }

    fn closed(&self) -> LeaseError {
        LeaseError::new(
            LeaseErrorKind::Closed,
            &self.keeper.path,
            "the leases were revoked; no new credentials will come",
        )
    }

    /// The credentials path (`database/creds/app`).
    pub fn path(&self) -> &str {
        &self.keeper.path
    }

    /// The current lease's fingerprint (the path and a short hash of the id), for logs.
    pub fn fingerprint(&self) -> Option<String> {
        let state = self.keeper.state.lock().unwrap_or_else(|p| p.into_inner());
        state.active.as_ref().map(|h| h.fingerprint.clone())
    }

    /// How long the current lease has left unless renewed, `None` after [`Leased::revoke`].
    pub fn expires_in(&self) -> Option<Duration> {
        let state = self.keeper.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .active
            .as_ref()
            .map(|h| h.expires.saturating_duration_since(Instant::now()))
    }

    /// What the keeper has done so far.
    pub fn stats(&self) -> LeaseStats {
        let c = &self.keeper.counters;
        LeaseStats {
            renewals: c.renewals.load(Ordering::SeqCst),
            reissues: c.reissues.load(Ordering::SeqCst),
            revocations: c.revocations.load(Ordering::SeqCst),
            failures: c.failures.load(Ordering::SeqCst),
        }
    }

    /// Stops the keeper and revokes every lease it holds (the current one and those still in their
    /// overlap), for a clean shutdown. Once every lease is revoked, later calls, also from clones, do nothing.
    ///
    /// # Errors
    /// When a revocation fails (the others are still attempted), the error has the kind of the first failure
    /// and names the leases left by fingerprint ([`LeaseError::unrevoked`]); they stay held, so calling
    /// `revoke` again (once the server is back, or the token may revoke) retries them. Not retried, they are
    /// revoked again at drop, or expire at the end of their lease.
    pub async fn revoke(&self) -> Result<(), LeaseError> {
        self.keeper.revoke_all().await
    }
}

/// Reads `path` once and starts keeping the lease: the constructor backends call.
pub(crate) async fn start<T>(
    source: Arc<dyn LeaseSource>,
    path: &str,
    options: LeaseOptions,
) -> Result<Leased<T>, LeaseError>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let issued = Instant::now();
    let grant = source.issue(path).await?;
    let value = match decode::<T>(path, grant.data.clone()) {
        Ok(v) => v,
        Err(e) => {
            // Do not leave a database user behind for credentials nobody can use.
            let _ = source.revoke(&grant.id).await;
            return Err(e);
        }
    };
    Ok(begin(source, path, options, &grant, issued, value))
}

/// Credentials a [`Leases`] backend issued for the loader's lease step, not yet handed to a typed
/// [`Leased<T>`] (the values stage does that). Dropped unadopted (another field failed the load, or the data
/// does not fit `T`), its lease is revoked before the drop returns where possible, as a [`Leased`]'s is.
///
/// `Debug` shows the path and the lease's fingerprint, never the lease id or the credentials.
pub struct Issued {
    source: Arc<dyn LeaseSource>,
    path: String,
    grant: Option<Grant>,
    issued: Instant,
    options: LeaseOptions,
    /// Who issued it, for the field's provenance (the backend's name).
    issuer: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("path", &self.path)
            .field("lease", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// Reads `path` once.
    pub(crate) async fn issue(
        source: Arc<dyn LeaseSource>,
        path: &str,
        options: LeaseOptions,
    ) -> Result<Issued, LeaseError> {
        let issued = Instant::now();
        let grant = source.issue(path).await?;
        Ok(Issued {
            source,
            path: path.to_string(),
            grant: Some(grant),
            issued,
            options,
            issuer: String::new(),
        })
    }

    /// Names who issued the lease (the backend's name), for the field's provenance.
    pub(crate) fn described_as(mut self, issuer: String) -> Self {
        self.issuer = issuer;
        self
    }

    /// Who issued the lease, as [`Issued::described_as`] set it.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The lease's fingerprint.
    pub(crate) fn fingerprint(&self) -> String {
        self.grant.as_ref().map(|g| fingerprint(&g.id)).unwrap_or_default()
    }

    /// Decodes the credentials as `T` and starts keeping the lease.
    pub(crate) fn adopt<T>(mut self) -> Result<Leased<T>, LeaseError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let grant = self.grant.as_ref().expect("adopted once");
        // On a mismatch the grant stays in `self`, whose drop revokes it.
        let value = decode::<T>(&self.path, grant.data.clone())?;
        let grant = self.grant.take().expect("adopted once");
        Ok(begin(
            self.source.clone(),
            &self.path,
            self.options,
            &grant,
            self.issued,
            value,
        ))
    }
}

impl Drop for Issued {
    fn drop(&mut self) {
        let Some(grant) = self.grant.take() else {
            return;
        };
        // As a `Leased` is: revoked before the drop returns where possible, named on stderr where not.
        let held = Held::new(&grant, Instant::now(), None);
        Orphans::new(
            self.source.clone(),
            &self.path,
            Arc::new(Counters::default()),
            vec![held],
        )
        .settle();
    }
}

/// `data` as a `T`. A mismatch names the keys present, never a value (serde's messages may quote one).
fn decode<T: DeserializeOwned>(path: &str, data: Value) -> Result<T, LeaseError> {
    let keys: Vec<String> = match &data {
        Value::Object(map) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    serde_json::from_value(data).map_err(|_| {
        LeaseError::new(
            LeaseErrorKind::Invalid,
            path,
            format!(
                "the credentials do not fit `{}` (the lease's data has the keys: {})",
                std::any::type_name::<T>(),
                if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                }
            ),
        )
    })
}
