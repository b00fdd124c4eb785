//! Leased credentials (Vault / OpenBao dynamic secrets) kept alive in the background (feature `vault`).
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
//! - on [`Leased::revoke`] revokes every lease it holds; when the last clone is dropped it does the same,
//!   best effort, on the runtime it runs on.
//!
//! Lease ids never appear in logs, errors or `Debug` output; a short fingerprint stands for them.
//!
//! # Example
//! ```no_run
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
//! ```

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

/// Renew when this share of the lease's duration has passed.
const RENEW_AT: f64 = 2.0 / 3.0;
/// The first retry delay after a failed renewal or re-issue; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// The shortest sleep between two maintenance steps, whatever the server says.
const MIN_STEP: Duration = Duration::from_millis(50);
/// Vault reports a grant in whole seconds and may round a grant capped by the max TTL *up* (measured on
/// OpenBao 2.x: 1.35 s left was reported as 2 s, 0.67 s as 1 s). Renewals therefore ask this much more than
/// the lease's duration, so that a capped grant still shows as "less than asked", and re-issue as if a
/// learnt end came this much earlier than reported. The old lease's overlap still runs to the reported end:
/// the server ends it at its true end anyway.
const GRANT_ROUNDING: Duration = Duration::from_secs(1);

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
}

impl LeaseError {
    pub(crate) fn new(kind: LeaseErrorKind, path: impl Into<String>, detail: impl Into<String>) -> Self {
        LeaseError {
            kind,
            path: path.into(),
            detail: detail.into(),
        }
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

#[derive(Default)]
struct Counters {
    renewals: AtomicU64,
    reissues: AtomicU64,
    revocations: AtomicU64,
    failures: AtomicU64,
}

/// One lease the keeper holds.
struct Held {
    id: String,
    fingerprint: String,
    /// The duration first granted; each renewal asks for it plus [`GRANT_ROUNDING`].
    duration: Duration,
    renewable: bool,
    /// When the lease runs out unless renewed.
    expires: Instant,
    /// When the next renewal is due (2/3 into the last grant).
    renew_at: Instant,
    /// The end no renewal can pass (max TTL), once known.
    hard_end: Option<Instant>,
    /// For a retired lease: when to revoke it.
    revoke_at: Option<Instant>,
    /// Consecutive failures, for the backoff.
    failures: u32,
}

impl Held {
    fn new(grant: &Grant, issued: Instant, max_ttl: Option<Duration>) -> Self {
        if grant.duration.is_zero() {
            // A lease of 0 s never expires: nothing to renew or replace.
            let never = issued + Duration::from_secs(100 * 365 * 24 * 3600);
            return Held {
                id: grant.id.clone(),
                fingerprint: fingerprint(&grant.id),
                duration: grant.duration,
                renewable: false,
                expires: never,
                renew_at: never,
                hard_end: None,
                revoke_at: None,
                failures: 0,
            };
        }
        let expires = issued + grant.duration;
        let hard_end = if grant.renewable {
            max_ttl.map(|m| issued + m)
        } else {
            Some(expires)
        };
        Held {
            id: grant.id.clone(),
            fingerprint: fingerprint(&grant.id),
            duration: grant.duration,
            renewable: grant.renewable,
            expires,
            renew_at: issued + grant.duration.mul_f64(RENEW_AT),
            hard_end,
            revoke_at: None,
            failures: 0,
        }
    }

    /// Whether renewing can still extend the lease (and, for a retired one, is needed before its revocation).
    fn wants_renewal(&self) -> bool {
        let capped = self.hard_end.is_some_and(|end| end <= self.expires);
        self.renewable && !capped && self.revoke_at.is_none_or(|revoke| revoke > self.expires)
    }

    fn backoff(&self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(8);
        (FIRST_RETRY * 2u32.pow(exp)).min(MAX_RETRY)
    }
}

/// The keeper's state, shared with the handle so that [`Leased::revoke`] can revoke what it holds.
struct State {
    active: Option<Held>,
    retired: Vec<Held>,
    /// When the active lease must be replaced (`reissue_before` its hard end).
    reissue_at: Option<Instant>,
    reissue_failures: u32,
    /// [`LeaseOptions::reissue_before`].
    lead: Duration,
}

/// The part of [`Leased`] shared by its clones: stops the keeper and revokes the leases when dropped.
struct Keeper {
    path: String,
    source: Arc<dyn LeaseSource>,
    state: Arc<Mutex<State>>,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Serializes [`Leased::revoke`] calls.
    revoking: tokio::sync::Mutex<bool>,
}

/// Credentials from a dynamic-secrets engine, renewed and re-issued in the background for as long as a
/// clone of this value lives.
///
/// `T` is deserialized from the lease's `data` (for a database role: `username` and `password`; use
/// `SecretString` for the password). See the [module documentation](self) for the lease's life.
///
/// Clones share the leases; each clone has its own [`Leased::changed`] position. `Debug` shows the path and
/// the lease fingerprint, never the credentials or the lease id.
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
    /// overlap), for a clean shutdown. Later calls, also from clones, do nothing.
    ///
    /// # Errors
    /// The first revocation that failed; the others were still attempted. A lease that failed to be revoked
    /// expires at the end of its duration.
    pub async fn revoke(&self) -> Result<(), LeaseError> {
        self.keeper.revoke_all().await
    }
}

impl Keeper {
    async fn revoke_all(&self) -> Result<(), LeaseError> {
        let mut done = self.revoking.lock().await;
        if *done {
            return Ok(());
        }
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            // It stops at its next await point without dropping a lease it was issuing.
            let _ = task.await;
        }
        *done = true;
        let leases = take_all(&self.state);
        revoke_leases(&*self.source, &self.path, leases, &self.counters).await
    }
}

