//! Hot reload: a handle whose values follow rotation without a restart.
//!
//! [`Loader::watch`] loads once, then refreshes in a background task every TTL (default 5 minutes). The
//! first load and every refresh run the loader's one pipeline entry: the same duplicate check, the same
//! [`Loader::deadline`] on every backend call, the same `skm::audit` events.
//! Where the backend can tell the current version cheaply ([`Backend::current_versions`]), a tick asks for
//! versions first and refetches only the paths that changed; otherwise it refetches every path and keeps
//! the new values only if they differ.
//!
//! Readers never block: [`Watch::get`] is an atomic pointer load ([`arc_swap`]). A failed refresh keeps the
//! last good values and logs a warning; after [`WatchOptions::max_staleness`] without a successful refresh,
//! [`Watch::get`] returns [`Stale`] so that a service can fail its health check instead of serving secrets
//! it can no longer confirm. Dropping the handle stops the task.
//!
//! [`Watch::refresh_now`] runs one refresh at once (after a rotation, say) and reports which fields changed,
//! by name only: the task compares keyed in-memory fingerprints of each field's value and origin, never
//! values, and never shows a fingerprint. [`Watch::request_refresh`] only asks for one without waiting.
//!
//! [`Backend::current_versions`]: crate::backend::Backend::current_versions

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::error::Error;
use crate::loader::{Loader, Prior};
use crate::plan::ResolvedField;
use crate::report::{Loaded, Provenance, Resolution, Resolved};
use crate::spec::StructSpec;
use crate::values::{self, Secrets};

/// How a [`Watch`] refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Time between refreshes. Default: 5 minutes.
    pub ttl: Duration,
    /// After this long without a successful refresh, [`Watch::get`] returns [`Stale`]. Default: `None`
    /// (serve the last good values indefinitely, with a warning per failed refresh).
    pub max_staleness: Option<Duration>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            ttl: Duration::from_secs(300),
            max_staleness: None,
        }
    }
}

impl WatchOptions {
    /// Options with refresh interval `ttl`.
    pub fn ttl(ttl: Duration) -> Self {
        WatchOptions { ttl, ..Self::default() }
    }

    /// Sets the maximum staleness.
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = Some(max);
        self
    }
}

/// [`Watch::get`] after the maximum staleness passed without a successful refresh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secrets are stale: no successful refresh for {since:?} (max {max:?}); last error: {last_error}")]
pub struct Stale {
    /// Time since the last successful refresh.
    pub since: Duration,
    /// The configured maximum.
    pub max: Duration,
    /// Why the last refresh failed (never a value).
    pub last_error: String,
}

/// What one refresh asked for with [`Watch::refresh_now`] found. Never a value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RefreshReport {
    /// The fields (dotted ids, in declaration order) whose value or origin (layer, location, version)
    /// changed; empty when nothing did.
    pub changed: Vec<String>,
    /// Requests the refresh sent to the backend.
    pub paths_refetched: usize,
}

/// A refresh asked for with [`Watch::refresh_now`] failed; the last good values are kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret refresh failed; the last good values are kept: {reason}")]
pub struct RefreshFailed {
    /// Why (the load's report, never a value).
    pub reason: String,
}

type Answer = oneshot::Sender<Result<RefreshReport, RefreshFailed>>;

/// Counters of a [`Watch`], for tests and health endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchStats {
    /// Refresh ticks run.
    pub ticks: u64,
    /// Ticks that failed and kept the old values.
    pub failures: u64,
    /// Times the value changed.
    pub changes: u64,
    /// Paths refetched over all ticks.
    pub paths_refetched: u64,
    /// The last failure, if the last tick failed.
    pub last_error: Option<String>,
}

struct Shared<T> {
    value: ArcSwap<T>,
    provenance: ArcSwap<Provenance>,
    last_success: ArcSwap<Instant>,
    stats: Mutex<WatchStats>,
    ticks: AtomicU64,
}

/// A hot-reloading handle on a [`Secrets`] struct. See the [module docs](self).
pub struct Watch<T> {
    shared: Arc<Shared<T>>,
    changes: watch::Receiver<u64>,
    wake: Arc<Notify>,
    asks: mpsc::UnboundedSender<Answer>,
    options: WatchOptions,
    task: tokio::task::JoinHandle<()>,
}

impl<T> fmt::Debug for Watch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("options", &self.options)
            .field("stats", &*self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()))
            .finish_non_exhaustive()
    }
}

