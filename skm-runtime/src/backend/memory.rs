//! An in-memory backend for tests: versions, failures on demand, and a count of calls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;

use super::{
    AdminBackend, AdminError, AdminErrorKind, Backend, DeleteMode, FetchError, FetchRequest, FetchResult, ListEntry,
    PutRequest, SecretPayload, SecretValue, VersionInfo, VersionPin,
};

/// An in-memory [`Backend`] and [`AdminBackend`] for users' tests.
///
/// Cloning shares the store. It numbers versions from 1, keeps them all, counts calls so that tests can
/// assert batching, and can be told to fail a path with any [`FetchError`].
///
/// # Example
/// ```
/// use skm_runtime::backend::{MemoryBackend, SecretValue};
///
/// let backend = MemoryBackend::new();
/// backend.insert("database/connection", SecretValue::map([("url", "postgres://...")]));
/// assert_eq!(backend.fetch_calls(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    name: Mutex<Option<String>>,
    store: Mutex<BTreeMap<String, Entry>>,
    failures: Mutex<BTreeMap<String, FetchError>>,
    fail_all: Mutex<Option<FetchError>>,
    calls: AtomicUsize,
    requests: AtomicUsize,
    version_probes: AtomicUsize,
}

#[derive(Debug)]
struct Entry {
    versions: Vec<(SecretValue, SystemTime)>,
    deleted: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another test thread must not hide this backend's state.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the backend in errors and provenance (default `memory`).
    pub fn named(self, name: impl Into<String>) -> Self {
        *lock(&self.inner.name) = Some(name.into());
        self
    }

    /// Stores `value` as a new version of `path`; returns the version number.
    pub fn insert(&self, path: impl Into<String>, value: SecretValue) -> u64 {
        Self::insert_locked(&mut lock(&self.inner.store), path.into(), value)
    }

    fn insert_locked(store: &mut BTreeMap<String, Entry>, path: String, value: SecretValue) -> u64 {
        let entry = store.entry(path).or_insert_with(|| Entry {
            versions: Vec::new(),
            deleted: false,
        });
        entry.deleted = false;
        entry.versions.push((value, SystemTime::now()));
        entry.versions.len() as u64
    }

    /// Makes every fetch of `path` fail with `error` until [`MemoryBackend::clear_failures`].
    pub fn fail_path(&self, path: impl Into<String>, error: FetchError) {
        lock(&self.inner.failures).insert(path.into(), error);
    }

    /// Makes every fetch fail with `error`, as an unreachable server would.
    pub fn fail_all(&self, error: FetchError) {
        *lock(&self.inner.fail_all) = Some(error);
    }

    /// Removes the failures set by [`MemoryBackend::fail_path`] and [`MemoryBackend::fail_all`].
    pub fn clear_failures(&self) {
        lock(&self.inner.failures).clear();
        *lock(&self.inner.fail_all) = None;
    }

    /// How many times [`Backend::fetch`] was called.
    pub fn fetch_calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// How many times [`Backend::current_versions`] was called.
    pub fn version_probes(&self) -> usize {
        self.inner.version_probes.load(Ordering::SeqCst)
    }

