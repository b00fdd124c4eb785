//! The keeper: the background task that renews, re-issues and revokes the leases of one [`Leased`].

use super::*;

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

#[derive(Default)]
pub(super) struct Counters {
    pub(super) renewals: AtomicU64,
    pub(super) reissues: AtomicU64,
    pub(super) revocations: AtomicU64,
    pub(super) failures: AtomicU64,
}

/// One lease the keeper holds.
pub(super) struct Held {
    pub(super) id: String,
    pub(super) fingerprint: String,
    /// The duration first granted; each renewal asks for it plus [`GRANT_ROUNDING`].
    pub(super) duration: Duration,
    pub(super) renewable: bool,
    /// When the lease runs out unless renewed.
    pub(super) expires: Instant,
    /// When the next renewal is due (2/3 into the last grant).
    pub(super) renew_at: Instant,
    /// The end no renewal can pass (max TTL), once known.
    pub(super) hard_end: Option<Instant>,
    /// For a retired lease: when to revoke it.
    pub(super) revoke_at: Option<Instant>,
    /// Consecutive failures, for the backoff.
    pub(super) failures: u32,
}

impl Held {
    pub(super) fn new(grant: &Grant, issued: Instant, max_ttl: Option<Duration>) -> Self {
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
pub(super) struct State {
    pub(super) active: Option<Held>,
    pub(super) retired: Vec<Held>,
    /// When the active lease must be replaced (`reissue_before` its hard end).
    pub(super) reissue_at: Option<Instant>,
    pub(super) reissue_failures: u32,
    /// [`LeaseOptions::reissue_before`].
    pub(super) lead: Duration,
}

/// The part of [`Leased`] shared by its clones: stops the keeper and revokes the leases when dropped.
pub(super) struct Keeper {
    pub(super) path: String,
    pub(super) source: Arc<dyn LeaseSource>,
    pub(super) state: Arc<Mutex<State>>,
    pub(super) counters: Arc<Counters>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: Mutex<Option<JoinHandle<()>>>,
    /// Serializes [`Leased::revoke`] calls.
    pub(super) revoking: tokio::sync::Mutex<bool>,
}

impl Keeper {
    pub(super) async fn revoke_all(&self) -> Result<(), LeaseError> {
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
        let leases = take_all(&self.state);
        let total = leases.len();
        let (left, first_error) = revoke_leases(&*self.source, &self.path, leases, &self.counters).await;
        let Some(first_error) = first_error else {
            *done = true;
            return Ok(());
        };
        // Keep what failed, so that the next call (or the drop) tries again: the keeper is stopped, so
        // nothing else touches them.
        let fingerprints: Vec<String> = left.iter().map(|h| h.fingerprint.clone()).collect();
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retired
            .extend(left);
        let mut error = LeaseError::new(
            first_error.kind(),
            &self.path,
            format!(
                "{} of {total} leases not revoked ({}): {first_error}; call revoke() again to retry, otherwise they \
                 expire at the end of their lease",
                fingerprints.len(),
                fingerprints.join(", ")
            ),
        );
        error.unrevoked = fingerprints;
        Err(error)
    }
}

fn take_all(state: &Mutex<State>) -> Vec<Held> {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let mut leases: Vec<Held> = state.active.take().into_iter().collect();
    leases.append(&mut state.retired);
    leases
}

/// Revokes each lease; returns those that failed and the first failure.
pub(super) async fn revoke_leases(
    source: &dyn LeaseSource,
    path: &str,
    leases: Vec<Held>,
    counters: &Counters,
) -> (Vec<Held>, Option<LeaseError>) {
    let mut first_error = None;
    let mut left = Vec::new();
    for lease in leases {
        match revoke_one(source, path, &lease, counters).await {
            Ok(()) => {}
            Err(e) => {
                first_error.get_or_insert(e);
                left.push(lease);
            }
        }
    }
    (left, first_error)
}

async fn revoke_one(source: &dyn LeaseSource, path: &str, lease: &Held, counters: &Counters) -> Result<(), LeaseError> {
    match source.revoke(&lease.id).await {
        Ok(()) => {
            counters.revocations.fetch_add(1, Ordering::SeqCst);
            tracing::info!(target: "skm::audit", path = %path, lease = %lease.fingerprint, "lease revoked");
            Ok(())
        }
        Err(e) => {
            counters.failures.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(target: "skm", path = %path, lease = %lease.fingerprint, error = %e,
                "revoking the lease failed");
            Err(e)
        }
    }
}

/// How long a drop waits for its revocations before it names the leases left on stderr.
pub(super) const DROP_PATIENCE: Duration = Duration::from_secs(5);

/// Leases whose last handle went away without [`Leased::revoke`]: revoked before the drop returns where
/// possible, and named (by fingerprint) in a warning and on stderr where not.
///
/// Dropping used to spawn the revocation as a task; a runtime that ends (`#[tokio::main]` returning or
/// unwinding from a panic) drops such a task unpolled, and the database users stayed until their TTL.
pub(super) struct Orphans {
    source: Arc<dyn LeaseSource>,
    path: String,
    counters: Arc<Counters>,
    /// The stopped keeper task: awaited first, so that a lease it was issuing is revoked too.
    task: Option<JoinHandle<()>>,
    /// The keeper's state, emptied after the task ended.
    state: Option<Arc<Mutex<State>>>,
    /// What is left to revoke: a lease leaves the list once revoked, so whatever a timeout or a failure
    /// leaves is what to report.
    left: Arc<Mutex<Vec<Held>>>,
}

impl Orphans {
    pub(super) fn new(source: Arc<dyn LeaseSource>, path: &str, counters: Arc<Counters>, leases: Vec<Held>) -> Self {
        Orphans {
            source,
            path: path.to_string(),
            counters,
            task: None,
            state: None,
            left: Arc::new(Mutex::new(leases)),
        }
    }

    fn is_empty(&self) -> bool {
        self.left.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Revokes the leases, once each.
    async fn revoke(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(state) = self.state.take() {
            let more = take_all(&state);
            self.left.lock().unwrap_or_else(|p| p.into_inner()).extend(more);
        }
        let pending: Vec<(String, String)> = {
            let left = self.left.lock().unwrap_or_else(|p| p.into_inner());
            left.iter().map(|h| (h.id.clone(), h.fingerprint.clone())).collect()
        };
        for (id, _) in pending {
            let lease = {
                let left = self.left.lock().unwrap_or_else(|p| p.into_inner());
                left.iter().find(|h| h.id == id).map(|h| Held {
                    id: h.id.clone(),
                    fingerprint: h.fingerprint.clone(),
                    ..*h
                })
            };
            let Some(lease) = lease else { continue };
            if revoke_one(&*self.source, &self.path, &lease, &self.counters)
                .await
                .is_ok()
            {
                self.left
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|h| h.id != id);
            }
        }
    }

    /// Revokes the leases within [`DROP_PATIENCE`], choosing how by the context of the drop.
    pub(super) fn settle(mut self) {
        if self.is_empty() && self.state.is_none() {
            return;
        }
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                // In place: the runtime, its connections and its timers are alive, and `block_in_place` lets
                // the worker's other tasks move on. Nested in a context that forbids it (a `Handle::block_on`
                // on a plain thread) or in a runtime shutting down, it panics: then a thread of its own.
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    tokio::task::block_in_place(|| {
                        handle.block_on(async { tokio::time::timeout(DROP_PATIENCE, self.revoke()).await.is_ok() })
                    })
                }));
                match done {
                    Ok(true) => self.report("the server refused or could not be reached"),
                    Ok(false) => self.report("the server did not answer in time"),
                    Err(_) => self.on_own_thread(),
                }
            }
            Ok(handle) => {
                // A current-thread runtime cannot be blocked on from inside: revoke in a task. If the runtime
                // ends before the task has run, dropping the task finishes the work on a thread of its own.
                let mut finish = Finish(Some(self));
                handle.spawn(async move {
                    if let Some(orphans) = finish.0.as_mut() {
                        orphans.revoke().await;
                    }
                    if let Some(orphans) = finish.0.take() {
                        orphans.report("the server refused or could not be reached");
                    }
                });
            }
            Err(_) => self.on_own_thread(),
        }
    }

    /// Revokes on a new thread with a small runtime of its own, waiting at most [`DROP_PATIENCE`] for it.
    fn on_own_thread(mut self) {
        // Not awaited: the runtime that ran the keeper may be ending on this very thread.
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(state) = self.state.take() {
            let more = take_all(&state);
            self.left.lock().unwrap_or_else(|p| p.into_inner()).extend(more);
        }
        if self.is_empty() {
            return;
        }
        let (left, path) = (self.left.clone(), self.path.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("skm-lease-revoke".into())
            .spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    runtime.block_on(async {
                        let _ = tokio::time::timeout(DROP_PATIENCE, self.revoke()).await;
                    });
                }
                let _ = tx.send(());
            });
        let why = match spawned {
            Ok(_) => match rx.recv_timeout(DROP_PATIENCE + Duration::from_millis(500)) {
                Ok(()) => "the server refused or could not be reached",
                Err(_) => "the server did not answer in time",
            },
            Err(_) => "no thread could be started to revoke them",
        };
        report(&path, &left, why);
    }

    fn report(&self, why: &str) {
        report(&self.path, &self.left, why);
    }
}

