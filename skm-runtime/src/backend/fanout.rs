//! The one fan-out of the backends, its one retry loop, and the one options type of their builders.
//!
//! [`FanOut::map`] runs one future per item with at most `max_in_flight` running at once and returns the
//! answers in the items' order, one per item. [`FanOut::fetch`] does the same for operations answering
//! `Result<_, FetchError>` and retries those that failed retryably ([`FanOut::retry`]). Both poll their futures on
//! the calling task: they may borrow the backend and nothing outlives the call (Vault, GCP).
//!
//! [`FanOut::spawned`] and [`FanOut::spawner`] are the spawned mode: each item runs as its own task on the runtime,
//! so that work a client does per request (the Azure SDK's pipeline and policies, the AWS SDK's signing) spreads
//! over the runtime's threads instead of queueing on the caller's. Polled on one task, 50 Key Vault reads reached
//! only 19 of 32 in flight within a 20 ms round trip (`fifty_secrets_are_fifty_concurrent_gets`, a debug build
//! with a build running beside it). AWS and Azure read in spawned mode.
//!
//! # One retry
//! [`FanOut::retry`] is the loop every retry of the backends goes through: the reads' ([`FanOut::fetch`],
//! [`Spawner::spawn_retried`]), a throttled read's patience ([`FanOut::patiently`]) and the check-and-set
//! write's re-read on conflict ([`update`](super::update::update)). Before retry `n` (from 0) it waits
//! [`FanOut::backoff`]`(n)`: half of `base_delay · 2ⁿ` (capped at `max_delay`) plus a random part of the other
//! half, drawn from the fan-out's random source ([`FanOut::jitter_seed`] fixes it, for tests).
//!
//! A read is tried again ([`FanOut::again`]) when it failed with a [`retryable`] kind (unavailable or throttled)
//! and attempts remain ([`FanOut::max_attempts`]), or when it was throttled and the next try would still start
//! within the patience ([`FanOut::throttle_patience`]). Not found, forbidden and the other kinds are answers, so
//! they are never retried.
//!
//! # One panic policy
//! A panicking operation is a bug, never an answer: its panic reaches the caller. Polled, it unwinds through
//! the call as it is; spawned, the task's panic is resumed on the calling task ([`Spawner::next`]). No
//! fan-out turns a panic into an item's error. A spawned task cancelled because the runtime is shutting down
//! leaves its item unanswered (`None`), which the backend reports as that item's error.
//!
//! # One options type
//! [`ReadOptions`] holds what a backend builder lets its user tune about reads: requests in flight, attempts,
//! backoff and patience. Every backend builder offers the same methods for them (`max_in_flight`,
//! `max_attempts`, `backoff`, `throttle_patience`, and `read_options` for all at once); what is not set keeps
//! the backend's own default.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{FailureKind, FetchError};

/// Whether a failure of `kind` may succeed if tried again soon: [`FailureKind::Unavailable`] (a refused or
/// reset connection, a timeout, a 5xx) and [`FailureKind::Throttled`].
///
/// # Example
/// ```
/// use skm_runtime::backend::{fanout::retryable, FailureKind};
/// assert!(retryable(FailureKind::Throttled));
/// assert!(!retryable(FailureKind::NotFound));
/// ```
pub fn retryable(kind: FailureKind) -> bool {
    matches!(kind, FailureKind::Unavailable | FailureKind::Throttled)
}

/// What a backend builder's read knobs set; unset fields keep the backend's defaults.
///
/// Every backend builder has the same methods for these (`max_in_flight`, `max_attempts`, `backoff`,
/// `throttle_patience`) and takes a whole set with `read_options`. Where a backend's client retries by
/// itself (AWS, GCP, Azure), `max_attempts` and `backoff` configure the client's retries; where skm retries
/// (Vault), they configure [`FanOut`]'s. `throttle_patience` is skm's: a read still throttled after the
/// client's retries is tried again for that long.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use skm_runtime::backend::fanout::ReadOptions;
///
/// let options = ReadOptions::new()
///     .max_in_flight(16)
///     .max_attempts(3)
///     .backoff(Duration::from_millis(50), Duration::from_secs(2));
/// assert_eq!(options.max_in_flight, Some(16));
/// assert_eq!(options.throttle_patience, None); // the backend's default
/// let later = options.overlay(ReadOptions::new().max_in_flight(4));
/// assert_eq!((later.max_in_flight, later.max_attempts), (Some(4), Some(3)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReadOptions {
    /// The most requests one fetch keeps in flight (at least 1).
    pub max_in_flight: Option<usize>,
    /// Attempts per request, the first included (at least 1; 1 disables retries).
    pub max_attempts: Option<u32>,
    /// The first delay before a retry and the longest one, as `(first, max)`.
    pub backoff: Option<(Duration, Duration)>,
    /// How long a read still throttled after the client's retries is tried again (zero: never).
    pub throttle_patience: Option<Duration>,
}