fn take_all(state: &Mutex<State>) -> Vec<Held> {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let mut leases: Vec<Held> = state.active.take().into_iter().collect();
    leases.append(&mut state.retired);
    leases
}

async fn revoke_leases(
    source: &dyn LeaseSource,
    path: &str,
    leases: Vec<Held>,
    counters: &Counters,
) -> Result<(), LeaseError> {
    let mut first_error = None;
    for lease in leases {
        match source.revoke(&lease.id).await {
            Ok(()) => {
                counters.revocations.fetch_add(1, Ordering::SeqCst);
                tracing::info!(target: "skm::audit", path = %path, lease = %lease.fingerprint, "lease revoked");
            }
            Err(e) => {
                counters.failures.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(target: "skm", path = %path, lease = %lease.fingerprint, error = %e,
                    "revoking the lease failed");
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let task = self.task.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        let leases = take_all(&self.state);
        if leases.is_empty() {
            return;
        }
        // Best effort: revoke on the runtime, after the keeper stopped (so that it cannot add a lease).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(target: "skm", path = %self.path,
                "leased credentials dropped outside a tokio runtime: they expire at the end of their lease");
            return;
        };
        let (source, path, counters, state) = (
            self.source.clone(),
            self.path.clone(),
            self.counters.clone(),
            self.state.clone(),
        );
        runtime.spawn(async move {
            if let Some(task) = task {
                let _ = task.await;
            }
            let mut leases = leases;
            leases.extend(take_all(&state));
            let _ = revoke_leases(&*source, &path, leases, &counters).await;
        });
    }
}

/// When to replace a lease issued at `issued` that cannot live past `end`: `lead` before the end, but never
/// in the first half of its life, so that a lead longer than the lease itself cannot re-issue in a loop.
fn reissue_due(issued: Instant, end: Instant, lead: Duration) -> Instant {
    let life = end.saturating_duration_since(issued);
    end.checked_sub(lead).unwrap_or(issued).max(issued + life / 2)
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

/// Credentials issued by the loader's lease step, not yet handed to a typed [`Leased<T>`] (the values stage
/// does that with [`Issued::adopt`]). Dropped unadopted (another field failed the load, or the data does not
/// fit `T`), its lease is revoked in the background, best effort.
pub(crate) struct Issued {
    source: Arc<dyn LeaseSource>,
    path: String,
    grant: Option<Grant>,
    issued: Instant,
    options: LeaseOptions,
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
        })
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
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (source, path) = (self.source.clone(), self.path.clone());
        let counters = Counters::default();
        runtime.spawn(async move {
            let held = Held::new(&grant, Instant::now(), None);
            let _ = revoke_leases(&*source, &path, vec![held], &counters).await;
        });
    }
}