/// Warns about the leases left, on the `skm` tracing target and in one line on stderr (a program may have no
/// tracing subscriber). Names fingerprints only.
fn report(path: &str, left: &Mutex<Vec<Held>>, why: &str) {
    let fingerprints: Vec<String> = left
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|h| h.fingerprint.clone())
        .collect();
    if fingerprints.is_empty() {
        return;
    }
    let list = fingerprints.join(", ");
    tracing::warn!(target: "skm", path = %path, leases = %list, reason = why,
        "leased credentials dropped without revoke() could not be revoked: they stay valid until their lease ends");
    eprintln!(
        "skm: warning: {} lease(s) of {path} not revoked when dropped ({why}): {list}; they stay valid until their \
         lease ends. Call `Leased::revoke().await` before the program ends",
        fingerprints.len()
    );
}

/// Owns [`Orphans`] inside a current-thread runtime's task: dropped unfinished (the runtime ended first), it
/// finishes the revocation on a thread of its own.
struct Finish(Option<Orphans>);

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(orphans) = self.0.take() {
            orphans.on_own_thread();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let task = self.task.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        let leases = take_all(&self.state);
        if leases.is_empty() {
            if let Some(task) = task {
                task.abort();
            }
            return;
        }
        let mut orphans = Orphans::new(self.source.clone(), &self.path, self.counters.clone(), leases);
        // After the keeper stopped, so that it cannot add a lease unseen.
        orphans.task = task;
        orphans.state = Some(self.state.clone());
        orphans.settle();
    }
}

/// When to replace a lease issued at `issued` that cannot live past `end`: `lead` before the end, but never
/// in the first half of its life, so that a lead longer than the lease itself cannot re-issue in a loop.
fn reissue_due(issued: Instant, end: Instant, lead: Duration) -> Instant {
    let life = end.saturating_duration_since(issued);
    end.checked_sub(lead).unwrap_or(issued).max(issued + life / 2)
}

/// Starts the keeper for a lease already read and decoded.
pub(super) fn begin<T>(
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
                    if revoke_leases(&*source, &path, vec![lease], &counters).await.1.is_none() {
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
