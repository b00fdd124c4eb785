//! Bounded fan-out with retry, shared by the backends that read one secret per request (Vault, AWS's
//! `GetSecretValue` fallback, GCP; Azure spawns its reads, see `azure/read.rs`).
//!
//! [`FanOut::map`] runs one future per item with at most `max_in_flight` running at once and returns the
//! answers in the items' order, one per item. [`FanOut::fetch`] does the same for operations answering
//! `Result<_, FetchError>` and retries those that failed with a retryable kind ([`retryable`]: unavailable or
//! throttled) after a jittered exponential backoff. Not found, forbidden and the other kinds are answers, so
//! they are never retried.
//!
//! The futures are polled by the calling task (no spawning): they may borrow the backend, a panic reaches the
//! caller as it is, and nothing outlives the call. I/O-bound reads gain nothing from extra threads.

use std::future::Future;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};

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

/// How to fan out: how many operations run at once, how often a retryable failure is tried, and how long to
/// wait between tries.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    max_in_flight: usize,
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
}

impl FanOut {
    /// The first delay before a retry; each further retry doubles it (up to [`FanOut::max_delay`]).
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(100);
    /// The longest delay between two tries: a load at startup should not hang on a struggling server.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(6_400);

    /// At most `max_in_flight` operations at once (at least 1), each tried once.
    pub fn new(max_in_flight: usize) -> Self {
        FanOut {
            max_in_flight: max_in_flight.max(1),
            max_attempts: 1,
            base_delay: Self::DEFAULT_BASE_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
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

    /// The most operations in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The delay before retry `retry` (from 0): half of `base * 2^retry` (capped) plus a random part of the
    /// other half, so that clients failing together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let cap = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(16)))
            .min(self.max_delay);
        // Each `RandomState` is seeded differently: enough randomness for jitter without a dependency.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        cap / 2 + cap.mul_f64((random % 1024) as f64 / 2048.0)
    }

    /// Runs `op` on every item, at most [`FanOut::max_in_flight`] at once, without retry; the answers come
    /// back in the items' order, one per item.
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
    /// [`FanOut::backoff`] while it fails with a [`retryable`] kind and attempts remain.
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
        what: &(dyn std::fmt::Display + Sync),
        mut op: F,
    ) -> Result<T, FetchError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, FetchError>>,
    {
        let started = std::time::Instant::now();
        let mut retry = 0;
        loop {
            let result = op().await;
            let delay = self.backoff(retry);
            match &result {
                Err(e) if e.kind == FailureKind::Throttled && started.elapsed() + delay < patience => {
                    tracing::debug!(target: "skm", operation, secret = %what, retry,
                        delay_ms = delay.as_millis() as u64, "throttled; trying again");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                _ => return result,
            }
        }
    }

    /// One item's tries.
    async fn attempts<I, T, F, Fut>(&self, op: &F, item: I) -> Result<T, FetchError>
    where
        I: Clone,
        F: Fn(I) -> Fut,
        Fut: Future<Output = Result<T, FetchError>>,
    {
        let mut retry = 0;
        loop {
            match op(item.clone()).await {
                Err(e) if retryable(e.kind) && retry + 1 < self.max_attempts => {
                    tracing::debug!(target: "skm", retry, failure = %e, "retrying a backend read");
                    tokio::time::sleep(self.backoff(retry)).await;
                    retry += 1;
                }
                answer => return answer,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

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
}
