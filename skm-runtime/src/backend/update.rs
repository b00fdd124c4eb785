//! Read → merge → write of one secret, with check-and-set where the backend has it, retried on conflict by the
//! fan-out's retry ([`FanOut::retry`]): the key writes of the `skm` tool (`put --key`, `generate --key`,
//! `migrate`, `pg rotate`) go through [`update`].

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::fanout::FanOut;
use super::{AdminBackend, AdminError, FailureKind, FetchError, FetchRequest, PutRequest, SecretPayload, SecretValue};

/// How many times [`update`] reads and merges again after a check-and-set conflict before it gives up. Every
/// round some writer wins, so 50 concurrent writers settle well within it; the backoff spreads them out.
pub const CAS_ATTEMPTS: u32 = 100;

/// How a write of [`update`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    /// The version the write created.
    pub version: String,
    /// `false` when the backend offered no way to make the read-merge-write atomic, so that a concurrent
    /// write between the read and the write could have been lost.
    pub atomic: bool,
}

/// Why [`update`] wrote nothing.
#[derive(Debug)]
pub enum UpdateError<E> {
    /// The current value could not be read.
    Read(FetchError),
    /// `merge` refused the current value.
    Merge(E),
    /// The write failed.
    Write(AdminError),
    /// Another writer came first on every one of `attempts` check-and-set attempts.
    KeptChanging {
        /// The attempts made ([`CAS_ATTEMPTS`]).
        attempts: u32,
    },
}

impl<E: fmt::Display> fmt::Display for UpdateError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::Read(e) => write!(f, "cannot read the current value: {e}"),
            UpdateError::Merge(e) => write!(f, "{e}"),
            UpdateError::Write(e) => write!(f, "{e}"),
            UpdateError::KeptChanging { attempts } => write!(
                f,
                "the secret kept changing under {attempts} check-and-set attempts: nothing written"
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for UpdateError<E> {}

/// The retry of [`update`]: [`CAS_ATTEMPTS`] attempts, waiting about 10 ms, then twice as long each time up to
/// 500 ms, jittered, so that writers that collided do not collide again in step.
pub fn cas_retry() -> FanOut {
    FanOut::new(1)
        .max_attempts(CAS_ATTEMPTS)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(500))
}

/// One attempt's failure: a conflict is tried again, anything else ends the update.
enum Attempt<E> {
    Conflict,
    Failed(UpdateError<E>),
}

/// Sets the secret at `path` to what `merge` makes of its current value, without losing a concurrent writer's
/// update where the backend can guarantee it.
///
/// `merge` gets the current value (`None`: no secret yet) and returns the value to write, or why not. On a
/// backend with check-and-set ([`AdminBackend::supports_cas`]) the write names the version read (or must
/// create the path when there was none); a [`FailureKind::Conflict`] (or `AlreadyExists` for a create) means
/// another writer came first, so it reads again, merges again and retries ([`cas_retry`]). Without
/// check-and-set (or when the backend reports it unsupported, e.g. a Vault mount found to be KV v1), it writes
/// unchecked and says so in [`Updated::atomic`].
///
/// # Example
/// ```
/// use skm_runtime::backend::{update::update, FetchRequest, MemoryBackend, SecretValue, Backend};
/// use secrecy::ExposeSecret;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let backend = MemoryBackend::new();
/// backend.insert("app/counter", SecretValue::text("1"));
/// let updated = update(&backend, "app/counter", |current| {
///     let n: u32 = match current {
///         Some(SecretValue::Text(t)) => t.expose_secret().parse().map_err(|_| "not a number")?,
///         _ => 0,
///     };
///     Ok::<_, &str>(SecretValue::text((n + 1).to_string()))
/// })
/// .await
/// .unwrap();
/// assert!(updated.atomic);
/// let now = backend.fetch(&[FetchRequest::current("app/counter")]).await;
/// match &now[0].as_ref().unwrap().value {
///     SecretValue::Text(t) => assert_eq!(t.expose_secret(), "2"),
///     _ => unreachable!(),
/// }
/// # });
/// ```
pub async fn update<F, E>(backend: &dyn AdminBackend, path: &str, merge: F) -> Result<Updated, UpdateError<E>>
where
    F: FnMut(Option<&SecretValue>) -> Result<SecretValue, E>,
{
    // A mutex and an atomic rather than cells, so that the update stays `Send` for callers that spawn it.
    let merge = Mutex::new(merge);
    let cas = AtomicBool::new(backend.supports_cas());
    let retry = cas_retry();
    let answer = retry
        .retry(
            || attempt(backend, path, &merge, &cas),
            |failure, retry, _| matches!(failure, Attempt::Conflict) && retry.saturating_add(1) < CAS_ATTEMPTS,
        )
        .await;
    match answer {
        Ok(updated) => Ok(updated),
        Err(Attempt::Conflict) => Err(UpdateError::KeptChanging { attempts: CAS_ATTEMPTS }),
        Err(Attempt::Failed(e)) => Err(e),
    }
}

/// One read, merge and write.
async fn attempt<F, E>(
    backend: &dyn AdminBackend,
    path: &str,
    merge: &Mutex<F>,
    cas: &AtomicBool,
) -> Result<Updated, Attempt<E>>
where
    F: FnMut(Option<&SecretValue>) -> Result<SecretValue, E>,
{
    loop {
        let current = read(backend, path)
            .await
            .map_err(|e| Attempt::Failed(UpdateError::Read(e)))?;
        let version = current.as_ref().and_then(|p| p.version.clone());
        let exists = current.is_some();
        let value = (merge.lock().unwrap_or_else(|e| e.into_inner()))(current.as_ref().map(|p| &p.value))
            .map_err(|e| Attempt::Failed(UpdateError::Merge(e)))?;
        let mut request = PutRequest::new(path, value);
        // A secret read without a version id cannot be checked-and-set.
        let checked = cas.load(Ordering::Relaxed) && (!exists || version.is_some());
        if checked {
            request.create_only = !exists;
            request.expected_version = version;
        }
        match backend.put(request).await {
            // Asked again after the write: a Vault mount of unknown version is known after one request.
            Ok(version) => {
                return Ok(Updated {
                    version,
                    atomic: checked && backend.supports_cas(),
                })
            }
            Err(e) if checked && matches!(e.kind, FailureKind::Conflict | FailureKind::AlreadyExists) => {
                tracing::debug!(target: "skm", path, "check-and-set conflict; reading again");
                return Err(Attempt::Conflict);
            }
            // E.g. a Vault mount that turned out to be KV v1: no check-and-set there; read and write unchecked.
            Err(e) if checked && e.kind == FailureKind::Unsupported => cas.store(false, Ordering::Relaxed),
            Err(e) => return Err(Attempt::Failed(UpdateError::Write(e))),
        }
    }
}

/// The current version of `path`: `None` when it does not exist.
async fn read(backend: &dyn AdminBackend, path: &str) -> Result<Option<SecretPayload>, FetchError> {
    match backend.fetch(&[FetchRequest::current(path)]).await.pop() {
        Some(Ok(payload)) => Ok(Some(payload)),
        Some(Err(e)) if e.kind == FailureKind::NotFound => Ok(None),
        Some(Err(e)) => Err(e),
        None => Err(FetchError::new(FailureKind::Other, "the backend returned no result")),
    }
}