impl<T> Drop for Watch<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: Send + Sync + 'static> Watch<T> {
    /// The current values, unless they are older than the maximum staleness. Never blocks.
    ///
    /// # Errors
    /// [`Stale`] when no refresh succeeded within [`WatchOptions::max_staleness`].
    pub fn get(&self) -> Result<Arc<T>, Stale> {
        if let Some(max) = self.options.max_staleness {
            let since = self.shared.last_success.load().elapsed();
            if since > max {
                let last_error = self
                    .shared
                    .stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_error
                    .clone()
                    .unwrap_or_default();
                return Err(Stale { since, max, last_error });
            }
        }
        Ok(self.shared.value.load_full())
    }

    /// The last good values, however old. Never blocks.
    pub fn latest(&self) -> Arc<T> {
        self.shared.value.load_full()
    }

    /// Runs `f` on the current values without cloning the `Arc` (the cheapest read).
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.shared.value.load())
    }

    /// Where the current values came from.
    pub fn provenance(&self) -> Arc<Provenance> {
        self.shared.provenance.load_full()
    }

    /// Waits until the values change.
    ///
    /// # Errors
    /// The refresh task ended (it only ends when the handle is dropped or the runtime shuts down).
    pub async fn changed(&mut self) -> Result<(), Error> {
        self.changes
            .changed()
            .await
            .map_err(|_| Error::config("the refresh task has stopped".into()))
    }

    /// Runs one refresh now instead of at the next TTL and returns what changed (field names, never values).
    /// Concurrent calls may share one refresh. The refresh runs under the loader's deadline.
    ///
    /// # Errors
    /// [`RefreshFailed`] when the refresh failed (the last good values are kept, as at a TTL), or the refresh
    /// task has stopped.
    ///
    /// # Example
    /// ```
    /// # use skm_runtime::{Loader, WatchOptions};
    /// # async fn demo<T: skm_runtime::Secrets + Send + Sync + 'static>(loader: Loader) -> Result<(), Box<dyn std::error::Error>> {
    /// let watch = loader.watch::<T>(WatchOptions::default()).await?;
    /// // ... after a rotation:
    /// let report = watch.refresh_now().await?;
    /// for field in &report.changed {
    ///     println!("{field} changed");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn refresh_now(&self) -> Result<RefreshReport, RefreshFailed> {
        let (answer, answered) = oneshot::channel();
        let stopped = || RefreshFailed {
            reason: "the refresh task has stopped".into(),
        };
        self.asks.send(answer).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    /// Asks for a refresh now instead of at the next TTL, without waiting for it (e.g. from a signal
    /// handler's task); [`Watch::changed`] tells when values change.
    pub fn request_refresh(&self) {
        self.wake.notify_one();
    }

    /// Counters and the last error.
    pub fn stats(&self) -> WatchStats {
        self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until at least `n` refresh ticks have run since the handle was created (for tests and probes).
    pub async fn wait_ticks(&self, n: u64) {
        while self.shared.ticks.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Loader {
    /// Loads `T` and keeps it fresh in a background task. Needs a Tokio runtime with timers.
    ///
    /// The first load and every refresh run the same pipeline as [`Loader::load`]: the same duplicate
    /// check, [`Loader::deadline`] on every backend call, and the same `skm::audit` events.
    ///
    /// A struct with leased fields (`#[secret(dynamic = "...")]`) is refused before anything is read: a
    /// `Leased` field renews and re-issues its own credentials, so it belongs in a struct loaded once with
    /// [`Loader::load`].
    ///
    /// # Errors
    /// As [`Loader::load`], for the initial load; [`Error::Config`] for a struct with leased fields.
    pub async fn watch<T: Secrets + Send + Sync + 'static>(&self, options: WatchOptions) -> Result<Watch<T>, Error> {
        refuse_leased(T::spec())?;
        let fields = self.fields::<T>()?;
        let pass = self.run(&fields, None).await?;
        let resolved = pass.resolved.expect("a first pass always resolves");
        let keys = RandomState::new();
        let fingerprints = fingerprints(&resolved, &keys);
        let loaded: Loaded<T> = values::build(&fields, resolved, Default::default())?;
        let shared = Arc::new(Shared {
            value: ArcSwap::from_pointee(loaded.value),
            provenance: ArcSwap::from_pointee(loaded.provenance),
            last_success: ArcSwap::from_pointee(Instant::now()),
            stats: Mutex::new(WatchStats::default()),
            ticks: AtomicU64::new(0),
        });
        let (tx, rx) = watch::channel(0u64);
        let wake = Arc::new(Notify::new());
        let (asks, asked) = mpsc::unbounded_channel();
        let refresher = Refresher {
            loader: self.clone(),
            fields,
            cache: pass.prior,
            shared: shared.clone(),
            tx,
            keys,
            fingerprints,
        };
        let task = tokio::spawn(refresher.run(options.ttl, wake.clone(), asked));
        Ok(Watch {
            shared,
            changes: rx,
            wake,
            asks,
            options,
            task,
        })
    }
}

/// The plan-time refusal of leased fields in a watched struct, naming each one.
fn refuse_leased(spec: &'static StructSpec) -> Result<(), Error> {
    let leased = spec.leased_fields();
    if leased.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = leased
        .iter()
        .map(|f| format!("`{}` (dynamic = \"{}\")", f.id, f.spec.path))
        .collect();
    Err(Error::config(format!(
        "`{}` cannot be watched: it has leased fields ({}), which renew and re-issue their own credentials; \
         load a struct with leased fields once with `load()`, and watch the other fields in a struct of their own",
        spec.name,
        list.join(", ")
    )))
}

/// One keyed 64-bit fingerprint per field of a pass (its value, its previous version's, its origin), to tell
/// which fields a refresh changed without keeping a second copy of the values. The key is random per
/// [`Watch`]; fingerprints never leave the refresh task.
fn fingerprints(resolved: &Resolved, keys: &RandomState) -> HashMap<String, u64> {
    resolved
        .resolutions
        .iter()
        .map(|(id, resolution)| {
            let mut h = keys.build_hasher();
            match resolution {
                Resolution::Found {
                    raw, origin, previous, ..
                } => {
                    0u8.hash(&mut h);
                    raw.fingerprint(&mut h);
                    match previous {
                        Some(p) => {
                            1u8.hash(&mut h);
                            p.fingerprint(&mut h);
                        }
                        None => 0u8.hash(&mut h),
                    }
                    (origin.layer, &origin.source, &origin.location, &origin.version).hash(&mut h);
                }
                Resolution::Absent => 1u8.hash(&mut h),
                Resolution::Failed(_) => 2u8.hash(&mut h),
            }
            (id.clone(), h.finish())
        })
        .collect()
}

struct Refresher<T> {
    loader: Loader,
    fields: Vec<ResolvedField>,
    cache: Prior,
    shared: Arc<Shared<T>>,
    tx: watch::Sender<u64>,
    keys: RandomState,
    fingerprints: HashMap<String, u64>,
}

impl<T: Secrets + Send + Sync + 'static> Refresher<T> {
    async fn run(mut self, ttl: Duration, wake: Arc<Notify>, mut asked: mpsc::UnboundedReceiver<Answer>) {
        loop {
            let mut waiting: Vec<Answer> = Vec::new();
            tokio::select! {
                _ = tokio::time::sleep(ttl) => {}
                _ = wake.notified() => {}
                Some(answer) = asked.recv() => waiting.push(answer),
            }
            // Every caller waiting by now shares this refresh.
            while let Ok(answer) = asked.try_recv() {
                waiting.push(answer);
            }
            let started = Instant::now();
            let outcome = self.tick().await;
            let mut stats = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.ticks += 1;
            match &outcome {
                Ok(report) => {
                    let (refetched, changed) = (report.paths_refetched, !report.changed.is_empty());
                    stats.paths_refetched += refetched as u64;
                    stats.last_error = None;
                    if changed {
                        stats.changes += 1;
                    }
                    self.shared.last_success.store(Arc::new(Instant::now()));
                    tracing::info!(target: "skm::audit", refetched, changed, latency_ms = started.elapsed().as_millis() as u64, "refresh");
                }
                Err(why) => {
                    stats.failures += 1;
                    stats.last_error = Some(why.clone());
                    let warning = format!("secret refresh failed; keeping the last good values: {why}");
                    crate::notice::warn(&warning, || {
                        tracing::warn!(target: "skm", error = %why, "secret refresh failed; keeping the last good values");
                    });
                }
            }
            let changes = stats.changes;
            drop(stats);
            self.shared.ticks.fetch_add(1, Ordering::SeqCst);
            if matches!(&outcome, Ok(report) if !report.changed.is_empty()) {
                let _ = self.tx.send(changes);
            }
            for answer in waiting {
                let _ = answer.send(outcome.clone().map_err(|reason| RefreshFailed { reason }));
            }
        }
    }

    /// One refresh through the loader's pipeline: the fields that changed and the requests sent, or why it
    /// failed.
    async fn tick(&mut self) -> Result<RefreshReport, String> {
        let pass = self
            .loader
            .run(&self.fields, Some(&self.cache))
            .await
            .map_err(|e| e.to_string())?;
        let Some(resolved) = pass.resolved else {
            self.cache = pass.prior;
            return Ok(RefreshReport {
                changed: Vec::new(),
                paths_refetched: pass.refetched,
            });
        };
        let fingerprints = fingerprints(&resolved, &self.keys);
        let changed: Vec<String> = self
            .fields
            .iter()
            .map(|f| f.id.to_string())
            .filter(|id| fingerprints.get(id) != self.fingerprints.get(id))
            .collect();
        let loaded: Loaded<T> = values::build(&self.fields, resolved, Default::default()).map_err(|e| e.to_string())?;
        self.cache = pass.prior;
        self.fingerprints = fingerprints;
        if !changed.is_empty() {
            self.shared.value.store(Arc::new(loaded.value));
            self.shared.provenance.store(Arc::new(loaded.provenance));
        }
        Ok(RefreshReport {
            changed,
            paths_refetched: pass.refetched,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FieldKind, FieldSpec, LeasedSpec};
    use crate::values::Values;

    static DB: LeasedSpec = LeasedSpec {
        path: "database/creds/app",
        type_name: "Leased<DbCredentials>",
    };
    static INNER: StructSpec = StructSpec {
        name: "Inner",
        prefix: None,
        fields: &[FieldSpec {
            name: "db",
            kind: FieldKind::Leased(DB),
        }],
    };
    static OUTER: StructSpec = StructSpec {
        name: "App",
        prefix: None,
        fields: &[FieldSpec {
            name: "inner",
            kind: FieldKind::Flatten(|| &INNER),
        }],
    };

    struct App;

    impl Secrets for App {
        fn spec() -> &'static StructSpec {
            &OUTER
        }

        fn from_values(_: &mut Values<'_>) -> Option<Self> {
            unreachable!("a struct with leased fields is refused before anything is read")
        }
    }

    #[tokio::test]
    async fn a_struct_with_leased_fields_is_refused_before_any_read() {
        let Err(err) = Loader::new().no_dotenv().watch::<App>(WatchOptions::default()).await else {
            panic!("a struct with leased fields was watched");
        };
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("`App` cannot be watched"), "{message}");
        assert!(
            message.contains("`inner.db` (dynamic = \"database/creds/app\")"),
            "{message}"
        );
        assert!(message.contains("`load()`"), "{message}");
    }

    const fn secret(path: &'static str) -> crate::spec::SecretSpec {
        crate::spec::SecretSpec {
            path: Some(std::borrow::Cow::Borrowed(path)),
            key: None,
            env: None,
            default: None,
            optional: false,
            plain: false,
            type_name: std::borrow::Cow::Borrowed("SecretString"),
            version: crate::spec::VersionPin::Current,
            validate: crate::spec::Validators::NONE,
            rotating: false,
            backend: None,
        }
    }
    static TWO: StructSpec = StructSpec {
        name: "Two",
        prefix: None,
        fields: &[
            FieldSpec {
                name: "jwt",
                kind: FieldKind::Secret(secret("auth/jwt")),
            },
            FieldSpec {
                name: "db",
                kind: FieldKind::Secret(secret("db/url")),
            },
        ],
    };

    struct Two {
        jwt: secrecy::SecretString,
        db: secrecy::SecretString,
    }

    impl Secrets for Two {
        fn spec() -> &'static StructSpec {
            &TWO
        }

        fn from_values(values: &mut Values<'_>) -> Option<Self> {
            let jwt = values.take("jwt");
            let db = values.take("db");
            Some(Two { jwt: jwt?, db: db? })
        }
    }

    /// Issue 28: `refresh_now` runs one refresh at once (the TTL is an hour) and names what changed.
    #[tokio::test]
    async fn refresh_now_returns_the_new_value_right_after_a_put_and_names_the_field() {
        use crate::backend::{MemoryBackend, SecretValue};
        use secrecy::ExposeSecret;
        let memory = MemoryBackend::new();
        memory.insert("auth/jwt", SecretValue::text("SENTINEL-jwt-1"));
        memory.insert("db/url", SecretValue::text("postgres://one"));
        let watch = Loader::new()
            .backend(memory.clone())
            .no_dotenv()
            .env_vars(Vec::<(String, String)>::new())
            .watch::<Two>(WatchOptions::ttl(Duration::from_secs(3600)))
            .await
            .unwrap();
        assert_eq!(watch.latest().jwt.expose_secret(), "SENTINEL-jwt-1");

        // Nothing moved: a refresh that changes nothing.
        let report = watch.refresh_now().await.unwrap();
        assert!(report.changed.is_empty(), "{report:?}");

        memory.insert("auth/jwt", SecretValue::text("SENTINEL-jwt-2"));
        let report = watch.refresh_now().await.unwrap();
        assert_eq!(report.changed, ["jwt"]);
        assert_eq!(watch.get().unwrap().jwt.expose_secret(), "SENTINEL-jwt-2");
        assert_eq!(watch.latest().db.expose_secret(), "postgres://one");
        assert!(!format!("{report:?}").contains("SENTINEL"));
        assert_eq!(watch.stats().changes, 1);

        // A failed refresh says why and keeps the values.
        memory.fail_all(crate::backend::FetchError::unavailable("connection refused"));
        let failed = watch.refresh_now().await.unwrap_err();
        assert!(failed.to_string().contains("last good values are kept"), "{failed}");
        assert!(!failed.to_string().contains("SENTINEL"), "{failed}");
        assert_eq!(watch.latest().jwt.expose_secret(), "SENTINEL-jwt-2");
    }
}