/// Starts the keeper for a lease already read and decoded.
fn begin<T>(
    source: Arc<dyn LeaseSource>,
    path: &str,
    options: LeaseOptions,
    grant: &Grant,
    issued: Instant,
    value: T,
) -> Leased<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let held = Held::new(grant, issued, options.max_ttl);
    tracing::info!(target: "skm::audit", path = %path, lease = %held.fingerprint,
        ttl_s = grant.duration.as_secs(), renewable = grant.renewable, "lease issued");
    let mut state = State {
        active: None,
        retired: Vec::new(),
        reissue_at: None,
        reissue_failures: 0,
        lead: options.reissue_before,
    };
    state.reissue_at = held
        .hard_end
        .map(|end| reissue_due(issued, end, options.reissue_before));
    state.active = Some(held);
    let state = Arc::new(Mutex::new(state));
    let counters = Arc::new(Counters::default());
    let (tx, rx) = watch::channel(Arc::new(value));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(keep::<T>(
        source.clone(),
        path.to_string(),
        options,
        state.clone(),
        counters.clone(),
        tx,
        stop_rx,
    ));
    let keeper = Arc::new(Keeper {
        path: path.to_string(),
        source,
        state,
        counters,
        stop,
        task: Mutex::new(Some(task)),
        revoking: tokio::sync::Mutex::new(false),
    });
    Leased { rx, keeper }
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

/// What the keeper does next.
enum Step {
    /// Renew the active lease (`None`) or a retired one (its index).
    Renew(Option<usize>),
    Reissue,
    /// Revoke the retired lease at this index.
    Revoke(usize),
}

fn next_step(state: &State) -> Option<(Instant, Step)> {
    let mut best: Option<(Instant, Step)> = None;
    let mut consider = |at: Instant, step: Step| {
        if best.as_ref().is_none_or(|(b, _)| at < *b) {
            best = Some((at, step));
        }
    };
    if let Some(active) = &state.active {
        if let Some(at) = state.reissue_at {
            consider(at, Step::Reissue);
        }
        // A renewal due after the re-issue is pointless: the lease is retired by then.
        if active.wants_renewal() && state.reissue_at.is_none_or(|r| active.renew_at < r) {
            consider(active.renew_at, Step::Renew(None));
        }
        if !active.wants_renewal() && state.reissue_at.is_none() {
            // Neither renewable nor with a known end: replace it before it expires.
            consider(active.expires, Step::Reissue);
        }
    }
    for (i, held) in state.retired.iter().enumerate() {
        if let Some(revoke) = held.revoke_at {
            consider(revoke, Step::Revoke(i));
        }
        if held.wants_renewal() {
            consider(held.renew_at, Step::Renew(Some(i)));
        }
    }
    best
}

#[allow(clippy::too_many_arguments)]
async fn keep<T>(
    source: Arc<dyn LeaseSource>,
    path: String,
    options: LeaseOptions,
    state: Arc<Mutex<State>>,
    counters: Arc<Counters>,
    tx: watch::Sender<Arc<T>>,
    mut stop: watch::Receiver<bool>,
) where
    T: DeserializeOwned + Send + Sync + 'static,
{
    loop {
        let next = next_step(&state.lock().unwrap_or_else(|p| p.into_inner()));
        let Some((at, step)) = next else {
            // Nothing to do until stopped.
            let _ = stop.changed().await;
            return;
        };
        let at = at.max(Instant::now() + MIN_STEP);
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        match step {
            Step::Renew(which) => renew(&*source, &state, &counters, which).await,
            Step::Revoke(i) => {
                let lease = {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    (i < s.retired.len()).then(|| s.retired.remove(i))
                };
                if let Some(lease) = lease {
                    let fp = lease.fingerprint.clone();
                    if revoke_leases(&*source, &path, vec![lease], &counters).await.is_ok() {
                        tracing::debug!(target: "skm", lease = %fp, "the overlap ended");
                    }
                }
            }
            Step::Reissue => {
                // Not cancelled by `stop`: a lease issued here is recorded before the task looks at `stop`
                // again, so that revoke() finds it.
                reissue(&*source, &path, &options, &state, &counters, &tx).await;
            }
        }
    }
}

