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
//! [`Backend::current_versions`]: crate::backend::Backend::current_versions

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};

use crate::error::Error;
use crate::loader::{Loader, Prior};
use crate::plan::ResolvedField;
use crate::report::{Loaded, Provenance};
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

    /// Asks for a refresh now instead of at the next TTL.
    pub fn refresh_now(&self) {
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
        let loaded: Loaded<T> = values::build(
            &fields,
            pass.resolved.expect("a first pass always resolves"),
            Default::default(),
        )?;
        let shared = Arc::new(Shared {
            value: ArcSwap::from_pointee(loaded.value),
            provenance: ArcSwap::from_pointee(loaded.provenance),
            last_success: ArcSwap::from_pointee(Instant::now()),
            stats: Mutex::new(WatchStats::default()),
            ticks: AtomicU64::new(0),
        });
        let (tx, rx) = watch::channel(0u64);
        let wake = Arc::new(Notify::new());
        let refresher = Refresher {
            loader: self.clone(),
            fields,
            cache: pass.prior,
            shared: shared.clone(),
            tx,
        };
        let task = tokio::spawn(refresher.run(options.ttl, wake.clone()));
        Ok(Watch {
            shared,
            changes: rx,
            wake,
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

struct Refresher<T> {
    loader: Loader,
    fields: Vec<ResolvedField>,
    cache: Prior,
    shared: Arc<Shared<T>>,
    tx: watch::Sender<u64>,
}

impl<T: Secrets + Send + Sync + 'static> Refresher<T> {
    async fn run(mut self, ttl: Duration, wake: Arc<Notify>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(ttl) => {}
                _ = wake.notified() => {}
            }
            let started = Instant::now();
            let outcome = self.tick().await;
            let mut stats = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.ticks += 1;
            match &outcome {
                Ok((refetched, changed)) => {
                    stats.paths_refetched += *refetched as u64;
                    stats.last_error = None;
                    if *changed {
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
            if matches!(outcome, Ok((_, true))) {
                let _ = self.tx.send(changes);
            }
        }
    }

    /// One refresh through the loader's pipeline: returns (paths refetched, whether the value changed), or
    /// why it failed.
    async fn tick(&mut self) -> Result<(usize, bool), String> {
        let pass = self
            .loader
            .run(&self.fields, Some(&self.cache))
            .await
            .map_err(|e| e.to_string())?;
        let Some(resolved) = pass.resolved else {
            self.cache = pass.prior;
            return Ok((pass.refetched, false));
        };
        let loaded: Loaded<T> = values::build(&self.fields, resolved, Default::default()).map_err(|e| e.to_string())?;
        self.cache = pass.prior;
        self.shared.value.store(Arc::new(loaded.value));
        self.shared.provenance.store(Arc::new(loaded.provenance));
        Ok((pass.refetched, true))
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
}