impl ReadOptions {
    /// Nothing set: every backend default applies.
    pub const fn new() -> Self {
        ReadOptions {
            max_in_flight: None,
            max_attempts: None,
            backoff: None,
            throttle_patience: None,
        }
    }

    /// At most `n` requests in flight per fetch (at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// `n` attempts per request, the first included (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// Retries wait about `first`, then twice as long each time, at most `max` (raised to `first` if lower).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = Some((first, max.max(first)));
        self
    }

    /// A read still throttled after the client's retries is tried again until `patience` has passed.
    pub fn throttle_patience(mut self, patience: Duration) -> Self {
        self.throttle_patience = Some(patience);
        self
    }

    /// These options with every field `later` sets replaced by `later`'s.
    pub fn overlay(self, later: ReadOptions) -> Self {
        ReadOptions {
            max_in_flight: later.max_in_flight.or(self.max_in_flight),
            max_attempts: later.max_attempts.or(self.max_attempts),
            backoff: later.backoff.or(self.backoff),
            throttle_patience: later.throttle_patience.or(self.throttle_patience),
        }
    }
}

/// The random source of a fan-out's jitter: the thread's generator (seeded from the OS), or one seeded
/// generator shared by the fan-out's clones ([`FanOut::jitter_seed`]).
#[derive(Clone, Default)]
struct Jitter(Option<Arc<Mutex<fastrand::Rng>>>);

impl Jitter {
    /// A number in `[0, 1)`.
    fn unit(&self) -> f64 {
        match &self.0 {
            Some(rng) => rng.lock().unwrap_or_else(|e| e.into_inner()).f64(),
            None => fastrand::f64(),
        }
    }
}

impl fmt::Debug for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "seeded" } else { "random" })
    }
}

/// How to fan out: how many operations run at once, how often and how long a failure is tried again, how
/// long to wait between tries, and where the jitter comes from.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use skm_runtime::backend::{fanout::FanOut, FetchError};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let fan = FanOut::new(8).max_attempts(3).base_delay(Duration::from_millis(1));
/// let answers = fan
///     .fetch(["a", "b"], |path: &str| async move { Ok::<_, FetchError>(path.len()) })
///     .await;
/// assert_eq!(answers, vec![Ok(1), Ok(1)]);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FanOut {
    max_in_flight: usize,
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    patience: Duration,
    jitter: Jitter,
}

impl FanOut {
    /// The first delay before a retry; each further retry doubles it (up to [`FanOut::max_delay`]).
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(100);
    /// The longest delay between two tries: a load at startup should not hang on a struggling server.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(6_400);

    /// At most `max_in_flight` operations at once (at least 1), each tried once, no patience.
    pub fn new(max_in_flight: usize) -> Self {
        FanOut {
            max_in_flight: max_in_flight.max(1),
            max_attempts: 1,
            base_delay: Self::DEFAULT_BASE_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
            patience: Duration::ZERO,
            jitter: Jitter::default(),
        }
    }

    /// Tries an operation at most `attempts` times in all (at least 1) while it fails retryably.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The first delay before a retry.
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The longest delay before a retry.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// The first and the longest delay before a retry, as [`ReadOptions::backoff`] holds them.
    pub fn backoff_range(self, (first, max): (Duration, Duration)) -> Self {
        self.base_delay(first).max_delay(max)
    }