    /// How many paths were requested over all calls.
    pub fn fetched_paths(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    fn read(&self, request: &FetchRequest) -> FetchResult {
        if let Some(e) = lock(&self.inner.fail_all).clone() {
            return Err(e);
        }
        if let Some(e) = lock(&self.inner.failures).get(&request.path) {
            return Err(e.clone());
        }
        let store = lock(&self.inner.store);
        let entry = store
            .get(&request.path)
            .filter(|e| !e.deleted)
            .ok_or_else(|| FetchError::not_found(format!("no secret at `{}`", request.path)))?;
        let n = entry.versions.len();
        let index = match &request.version {
            VersionPin::Current => n,
            VersionPin::Number(v) => *v as usize,
            VersionPin::Previous => n.saturating_sub(1),
            VersionPin::Stage(s) if matches!(&**s, "AWSPREVIOUS" | "previous") => n.saturating_sub(1),
            VersionPin::Stage(s) if matches!(&**s, "AWSCURRENT" | "current") => n,
            VersionPin::Id(id) => id.parse().unwrap_or(0),
            _ => 0,
        };
        if index == 0 || index > n {
            return Err(FetchError::not_found(format!(
                "`{}` has no {}",
                request.path, request.version
            )));
        }
        Ok(SecretPayload::new(entry.versions[index - 1].0.clone()).with_version(index.to_string()))
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> String {
        lock(&self.inner.name).clone().unwrap_or_else(|| "memory".into())
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.requests.fetch_add(requests.len(), Ordering::SeqCst);
        requests.iter().map(|r| self.read(r)).collect()
    }

    async fn current_versions(&self, requests: &[FetchRequest]) -> Option<Vec<Result<String, FetchError>>> {
        self.inner.version_probes.fetch_add(1, Ordering::SeqCst);
        Some(
            requests
                .iter()
                .map(|r| self.read(r).map(|p| p.version.unwrap_or_default()))
                .collect(),
        )
    }
}

#[async_trait]
impl AdminBackend for MemoryBackend {
    async fn put(&self, request: PutRequest) -> Result<String, AdminError> {
        // One lock for the check and the write, so that check-and-set has no window.
        let mut store = lock(&self.inner.store);
        let current = store
            .get(&request.path)
            .filter(|e| !e.deleted)
            .map(|e| e.versions.len().to_string());
        if request.create_only && current.is_some() {
            return Err(AdminError::new(
                AdminErrorKind::AlreadyExists,
                &request.path,
                "the secret already exists",
            ));
        }
        if let Some(expected) = &request.expected_version {
            if current.as_ref() != Some(expected) {
                return Err(AdminError::new(
                    AdminErrorKind::Conflict,
                    &request.path,
                    format!(
                        "check-and-set: expected version {expected}, found {}",
                        current.as_deref().unwrap_or("none")
                    ),
                ));
            }
        }
        Ok(Self::insert_locked(&mut store, request.path, request.value).to_string())
    }

    fn supports_cas(&self) -> bool {
        true
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, AdminError> {
        Ok(lock(&self.inner.store)
            .iter()
            .filter(|(p, e)| !e.deleted && p.starts_with(prefix))
            .map(|(p, e)| ListEntry {
                path: p.clone(),
                updated: e.versions.last().map(|v| v.1),
            })
            .collect())
    }

    async fn delete(&self, path: &str, mode: DeleteMode) -> Result<(), AdminError> {
        let mut store = lock(&self.inner.store);
        match store.get_mut(path) {
            Some(e) if !e.deleted => {
                if mode == DeleteMode::Force {
                    store.remove(path);
                } else {
                    e.deleted = true;
                }
                Ok(())
            }
            _ => Err(AdminError::new(AdminErrorKind::NotFound, path, "no such secret")),
        }
    }

    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>, AdminError> {
        let store = lock(&self.inner.store);
        let entry = store
            .get(path)
            .filter(|e| !e.deleted)
            .ok_or_else(|| AdminError::new(AdminErrorKind::NotFound, path, "no such secret"))?;
        let n = entry.versions.len();
        Ok((1..=n)
            .rev()
            .map(|i| VersionInfo {
                id: i.to_string(),
                stages: match n - i {
                    0 => vec!["current".into()],
                    1 => vec!["previous".into()],
                    _ => vec![],
                },
                created: Some(entry.versions[i - 1].1),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn check_and_set() {
        let m = MemoryBackend::new();
        assert!(m.supports_cas());
        let put = |expected: Option<&str>| {
            let mut r = PutRequest::new("p", SecretValue::text("v"));
            r.expected_version = expected.map(str::to_string);
            r
        };
        assert_eq!(m.put(put(Some("1"))).await.unwrap_err().kind, AdminErrorKind::Conflict);
        assert_eq!(m.put(put(None)).await.unwrap(), "1");
        assert_eq!(m.put(put(Some("1"))).await.unwrap(), "2");
        assert_eq!(m.put(put(Some("1"))).await.unwrap_err().kind, AdminErrorKind::Conflict);
    }
}
