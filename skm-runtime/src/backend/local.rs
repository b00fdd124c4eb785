//! The local encrypted store (issue: local store). Placeholder until it lands: never detected.

use std::path::Path;

use crate::Error;

/// The local encrypted store.
#[derive(Debug)]
pub struct LocalStore {
    _private: (),
}

impl LocalStore {
    /// Whether a store exists at `path`.
    pub fn exists_at(_path: &Path) -> bool {
        false
    }

    /// Opens the store configured by the environment.
    ///
    /// # Errors
    /// Always, until the local store lands.
    pub fn from_env() -> Result<Self, Error> {
        Err(Error::Config("the local store is not available yet".into()))
    }
}

#[async_trait::async_trait]
impl super::Backend for LocalStore {
    fn name(&self) -> String {
        "local store".into()
    }

    async fn fetch(&self, requests: &[super::FetchRequest]) -> Vec<super::FetchResult> {
        requests
            .iter()
            .map(|_| Err(super::FetchError::unavailable("the local store is not available yet")))
            .collect()
    }
}