    /// Keeps trying an operation that fails [`FailureKind::Throttled`] while the next try would start within
    /// `patience` of the first, whatever [`FanOut::max_attempts`] says (default zero: no patience).
    pub fn throttle_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Draws the jitter from a generator seeded with `seed` (shared by this fan-out's clones) instead of the
    /// thread's: the same seed gives the same delays, for tests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use skm_runtime::backend::fanout::FanOut;
    /// let a = FanOut::new(1).jitter_seed(7);
    /// let b = FanOut::new(1).jitter_seed(7);
    /// let delays = |f: &FanOut| (0..5).map(|r| f.backoff(r)).collect::<Vec<Duration>>();
    /// assert_eq!(delays(&a), delays(&b));
    /// ```
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter = Jitter(Some(Arc::new(Mutex::new(fastrand::Rng::with_seed(seed)))));
        self
    }

    /// The most operations in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The delay before retry `retry` (from 0): half of `base * 2^retry` (capped) plus a random part of the
    /// other half, so that clients failing together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(16)))
            .min(self.max_delay);
        cap / 2 + cap.mul_f64(self.jitter.unit() / 2.0)
    }

    /// Whether a read that failed with `error` on retry `retry` (from 0), `started` at its first try, is tried
    /// again after `delay`: a [`retryable`] kind with attempts left, or throttled within the patience.
    pub fn again(&self, error: &FetchError, retry: u32, delay: Duration, started: Instant) -> bool {
        (retryable(error.kind) && retry.saturating_add(1) < self.max_attempts)
            || (error.kind == FailureKind::Throttled && started.elapsed() + delay < self.patience)
    }

    /// The one retry loop: runs `op`; while it fails and `again(&error, retry, delay)` says so (`retry` from 0,
    /// `delay` = [`FanOut::backoff`]`(retry)`), waits `delay` and runs it again. The last answer is returned.
    ///
    /// # Example
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use skm_runtime::backend::fanout::FanOut;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let calls = AtomicU32::new(0);
    /// let fan = FanOut::new(1).base_delay(Duration::from_millis(1));
    /// let answer: Result<u32, u32> = fan
    ///     .retry(
    ///         || async { let n = calls.fetch_add(1, Ordering::SeqCst); if n < 2 { Err(n) } else { Ok(n) } },
    ///         |_, retry, _| retry < 5,
    ///     )
    ///     .await;
    /// assert_eq!(answer, Ok(2));
    /// # });
    /// ```
    pub async fn retry<T, E, F, Fut, A>(&self, mut op: F, mut again: A) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        A: FnMut(&E, u32, Duration) -> bool,
    {
        let mut retry = 0;
        loop {
            let failure = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let delay = self.backoff(retry);
            if !again(&failure, retry, delay) {
                return Err(failure);
            }
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// Runs `op` on every item, at most [`FanOut::max_in_flight`] at once, without retry; the answers come
    /// back in the items' order, one per item. Polled on the calling task.
    pub async fn map<I, O, F, Fut>(&self, items: impl IntoIterator<Item = I>, op: F) -> Vec<O>
    where
        F: FnMut(I) -> Fut,
        Fut: Future<Output = O>,
    {
        // The futures are made up front (they do nothing until polled) so that no closure lives across an
        // await: a closure there trips rustc's higher-ranked `Send` check inside `async_trait` methods.
        let pending: Vec<Fut> = items.into_iter().map(op).collect();
        stream::iter(pending).buffered(self.max_in_flight).collect().await
    }

    /// Runs `op` on every item as [`FanOut::map`] does, trying an item again (with a clone of it) after
    /// [`FanOut::backoff`] while [`FanOut::again`] says so.
    pub async fn fetch<I, T, F, Fut>(&self, items: impl IntoIterator<Item = I>, op: F) -> Vec<Result<T, FetchError>>
    where
        I: Clone,
        F: Fn(I) -> Fut,
        Fut: Future<Output = Result<T, FetchError>>,
    {
        let pending: Vec<_> = items.into_iter().map(|item| self.attempts(&op, item)).collect();
        stream::iter(pending).buffered(self.max_in_flight).collect().await
    }

    /// Runs `op` again, after [`FanOut::backoff`], while it fails [`FailureKind::Throttled`] and the next try
    /// would still start within `patience` of the first (zero: `op` runs once). A client's own retries stop
    /// after a second or two, while a quota a whole fleet exceeds refills over several: waiting loads instead
    /// of failing. `operation` and `what` name the read in the debug log.
    ///
    /// # Example
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use skm_runtime::backend::{fanout::FanOut, FailureKind, FetchError};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let calls = AtomicU32::new(0);
    /// let fan = FanOut::new(1).base_delay(Duration::from_millis(1));
    /// let answer = fan
    ///     .patiently(Duration::from_secs(5), "Read", &"app/token", || async {
    ///         match calls.fetch_add(1, Ordering::SeqCst) {
    ///             0 | 1 => Err(FetchError::new(FailureKind::Throttled, "rate exceeded")),
    ///             _ => Ok("value"),
    ///         }
    ///     })
    ///     .await;
    /// assert_eq!(answer.unwrap(), "value");
    /// assert_eq!(calls.load(Ordering::SeqCst), 3);
    /// # });
    /// ```
    pub async fn patiently<T, F, Fut>(
        &self,
        patience: Duration,
        operation: &'static str,
        what: &(dyn fmt::Display + Sync),
        op: F,
    ) -> Result<T, FetchError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, FetchError>>,
    {
        self.clone()
            .throttle_patience(patience)
            .patient(operation, what, op)
            .await
    }

    /// [`FanOut::patiently`] with this fan-out's own [`FanOut::throttle_patience`]: `op` runs again only while
    /// throttled, whatever [`FanOut::max_attempts`] says (the client beneath retries each call).
    pub async fn patient<T, F, Fut>(
        &self,
        operation: &'static str,
        what: &(dyn fmt::Display + Sync),
        op: F,
    ) -> Result<T, FetchError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, FetchError>>,
    {
        let rule = self.clone().max_attempts(1);
        let started = Instant::now();
        self.retry(op, |e, retry, delay| {
            let again = rule.again(e, retry, delay, started);
            if again {
                tracing::debug!(target: "skm", operation, secret = %what, retry,
                    delay_ms = delay.as_millis() as u64, "throttled; trying again");
            }
            again
        })
        .await
    }

    /// One item's tries.
    async fn attempts<I, T, F, Fut>(&self, op: &F, item: I) -> Result<T, FetchError>
    where
        I: Clone,
        F: Fn(I) -> Fut,
        Fut: Future<Output = Result<T, FetchError>>,
    {
        let started = Instant::now();
        self.retry(
            || op(item.clone()),
            |e, retry, delay| {
                let again = self.again(e, retry, delay, started);
                if again {
                    tracing::debug!(target: "skm", retry, failure = %e, "retrying a backend read");
                }
                again
            },
        )
        .await
    }

    /// Spawned mode: runs `op` on every item as its own task, at most [`FanOut::max_in_flight`] at once,
    /// without retry; the answers come back in the items' order, one per item (`None`: the task was cancelled,
    /// only when the runtime shuts down). A task's panic resumes on the calling task.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::backend::fanout::FanOut;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let answers = FanOut::new(4).spawned(1..=3u32, |n| async move { n * 2 }).await;
    /// assert_eq!(answers, vec![Some(2), Some(4), Some(6)]);
    /// # });
    /// ```
    pub async fn spawned<I, O, F, Fut>(&self, items: impl IntoIterator<Item = I>, mut op: F) -> Vec<Option<O>>
    where
        F: FnMut(I) -> Fut,
        Fut: Future<Output = O> + Send + 'static,
        O: Send + 'static,
    {
        let mut tasks = self.spawner();
        let mut answers = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let work = op(item);
            tasks.spawn(async move { (index, work.await) });
            answers.push(None);
        }
        while let Some((index, answer)) = tasks.next().await {
            answers[index] = Some(answer);
        }
        answers
    }

    /// Spawned mode for work that makes more work (AWS's batch refused or throttled becomes single reads): a
    /// set of tasks sharing this fan-out's bound and retry, whose answers arrive as they finish.
    pub fn spawner<O: Send + 'static>(&self) -> Spawner<O> {
        Spawner {
            fan: self.clone(),
            slots: Arc::new(Semaphore::new(self.max_in_flight)),
            tasks: JoinSet::new(),
        }
    }
}