async fn renew(source: &dyn LeaseSource, state: &Mutex<State>, counters: &Counters, which: Option<usize>) {
    let (id, asked) = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        let held = match which {
            None => s.active.as_ref(),
            Some(i) => s.retired.get(i),
        };
        let Some(held) = held else { return };
        (
            held.id.clone(),
            held.duration.max(Duration::from_secs(1)) + GRANT_ROUNDING,
        )
    };
    let sent = Instant::now();
    let result = source.renew(&id, asked).await;
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let State {
        active,
        retired,
        reissue_at,
        lead,
        ..
    } = &mut *s;
    let is_active = which.is_none();
    let held = match which {
        None => active.as_mut(),
        Some(i) => retired.get_mut(i),
    };
    // The lease may have been replaced meanwhile.
    let Some(held) = held.filter(|h| h.id == id) else {
        return;
    };
    match result {
        Ok(renewal) => {
            counters.renewals.fetch_add(1, Ordering::SeqCst);
            held.failures = 0;
            held.expires = sent + renewal.duration;
            held.renew_at = sent + renewal.duration.mul_f64(RENEW_AT);
            held.renewable = renewal.renewable;
            // Less than asked: the max TTL caps the lease, which now ends at `expires` whatever we do.
            let learnt = renewal.duration < asked || !renewal.renewable;
            if learnt {
                held.hard_end = Some(held.expires);
            }
            tracing::info!(target: "skm::audit", lease = %held.fingerprint, granted_s = renewal.duration.as_secs_f64(),
                capped = renewal.duration < asked, "lease renewed");
            if is_active {
                if let Some(end) = held.hard_end {
                    // A learnt end may have been rounded up: re-issue as if it came a second earlier.
                    // Learnt late, the end may be nearer than the lead: then re-issue now.
                    let margin = if learnt { GRANT_ROUNDING } else { Duration::ZERO };
                    let due = end.checked_sub(*lead + margin).unwrap_or(sent).max(sent);
                    *reissue_at = Some(reissue_at.map_or(due, |r| r.min(due)));
                }
            }
        }
        Err(e) => {
            counters.failures.fetch_add(1, Ordering::SeqCst);
            held.failures = held.failures.saturating_add(1);
            tracing::warn!(target: "skm", lease = %held.fingerprint, error = %e, "renewing the lease failed");
            if source.retryable(&e) && Instant::now() + held.backoff() < held.expires {
                held.renew_at = Instant::now() + held.backoff();
            } else if is_active {
                // The lease is gone or cannot be renewed: replace it now.
                held.hard_end = Some(held.expires.min(Instant::now()));
                *reissue_at = Some(Instant::now());
            } else {
                // A retired lease: let it run out.
                held.renewable = false;
            }
        }
    }
}

async fn reissue<T>(
    source: &dyn LeaseSource,
    path: &str,
    options: &LeaseOptions,
    state: &Mutex<State>,
    counters: &Counters,
    tx: &watch::Sender<Arc<T>>,
) where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let issued = Instant::now();
    let result = match source.issue(path).await {
        Ok(grant) => match decode::<T>(path, grant.data.clone()) {
            Ok(value) => Ok((grant, value)),
            Err(e) => {
                let _ = source.revoke(&grant.id).await;
                Err(e)
            }
        },
        Err(e) => Err(e),
    };
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok((grant, value)) => {
            let held = Held::new(&grant, issued, options.max_ttl);
            counters.reissues.fetch_add(1, Ordering::SeqCst);
            let now = Instant::now();
            if let Some(mut old) = s.active.take() {
                // Old connections drain during the overlap; past its own end the server revokes it anyway.
                let end = old.hard_end.unwrap_or(old.expires).min(old.expires.max(now));
                old.revoke_at = Some((now + options.overlap).min(end.max(now)));
                tracing::info!(target: "skm::audit", old = %old.fingerprint, new = %held.fingerprint,
                    overlap_s = old.revoke_at.map(|r| r.saturating_duration_since(now).as_secs_f64()),
                    "lease re-issued");
                s.retired.push(old);
            }
            s.reissue_at = held
                .hard_end
                .map(|end| reissue_due(issued, end, options.reissue_before));
            s.reissue_failures = 0;
            s.active = Some(held);
            drop(s);
            tx.send_replace(Arc::new(value));
        }
        Err(e) => {
            counters.failures.fetch_add(1, Ordering::SeqCst);
            s.reissue_failures = s.reissue_failures.saturating_add(1);
            let exp = s.reissue_failures.saturating_sub(1).min(8);
            let delay = (FIRST_RETRY * 2u32.pow(exp)).min(MAX_RETRY);
            tracing::warn!(target: "skm", path = %path, error = %e, retry_in_s = delay.as_secs_f64(),
                "issuing new leased credentials failed");
            s.reissue_at = Some(Instant::now() + delay);
        }
    }
}