/// Tasks of one [`FanOut`] in spawned mode: at most [`FanOut::max_in_flight`] hold a slot at once. Dropping it
/// aborts the tasks still running.
pub struct Spawner<O> {
    fan: FanOut,
    slots: Arc<Semaphore>,
    tasks: JoinSet<O>,
}

impl<O> fmt::Debug for Spawner<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawner")
            .field("fan", &self.fan)
            .field("running", &self.tasks.len())
            .finish()
    }
}

impl<O: Send + 'static> Spawner<O> {
    /// Runs `work` as its own task, holding a slot while it runs.
    pub fn spawn(&mut self, work: impl Future<Output = O> + Send + 'static) {
        let slots = self.slots.clone();
        self.tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("the slots are never closed");
            work.await
        });
    }

    /// Runs `op` as its own task with the fan-out's retry ([`FanOut::again`]), then `finish` on its answer. A
    /// slot is held while an attempt runs, never while waiting to retry, so other reads go on meanwhile.
    /// `operation` and `what` name the read in the debug log.
    pub fn spawn_retried<T, F, Fut>(
        &mut self,
        operation: &'static str,
        what: String,
        mut op: F,
        finish: impl FnOnce(Result<T, FetchError>) -> O + Send + 'static,
    ) where
        T: Send + 'static,
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, FetchError>> + Send,
    {
        let slots = self.slots.clone();
        let fan = self.fan.clone();
        self.tasks.spawn(async move {
            let started = Instant::now();
            let answer = fan
                .retry(
                    || {
                        let attempt = op();
                        let slots = slots.clone();
                        async move {
                            let _slot = slots.acquire_owned().await.expect("the slots are never closed");
                            attempt.await
                        }
                    },
                    |e, retry, delay| {
                        let again = fan.again(e, retry, delay, started);
                        if again {
                            tracing::debug!(target: "skm", operation, secret = %what, retry,
                                delay_ms = delay.as_millis() as u64, failure = %e, "trying again");
                        }
                        again
                    },
                )
                .await;
            finish(answer)
        });
    }

    /// The answer of the next task to finish; `None` when none is left. A task that panicked resumes its
    /// panic here, on the calling task; a cancelled task (the runtime is shutting down) is skipped.
    pub async fn next(&mut self) -> Option<O> {
        loop {
            match self.tasks.join_next().await? {
                Ok(answer) => return Some(answer),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn quick(n: usize) -> FanOut {
        FanOut::new(n).max_attempts(4).base_delay(Duration::from_millis(1))
    }

    #[tokio::test]
    async fn answers_keep_the_items_order() {
        // Later items finish first: the answers must still come back in the items' order.
        let items: Vec<u64> = (0..20).collect();
        let answers = quick(20)
            .map(items.clone(), |i| async move {
                tokio::time::sleep(Duration::from_millis(40 - 2 * i)).await;
                i * 10
            })
            .await;
        assert_eq!(answers, items.iter().map(|i| i * 10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn never_more_than_the_bound_in_flight() {
        let (now, max) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let answers = quick(3)
            .fetch(0..30, |_| async {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, FetchError>(())
            })
            .await;
        assert_eq!(answers.len(), 30);
        // Exactly the bound: fewer would mean the fan-out runs one by one.
        assert_eq!(max.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_until_they_succeed() {
        for kind in [FailureKind::Unavailable, FailureKind::Throttled] {
            let calls = AtomicUsize::new(0);
            let answers = quick(2)
                .fetch(["x"], |_| async {
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err(FetchError::new(kind, "try later"))
                    } else {
                        Ok("value")
                    }
                })
                .await;
            assert_eq!(answers, vec![Ok("value")]);
            assert_eq!(calls.load(Ordering::SeqCst), 3, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn retries_stop_at_max_attempts() {
        let calls = AtomicUsize::new(0);
        let answers = quick(1)
            .fetch(["x"], |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(FetchError::unavailable("down"))
            })
            .await;
        assert_eq!(answers[0].as_ref().unwrap_err().kind, FailureKind::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn answers_are_not_retried() {
        for kind in [
            FailureKind::NotFound,
            FailureKind::Forbidden,
            FailureKind::Invalid,
            FailureKind::Decryption,
            FailureKind::Other,
        ] {
            let calls = Mutex::new(Vec::new());
            let answers = quick(4)
                .fetch(["a", "b"], |item| {
                    calls.lock().unwrap().push(item);
                    async move { Err::<(), _>(FetchError::new(kind, "no")) }
                })
                .await;
            assert!(answers.iter().all(|a| a.as_ref().unwrap_err().kind == kind));
            assert_eq!(*calls.lock().unwrap(), vec!["a", "b"], "{kind:?} was retried");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let fan = FanOut::new(1)
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(400));
        for _ in 0..50 {
            let first = fan.backoff(0);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let second = fan.backoff(1);
            assert!(
                second >= Duration::from_millis(100) && second <= Duration::from_millis(200),
                "{second:?}"
            );
            let late = fan.backoff(30);
            assert!(
                late >= Duration::from_millis(200) && late <= Duration::from_millis(400),
                "{late:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spawned_answers_keep_the_order_and_the_bound() {
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let answers = quick(3)
            .spawned(0..30u64, |i| {
                let (now, max) = (now.clone(), max.clone());
                async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30 - i)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    i * 10
                }
            })
            .await;
        assert_eq!(answers, (0..30).map(|i| Some(i * 10)).collect::<Vec<_>>());
        assert_eq!(max.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_spawned_panic_resumes_in_the_caller() {
        let caught = tokio::spawn(async {
            quick(2)
                .spawned(0..4u32, |i| async move {
                    if i == 2 {
                        panic!("item {i} is a bug");
                    }
                    i
                })
                .await
        })
        .await;
        let panic = caught.expect_err("the panic must reach the caller").into_panic();
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(message, "item 2 is a bug");
    }

    #[tokio::test]
    async fn a_spawned_retry_holds_no_slot_while_it_waits() {
        // One slot: the throttled read waits 100 ms or more between its tries, and the other read must get the
        // slot meanwhile instead of queueing behind the wait.
        let fan = FanOut::new(1)
            .throttle_patience(Duration::from_secs(5))
            .base_delay(Duration::from_millis(200));
        let mut tasks = fan.spawner();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        tasks.spawn_retried(
            "Read",
            "throttled".into(),
            move || {
                let c = c.clone();
                async move {
                    match c.fetch_add(1, Ordering::SeqCst) {
                        0 => Err(FetchError::new(FailureKind::Throttled, "slow down")),
                        _ => Ok("late"),
                    }
                }
            },
            |r| r.map(|v| (v, std::time::Instant::now())),
        );
        let started = std::time::Instant::now();
        tasks.spawn(async { Ok(("quick", std::time::Instant::now())) });
        let mut done = Vec::new();
        while let Some(answer) = tasks.next().await {
            done.push(answer.unwrap());
        }
        done.sort_by_key(|(_, at)| *at);
        assert_eq!(done[0].0, "quick");
        assert!(
            done[0].1 - started < Duration::from_millis(90),
            "{:?}",
            done[0].1 - started
        );
        assert_eq!(done[1].0, "late");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn patience_retries_throttling_only_and_stops_in_time() {
        let fan = FanOut::new(1).base_delay(Duration::from_millis(1));
        for (kind, calls_wanted) in [(FailureKind::Unavailable, 1), (FailureKind::NotFound, 1)] {
            let calls = AtomicUsize::new(0);
            let answer = fan
                .patiently(Duration::from_secs(5), "Read", &"x", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(FetchError::new(kind, "no"))
                })
                .await;
            assert_eq!(answer.unwrap_err().kind, kind);
            assert_eq!(calls.load(Ordering::SeqCst), calls_wanted, "{kind:?}");
        }
        let started = std::time::Instant::now();
        let answer = FanOut::new(1)
            .base_delay(Duration::from_millis(20))
            .patiently(Duration::from_millis(150), "Read", &"x", || async {
                Err::<(), _>(FetchError::new(FailureKind::Throttled, "slow down"))
            })
            .await;
        assert_eq!(answer.unwrap_err().kind, FailureKind::Throttled);
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_seeded_jitter_repeats_and_an_unseeded_one_varies() {
        let delays = |f: &FanOut| (0..8).map(|r| f.backoff(r)).collect::<Vec<_>>();
        assert_eq!(
            delays(&FanOut::new(1).jitter_seed(42)),
            delays(&FanOut::new(1).jitter_seed(42))
        );
        assert_ne!(
            delays(&FanOut::new(1).jitter_seed(1)),
            delays(&FanOut::new(1).jitter_seed(2))
        );
        let fan = FanOut::new(1);
        let firsts: std::collections::HashSet<Duration> = (0..20).map(|_| fan.backoff(0)).collect();
        assert!(firsts.len() > 1, "no jitter: {firsts:?}");
    }
}