/// The loader's lease step: issues one lease per `#[secret(dynamic = "...")]` field through the loader's
/// Vault backend. Each entry is the issued lease, or the field's error for the one load report.
pub(crate) async fn issue_fields(
    backend: Option<&Arc<dyn crate::backend::Backend>>,
    fields: &[crate::plan::LeasedField],
    options: LeaseOptions,
) -> std::collections::HashMap<String, Result<Issued, crate::error::FieldError>> {
    use crate::backend::vault::VaultBackend;
    use crate::error::{Attempt, AttemptOutcome, FieldError, FieldProblem};

    let mut out = std::collections::HashMap::new();
    let vault = backend
        .and_then(|b| b.as_any())
        .and_then(|a| a.downcast_ref::<VaultBackend>());
    for field in fields {
        let path = field.spec.path;
        let fail = |kind: crate::backend::FailureKind, reason: FieldProblem, detail: String| FieldError {
            field: field.id.clone(),
            path: Some(path.to_string()),
            key: None,
            env: None,
            type_name: field.spec.type_name,
            reason,
            attempts: vec![Attempt {
                source: format!("dynamic secret {path}"),
                outcome: AttemptOutcome::Failed { kind, detail },
            }],
        };
        let Some(vault) = vault else {
            let have = backend.map_or_else(|| "no backend".to_string(), |b| format!("the backend {}", b.name()));
            let why = format!(
                "`dynamic = \"{path}\"` needs a Vault / OpenBao backend to issue its lease, and the loader has {have}: \
                 set `SKM_BACKEND=vault` (with `VAULT_ADDR`, `VAULT_TOKEN`) or `Loader::backend(VaultBackend)`"
            );
            let kind = crate::backend::FailureKind::Unsupported;
            out.insert(
                field.id.clone(),
                Err(fail(kind, FieldProblem::Invalid(why.clone()), why)),
            );
            continue;
        };
        let result = vault.issue_for_field(path, options).await.map_err(|e| {
            use crate::backend::FailureKind as F;
            let kind = match e.kind() {
                LeaseErrorKind::Forbidden => F::Forbidden,
                LeaseErrorKind::NotFound => F::NotFound,
                LeaseErrorKind::Unavailable => F::Unavailable,
                LeaseErrorKind::NotLeased | LeaseErrorKind::Invalid => F::Invalid,
                _ => F::Other,
            };
            tracing::info!(target: "skm::audit", field = %field.id, path = %path, error = %e, "lease refused");
            fail(kind, FieldProblem::Backend(kind), e.to_string())
        });
        out.insert(field.id.clone(), result);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_keeps_the_path_and_hides_the_id() {
        let id = "database/creds/app/Xk2Pq9ZsecretpartAAAA";
        let fp = fingerprint(id);
        assert!(fp.starts_with("database/creds/app/#"), "{fp}");
        assert!(!fp.contains("Xk2Pq9Z"), "{fp}");
        assert_eq!(fp.len(), "database/creds/app/#".len() + 8);
        assert_eq!(fp, fingerprint(id), "stable");
        assert_ne!(fp, fingerprint("database/creds/app/other"));
    }

    #[test]
    fn a_lead_longer_than_the_lease_waits_for_half_its_life() {
        let t = Instant::now();
        let end = t + Duration::from_secs(60);
        assert_eq!(
            reissue_due(t, end, Duration::from_secs(10)),
            t + Duration::from_secs(50)
        );
        assert_eq!(
            reissue_due(t, end, Duration::from_secs(120)),
            t + Duration::from_secs(30)
        );
        assert_eq!(
            reissue_due(t, end, Duration::from_secs(30)),
            t + Duration::from_secs(30)
        );
    }

    #[test]
    fn a_lease_without_expiry_is_neither_renewed_nor_replaced_soon() {
        let grant = Grant {
            id: "kv/creds/x/abc".into(),
            duration: Duration::ZERO,
            renewable: false,
            data: Value::Null,
        };
        let now = Instant::now();
        let state = State {
            active: Some(Held::new(&grant, now, None)),
            retired: Vec::new(),
            reissue_at: None,
            reissue_failures: 0,
            lead: Duration::from_secs(120),
        };
        let (at, _) = next_step(&state).expect("a far step");
        assert!(at > now + Duration::from_secs(365 * 24 * 3600));
    }

    #[test]
    fn a_decode_failure_names_keys_not_values() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Creds {
            username: String,
            port: u16,
        }
        let data = serde_json::json!({"username": "v-app-SENTINEL", "port": "SENTINEL-VALUE"});
        let e = decode::<Creds>("database/creds/app", data).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.kind(), LeaseErrorKind::Invalid);
        assert!(!text.contains("SENTINEL"), "{text}");
        assert!(
            text.contains("port, username") || text.contains("username, port"),
            "{text}"
        );
    }
}
